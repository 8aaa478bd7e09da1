"""What `sources()` returns: the approved views as a Polars DataFrame that reads well.

In JupyterLab each view is a small HTML table (its columns with type, kind and description)
under its name, row count and description; printed in a terminal it is the same as aligned text.
It stays a DataFrame (view, description, rows, columns), so code that filters it keeps working.
"""

from __future__ import annotations

import html
from typing import Any

import polars as pl

SCHEMA = pl.Schema(
    {
        "view": pl.String(),
        "description": pl.String(),
        "rows": pl.Int64(),
        "columns": pl.List(
            pl.Struct(
                {
                    "name": pl.String(),
                    "type": pl.String(),
                    "kind": pl.String(),
                    "description": pl.String(),
                }
            )
        ),
    }
)


class Sources(pl.DataFrame):
    """The dossier's views; one row per view."""

    @classmethod
    def of(cls, views: list[dict[str, Any]], rows: dict[str, int]) -> Sources:
        return cls(
            {
                "view": [v["name"] for v in views],
                "description": [v["description"] for v in views],
                "rows": [rows[v["name"]] for v in views],
                "columns": [v["columns"] for v in views],
            },
            schema=SCHEMA,
        )

    def __str__(self) -> str:
        if self.height == 0:
            return "No approved views in this dossier."
        return "\n\n".join(_view_text(view) for view in self.iter_rows(named=True))

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self, *, _from_series: bool = False) -> str:  # Polars' signature
        if self.height == 0:
            return "<p>No approved views in this dossier.</p>"
        return "".join(_view_html(view) for view in self.iter_rows(named=True))


def _heading(view: dict[str, Any]) -> str:
    rows = view["rows"]
    return f"{view['view']}: {rows:,} row{'' if rows == 1 else 's'}"


def _view_text(view: dict[str, Any]) -> str:
    lines = [_heading(view)]
    if view["description"]:
        lines.append(f"  {view['description']}")
    columns = view["columns"]
    widths = [max((len(c[key]) for c in columns), default=0) for key in ("name", "type", "kind")]
    for column in columns:
        cells = [
            column[key].ljust(width)
            for key, width in zip(("name", "type", "kind"), widths, strict=True)
        ]
        lines.append(("    " + "  ".join(cells) + "  " + column["description"]).rstrip())
    return "\n".join(lines)


def _view_html(view: dict[str, Any]) -> str:
    e = html.escape
    description = f"<p>{e(view['description'])}</p>" if view["description"] else ""
    body = "".join(
        f"<tr><td><code>{e(c['name'])}</code></td><td>{e(c['type'])}</td>"
        f"<td>{e(c['kind'])}</td><td>{e(c['description'])}</td></tr>"
        for c in view["columns"]
    )
    return (
        f'<div class="dossier-source"><h4>{e(_heading(view))}</h4>{description}'
        "<table><thead><tr><th>column</th><th>type</th><th>kind</th><th>description</th></tr>"
        f"</thead><tbody>{body}</tbody></table></div>"
    )
