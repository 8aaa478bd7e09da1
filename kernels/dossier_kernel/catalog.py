"""The approved views of a catalog.duckdb as plain data: what sources() shows in a notebook,
and what the hub pages and the JupyterLab panel list.

apply writes each column's comment as "<kind>: <description>" (or just "<kind>"), where kind
is "pseudonym (identifier)", "quasi-identifier" or "attribute"; this module reads it back.
"""

from __future__ import annotations

from typing import Any

import duckdb

KINDS = ("pseudonym (identifier)", "quasi-identifier", "attribute")


def split_comment(comment: str) -> tuple[str, str]:
    """(kind, description) of a column comment written by apply."""
    for kind in KINDS:
        if comment == kind:
            return kind, ""
        if comment.startswith(kind + ": "):
            return kind, comment[len(kind) + 2 :]
    return "attribute", comment


def describe_views(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """[{name, description, columns: [{name, type, kind, description}]}], by view name."""
    views = con.execute(
        "SELECT view_name, coalesce(comment, '') FROM duckdb_views() "
        "WHERE NOT internal AND schema_name = 'main' ORDER BY view_name"
    ).fetchall()
    columns = con.execute(
        "SELECT table_name, column_name, data_type, coalesce(comment, '') FROM duckdb_columns() "
        "WHERE schema_name = 'main' ORDER BY table_name, column_index"
    ).fetchall()
    per_view: dict[str, list[dict[str, str]]] = {name: [] for name, _ in views}
    for table, column, data_type, comment in columns:
        if table in per_view:
            kind, description = split_comment(comment)
            per_view[table].append(
                {"name": column, "type": data_type, "kind": kind, "description": description}
            )
    return [
        {"name": name, "description": comment, "columns": per_view[name]} for name, comment in views
    ]
