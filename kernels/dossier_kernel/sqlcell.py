"""What makes `%%sql` feel like a SQL tool in the Dossier kernel.

- a DuckDB error from `%%sql` is shown as DuckDB's own message (with its hint and LINE/caret),
  not a Python traceback; `%sql_traceback` prints the full traceback of the last one;
- Polars results show as a sortable, scrollable table of the first ROWS_SHOWN rows with the
  row count: in JupyterLab itables' DataTables widget (its JavaScript comes with the package
  over the kernel's own connection, nothing from a CDN), beside Polars' own HTML of the same
  rows, which nbconvert, papermill and report kernels use (a report stores no widget state);
- view names, and the columns of a view (after `view.` or of the views the cell names),
  complete in cells that start with `%%sql`.

Nothing heavy is imported here at kernel start: duckdb and polars are already loaded by the
time an error, a result or a completion needs them.
"""

from __future__ import annotations

import html
import os
import re
from types import CodeType, TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb
    import polars as pl
    from IPython.core.completer import CompletionContext
    from IPython.core.interactiveshell import InteractiveShell

ROWS_SHOWN = 100  # the privacy owner's decision: no more rows than this in a notebook
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
TRACEBACK_MAGIC = "%sql_traceback"

_last_error: tuple[type[BaseException], BaseException, TracebackType | None] | None = None


# --- errors -------------------------------------------------------------------------------


def show_sql_error(
    shell: InteractiveShell,
    etype: type[BaseException],
    value: BaseException,
    tb: TracebackType | None,
    tb_offset: int | None = None,
) -> None:
    """IPython custom exception handler for duckdb.Error.

    Raised from `%%sql`, the mistake is in the SQL, so DuckDB's message is all that helps;
    raised from Python code (db.execute, sql()), the usual traceback is kept.
    """
    global _last_error
    if not raised_by_sql_magic(tb):
        shell.showtraceback((etype, value, tb), tb_offset=tb_offset)
        return
    _last_error = (etype, value, tb)
    message = str(value).rstrip()
    # _showtraceback is the hook ipykernel overrides to send the `error` message (ename,
    # evalue, traceback lines): the cell still fails, so papermill stops as before
    shell._showtraceback(etype, value, [f"{message}\n({TRACEBACK_MAGIC} shows the traceback)"])


def raised_by_sql_magic(tb: TracebackType | None) -> bool:
    from .magics import DossierMagics

    code: CodeType = DossierMagics.sql_magic.__code__
    while tb is not None:
        if tb.tb_frame.f_code is code:
            return True
        tb = tb.tb_next
    return False


def print_last_traceback(shell: InteractiveShell) -> None:
    """`%sql_traceback`: the full traceback of the last `%%sql` error."""
    if _last_error is None:
        print("No %%sql error in this kernel yet.")
        return
    etype, value, tb = _last_error
    stb = shell.InteractiveTB.structured_traceback(etype, value, tb)
    print(shell.InteractiveTB.stb2text(stb))


# --- results ------------------------------------------------------------------------------


def row_count(frame: pl.DataFrame) -> str:
    """ "1,234 rows, 5 columns (first 100 shown)", above the HTML table and the widget."""
    count = f"{_plural(frame.height, 'row')}, {_plural(frame.width, 'column')}"
    if frame.height > ROWS_SHOWN:
        count += f" (first {ROWS_SHOWN:,} shown)"
    return count


def frame_html(frame: pl.DataFrame) -> str:
    """The row count, then the first ROWS_SHOWN rows in a scrollable box (Polars' own HTML)."""
    import polars as pl

    if type(frame) is not pl.DataFrame:  # a subclass with its own HTML (sources()) keeps it
        return str(frame._repr_html_())
    count = row_count(frame)
    with pl.Config(tbl_rows=ROWS_SHOWN, tbl_cols=-1, tbl_hide_dataframe_shape=True):
        table = frame.head(ROWS_SHOWN)._repr_html_()
    return (
        f'<div class="dossier-sql-result"><p class="dossier-sql-count">{html.escape(count)}</p>'
        f'<div style="max-height: 28em; overflow: auto">{table}</div></div>'
    )


def _plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def frame_widget(frame: pl.DataFrame) -> dict[str, Any] | None:
    """The first ROWS_SHOWN rows as itables' widget (sorting by a click on a column header,
    scrolling inside the output) under the row count; None for a subclass with its
    own display (sources()). Only the widget's view goes into the display: IPython adds the
    HTML and the text of the same frame (frame_html) for whatever cannot show a widget."""
    import polars as pl

    if type(frame) is not pl.DataFrame:
        return None
    from itables.widget import ITable  # 0.4 s, at the first result rather than kernel start

    table = ITable(
        frame.head(ROWS_SHOWN),
        paging=False,
        scrollY="28em",
        scrollCollapse=True,
        scrollX=True,
        maxBytes=0,  # all the rows shown: they are ROWS_SHOWN at most
        # set here, not left to an itables.toml a workspace folder could hold
        allow_html=False,
        style="table-layout:auto;width:auto;margin:0",  # header and rows stay aligned
        text_in_header_can_be_selected=False,  # a click anywhere on a header sorts
        # the row count on top, as DataTables' own `div` feature (text, not HTML); not
        # itables' caption, which its widget drops (2.9.1); no search box or "Showing 1 to
        # n": the count says what the table holds
        layout={
            "topStart": {"div": {"className": "dossier-sql-count", "text": row_count(frame)}},
            "topEnd": None,
            "bottomStart": None,
            "bottomEnd": None,
        },
    )
    bundle = table._repr_mimebundle_()  # (data, metadata); None without a model
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    if not data or WIDGET_MIME not in data:
        return None
    return {WIDGET_MIME: data[WIDGET_MIME]}


def register_display(shell: InteractiveShell) -> None:
    # by name, so polars is not imported at kernel start
    assert shell.display_formatter is not None  # set up by every InteractiveShell
    formatter = shell.display_formatter.formatters["text/html"]
    formatter.for_type_by_name("polars.dataframe.frame", "DataFrame", frame_html)
    if os.environ.get("DOSSIERHUB_RUN_DIR") or getattr(shell, "kernel", None) is None:
        # a report kernel: papermill would store the widget's state, every row of it, in
        # the report notebook, and nbconvert would fetch a widget renderer from a CDN; a
        # terminal IPython has no frontend for a widget
        return
    widgets = shell.display_formatter.mimebundle_formatter
    widgets.for_type_by_name("polars.dataframe.frame", "DataFrame", frame_widget)


# --- completion ---------------------------------------------------------------------------

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def sql_matcher(db: Any) -> Any:
    """An IPython completion matcher over the views of `db` (called with the shell's `db`)."""
    from IPython.core.completer import SimpleCompletion, context_matcher

    # before IPython's own matchers, so SQL names are not drowned by Python ones
    @context_matcher(priority=100)
    def match_sql(context: CompletionContext) -> dict[str, Any]:
        in_sql_body = context.cursor_line > 0  # not on the `%%sql name` line itself
        if not (context.full_text.lstrip().startswith("%%sql") and in_sql_body):
            return {"completions": []}
        views = _views(db())
        if not views:
            return {"completions": []}
        token = re.split(r"[^A-Za-z0-9_.]", context.text_until_cursor)[-1]
        if "." in token:
            view, _, prefix = token.rpartition(".")
            names = [(c, "column") for c in views.get(view, [])]
        else:
            prefix = token
            named = set(_WORD.findall(context.full_text)) & views.keys()
            names = [(v, "view") for v in views] + [
                (c, f"column of {v}") for v in sorted(named) for c in views[v]
            ]
        completions = [
            SimpleCompletion(name, type=kind) for name, kind in names if name.startswith(prefix)
        ]
        return {"completions": completions, "matched_fragment": prefix, "suppress": True}

    return match_sql


def _views(con: duckdb.DuckDBPyConnection | None) -> dict[str, list[str]]:
    if con is None:
        return {}
    from .catalog import describe_views

    try:
        return {v["name"]: [c["name"] for c in v["columns"]] for v in describe_views(con)}
    except Exception:  # a closed or unconfigured `db` must not break completion
        return {}
