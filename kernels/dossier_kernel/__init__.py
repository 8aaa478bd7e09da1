"""Inside a dossier workspace (unprivileged): the dossier's views at the team's fingertips.

`db` is a read-only DuckDB connection on the dossier's catalog.duckdb (path in
$DOSSIER_CATALOG), with one view per approved source. This package never imports dossierhub:
the workspace side cannot reach hub secrets or code paths.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # polars (about 30 MiB) loads on the first result, not at kernel start
    import duckdb
    import polars as pl
    from IPython.core.interactiveshell import InteractiveShell

    from .overview import Sources
    from .publish import Published

__all__ = ["NoDossierError", "connect", "publish", "publish_chart", "sources", "sql"]

_connection: duckdb.DuckDBPyConnection | None = None


class NoDossierError(RuntimeError):
    """This process has no dossier: DOSSIER_CATALOG is unset or points at nothing."""


def connect(catalog: str | os.PathLike[str] | None = None) -> duckdb.DuckDBPyConnection:
    """Open the dossier's catalog read-only; views resolve their files next to it.

    Memory and threads follow DOSSIER_DUCKDB_MEMORY_LIMIT and DOSSIER_DUCKDB_THREADS when set
    (the dossier's configured limits).
    """
    path = catalog or os.environ.get("DOSSIER_CATALOG")
    if not path:
        raise NoDossierError(
            "No dossier is configured: DOSSIER_CATALOG is not set. Open this notebook in a "
            "dossier workspace, or set DOSSIER_CATALOG to extracts/<id>/catalog.duckdb."
        )
    catalog_path = Path(path)
    if not catalog_path.exists():
        raise NoDossierError(
            f"No dossier data at {catalog_path}: the dossier has not been applied yet, or it "
            "has expired. Ask the dossier's admin to run `dossierhub apply`."
        )
    config: dict[str, str | bool | int | float | list[str]] = {}  # as duckdb.connect takes it
    if os.environ.get("DOSSIER_DUCKDB_MEMORY_LIMIT"):
        config["memory_limit"] = os.environ["DOSSIER_DUCKDB_MEMORY_LIMIT"]
    if os.environ.get("DOSSIER_DUCKDB_THREADS"):
        config["threads"] = int(os.environ["DOSSIER_DUCKDB_THREADS"])
    import duckdb  # on first use: the hub imports this package for its pure parts (expiry)

    con = duckdb.connect(str(catalog_path), read_only=True, config=config)
    # The views name their parquet files relatively; the folder of the catalog's *link*
    # (extracts/<id>) is used, so a re-apply's new files are seen by the next query.
    folder = str(catalog_path.parent.absolute()).replace("'", "''")
    con.execute(f"SET file_search_path = '{folder}'")
    return con


def default_connection() -> duckdb.DuckDBPyConnection:
    global _connection
    if _connection is None:
        _connection = connect()
    return _connection


def sql(query: str, con: duckdb.DuckDBPyConnection | None = None) -> pl.DataFrame:
    """Run SQL on the dossier's views and return a Polars DataFrame."""
    return (con or default_connection()).sql(query).pl()  # .pl() imports polars itself


def sources(con: duckdb.DuckDBPyConnection | None = None) -> Sources:
    """The approved views: name, description, row count and columns (name, type, kind,
    description); shown as a table per view in JupyterLab and as aligned text when printed."""
    con = con or default_connection()
    from .catalog import describe_views
    from .overview import Sources

    views = describe_views(con)
    rows = {v["name"]: _count(con, v["name"]) for v in views}
    return Sources.of(views, rows)


def _count(con: duckdb.DuckDBPyConnection, view: str) -> int:
    quoted = '"' + view.replace('"', '""') + '"'
    (count,) = con.execute(f"SELECT count(*) FROM {quoted}").fetchall()[0]
    return int(count)


def publish(df: pl.DataFrame, name: str, **declared: Any) -> Published:
    """Hand a table to the report's output check; see dossier_kernel.publish.publish."""
    from .publish import publish as _publish

    return _publish(df, name, **declared)


def publish_chart(table: str, **spec: Any) -> Published:
    """Chart a published table; see dossier_kernel.publish.publish_chart."""
    from .publish import publish_chart as _publish_chart

    return _publish_chart(table, **spec)


def load_ipython_extension(ipython: InteractiveShell) -> None:
    """`%load_ext dossier_kernel` (the Dossier kernel does it at start)."""
    from .magics import register

    register(ipython)
    _notebook_folder_last()


def _notebook_folder_last() -> None:
    """Put the notebook's folder at the end of the import path, so a notebook still imports
    the team's own modules beside it. The kernelspec starts the kernel with `python -P`: with
    the folder first (Python's `-m` default, IPython's before site-packages), a file the team
    writes there (`dossier_kernel.py`, `jedi.py`) would run at kernel start or at the first
    completion, code no person sent and so no execution record (issue 16). Last, it can no
    longer stand in for an installed module. Report kernels run `-I` (kernelpool.py): their
    run folder stays off the path, as before."""
    import sys

    if sys.flags.isolated:
        return
    folder = os.getcwd()
    if folder not in sys.path:
        sys.path.append(folder)
