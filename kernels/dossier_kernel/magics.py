"""`%%sql` and `%sql` for notebooks: SQL on the dossier's views, a Polars DataFrame back."""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class

from . import NoDossierError, connect, sources, sql

if TYPE_CHECKING:
    import duckdb
    import polars as pl
    from IPython.core.interactiveshell import InteractiveShell


@magics_class
class DossierMagics(Magics):
    @line_cell_magic("sql")  # type: ignore[arg-type]  # IPython types this factory as a union
    def sql_magic(self, line: str, cell: str | None = None) -> pl.DataFrame:
        """`%%sql` runs the cell; `%%sql name` also stores the result as `name`."""
        if cell is None:
            return sql(line, self._db())
        target = line.strip()
        result = sql(cell, self._db())
        if target:
            if not target.isidentifier():
                raise ValueError(f"%%sql {target}: the result name must be a Python name")
            self._shell().user_ns[target] = result
        return result

    @line_magic("sql_traceback")  # type: ignore[arg-type]  # as line_cell_magic above
    def sql_traceback(self, line: str) -> None:
        """The full traceback of the last `%%sql` error (the cell shows only DuckDB's message)."""
        from .sqlcell import print_last_traceback

        print_last_traceback(self._shell())

    def _shell(self) -> InteractiveShell:
        # IPython registers magics with their shell; the attribute is Optional only in its type
        assert self.shell is not None
        return self.shell

    def _db(self) -> duckdb.DuckDBPyConnection:
        db = self._shell().user_ns.get("db")
        if db is None or isinstance(db, _Unconfigured):
            return connect()  # raises NoDossierError with the reason
        return db


class _Unconfigured:
    """Stands in for `db` when no dossier is configured; says why on every use."""

    def __init__(self, reason: str):
        self._reason = reason

    def __getattr__(self, name: str) -> NoReturn:
        raise NoDossierError(self._reason)

    def __repr__(self) -> str:
        return f"<no dossier: {self._reason}>"


def register(ipython: InteractiveShell) -> None:
    ipython.register_magics(DossierMagics)
    import duckdb

    from . import sqlcell

    ipython.set_custom_exc((duckdb.Error,), sqlcell.show_sql_error)
    sqlcell.register_display(ipython)
    db: duckdb.DuckDBPyConnection | _Unconfigured
    try:
        db = connect()
    except NoDossierError as exc:
        db = _Unconfigured(str(exc))
        print(f"dossier_kernel: {exc}")
    from . import publish, publish_chart

    ipython.push(
        {
            "db": db,
            "sources": lambda: sources(_live(db)),
            "sql": sql,
            "publish": publish,
            "publish_chart": publish_chart,
        }
    )
    # the shell's current `db`, read at each completion (a team member may reassign it)
    ipython.Completer.custom_matchers.append(sqlcell.sql_matcher(lambda: ipython.user_ns.get("db")))


def _live(db: duckdb.DuckDBPyConnection | _Unconfigured) -> duckdb.DuckDBPyConnection:
    if isinstance(db, _Unconfigured):
        return connect()
    return db
