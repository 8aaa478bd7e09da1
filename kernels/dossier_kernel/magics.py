"""`%%sql` and `%sql` for notebooks: SQL on the dossier's views, a Polars DataFrame back."""

from __future__ import annotations

from IPython.core.magic import Magics, line_cell_magic, magics_class

from . import NoDossierError, connect, sources, sql


@magics_class
class DossierMagics(Magics):
    @line_cell_magic("sql")
    def sql_magic(self, line: str, cell: str | None = None):  # type: ignore[no-untyped-def]
        """`%%sql` runs the cell; `%%sql name` also stores the result as `name`."""
        if cell is None:
            return sql(line, self._db())
        target = line.strip()
        result = sql(cell, self._db())
        if target:
            if not target.isidentifier():
                raise ValueError(f"%%sql {target}: the result name must be a Python name")
            self.shell.user_ns[target] = result
        return result

    def _db(self):  # type: ignore[no-untyped-def]
        db = self.shell.user_ns.get("db")
        if db is None or isinstance(db, _Unconfigured):
            return connect()  # raises NoDossierError with the reason
        return db


class _Unconfigured:
    """Stands in for `db` when no dossier is configured; says why on every use."""

    def __init__(self, reason: str):
        self._reason = reason

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        raise NoDossierError(self._reason)

    def __repr__(self) -> str:
        return f"<no dossier: {self._reason}>"


def register(ipython) -> None:  # type: ignore[no-untyped-def]
    ipython.register_magics(DossierMagics)
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


def _live(db):  # type: ignore[no-untyped-def]
    if isinstance(db, _Unconfigured):
        return connect()
    return db
