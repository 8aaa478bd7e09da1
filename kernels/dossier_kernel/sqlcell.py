"""What makes `%%sql` feel like a SQL tool in the Dossier kernel.

- a DuckDB error from `%%sql` is shown as DuckDB's own message (with its hint and LINE/caret),
  not a Python traceback; `%sql_traceback` prints the full traceback of the last one;
- Polars results show as a sortable, scrollable table of the first ROWS_SHOWN rows with the
  row count: in JupyterLab as TABLE_MIME, plain JSON data the Dossier extension's own renderer
  draws (extensions/src/sqltable.ts: text only, its script the server's own file, so nothing a
  result holds runs in a colleague's page), beside Polars' own HTML of the same rows, which
  nbconvert, papermill and report kernels use (a report stores the rows once);
- view names, and the columns of a view (after `view.` or of the views the cell names),
  complete in cells that start with `%%sql`.

Nothing heavy is imported here at kernel start: duckdb and polars are already loaded by the
time an error, a result or a completion needs them.
"""

from __future__ import annotations

import html
import math
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
# the Dossier extension renders it (extensions/src/sqltable.ts); versioned by its name
TABLE_MIME = "application/vnd.dossier.sql-table.v1+json"
# integers beyond this lose digits as JavaScript numbers: sent as text
_SAFE_INTEGER = 2**53 - 1
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
    """ "1,234 rows, 5 columns (first 100 shown)", above the HTML table and the sortable one."""
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


def frame_table(frame: pl.DataFrame) -> dict[str, Any] | None:
    """The first ROWS_SHOWN rows as TABLE_MIME under the row count (sorting by a click on a
    column header, scrolling inside the output, in the browser); None for a subclass with its
    own display (sources()). Only this goes into the display: IPython adds the HTML and the
    text of the same frame (frame_html) for whatever does not know TABLE_MIME."""
    import polars as pl

    if type(frame) is not pl.DataFrame:
        return None
    shown = frame.head(ROWS_SHOWN)
    columns = [
        {"name": name, "type": str(dtype), "numeric": dtype.is_numeric()}
        for name, dtype in shown.schema.items()
    ]
    rows = [[_cell(value) for value in row] for row in shown.iter_rows()]
    return {TABLE_MIME: {"count": row_count(frame), "columns": columns, "rows": rows}}


def _cell(value: Any) -> str | int | float | bool | None:
    """A value as JSON the renderer shows as text and sorts by: numbers stay numbers (sorted
    as such); a number JSON or JavaScript cannot hold exactly, and any other kind of value
    (dates, decimals, lists), is its text as Python writes it (ISO dates sort as text)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int) and abs(value) <= _SAFE_INTEGER:
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    return str(value)


def register_display(shell: InteractiveShell) -> None:
    # by name, so polars is not imported at kernel start
    assert shell.display_formatter is not None  # set up by every InteractiveShell
    formatter = shell.display_formatter.formatters["text/html"]
    formatter.for_type_by_name("polars.dataframe.frame", "DataFrame", frame_html)
    if os.environ.get("DOSSIERHUB_RUN_DIR") or getattr(shell, "kernel", None) is None:
        # a report kernel: papermill would store the rows a second time in the report
        # notebook, for nothing (nbconvert shows the HTML); a terminal IPython shows text
        return
    tables = shell.display_formatter.mimebundle_formatter
    tables.for_type_by_name("polars.dataframe.frame", "DataFrame", frame_table)


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
