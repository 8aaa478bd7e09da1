"""What makes `%%sql` feel like a SQL tool in the Dossier kernel.

- a DuckDB error from `%%sql` is shown as DuckDB's own message (with its hint and LINE/caret),
  not a Python traceback; `%sql_traceback` prints the full traceback of the last one;
- Polars results show as an HTML table of the first ROWS_SHOWN rows under the row count;
- view names, and the columns of a view (after `view.` or of the views the cell names),
  complete in cells that start with `%%sql`.

Nothing heavy is imported here at kernel start: duckdb and polars are already loaded by the
time an error, a result or a completion needs them.
"""

from __future__ import annotations

import html
import re
from types import CodeType, TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb
    import polars as pl
    from IPython.core.completer import CompletionContext
    from IPython.core.interactiveshell import InteractiveShell

ROWS_SHOWN = 100
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


def frame_html(frame: pl.DataFrame) -> str:
    """The row count, then the first ROWS_SHOWN rows in a scrollable box (Polars' own HTML)."""
    import polars as pl

    if type(frame) is not pl.DataFrame:  # a subclass with its own HTML (sources()) keeps it
        return str(frame._repr_html_())
    shown = min(frame.height, ROWS_SHOWN)
    count = f"{_plural(frame.height, 'row')}, {_plural(frame.width, 'column')}"
    if shown < frame.height:
        count += f" (first {shown:,} shown)"
    with pl.Config(tbl_rows=ROWS_SHOWN, tbl_cols=-1, tbl_hide_dataframe_shape=True):
        table = frame.head(ROWS_SHOWN)._repr_html_()
    return (
        f'<div class="dossier-sql-result"><p class="dossier-sql-count">{html.escape(count)}</p>'
        f'<div style="max-height: 28em; overflow: auto">{table}</div></div>'
    )


def _plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def register_display(shell: InteractiveShell) -> None:
    # by name, so polars is not imported at kernel start
    assert shell.display_formatter is not None  # set up by every InteractiveShell
    formatter = shell.display_formatter.formatters["text/html"]
    formatter.for_type_by_name("polars.dataframe.frame", "DataFrame", frame_html)


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
