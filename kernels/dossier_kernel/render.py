"""How a published table or chart looks, the same in the author's notebook and in the released
report: the hub renders the report from the checked files with these functions, never from what
the kernel displayed (docs/reports.md, "What a viewer reads").

Plain HTML (no style or script: the report's sanitiser keeps tables, classes and titles) and
SVG charts drawn with matplotlib, embedded as images so nothing in them can run.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import html
import io
import math
from typing import Any

import polars as pl

from .published import ChartSpec

# The output a published table or chart leaves in a notebook: a reference the hub replaces with
# its own rendering of the checked file (whatever else the kernel put in the same bundle)
ARTEFACT_MIME = "application/vnd.dossierhub.artefact+json"
MISSING = "\N{EN DASH}"


def format_value(value: Any, decimals: int) -> str:
    """Thousands separators; floats to the column's number of decimals; missing as an en dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float | decimal.Decimal):  # DuckDB's sums of integers are decimals
        return f"{value:,.{decimals}f}"
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def column_decimals(series: pl.Series) -> int:
    """0 for whole numbers (an amount of 6505613.0 reads as 6,505,613), else up to two."""
    if series.dtype == pl.Decimal:
        series = series.cast(pl.Float64)
    if not series.dtype.is_float():
        return 0
    values = series.drop_nulls().drop_nans()
    if values.len() == 0 or (values == values.round(0)).all():
        return 0
    return 1 if (values == values.round(1)).all() else 2


def table_html(
    table: pl.DataFrame,
    meta: dict[str, Any],
    *,
    name: str,
    catalog_descriptions: dict[str, str] | None = None,
    max_rows: int | None = None,
) -> str:
    """Every row (up to max_rows), numbers right-aligned with thousands separators, and a
    legend of the columns' descriptions (the author's, else the catalog's for that name)."""
    descriptions = {**(catalog_descriptions or {}), **(meta.get("descriptions") or {})}
    title = meta.get("title") or name.replace("_", " ").capitalize()
    shown = table if max_rows is None else table.head(max_rows)
    numeric = {c for c, t in table.schema.items() if t.is_numeric()}
    decimals = {c: column_decimals(table[c]) for c in numeric}
    head = "".join(
        f'<th class="{"num" if c in numeric else "text"}"'
        + (f' title="{html.escape(descriptions[c])}"' if descriptions.get(c) else "")
        + f">{html.escape(c)}</th>"
        for c in table.columns
    )
    rows = []
    for row in shown.iter_rows():
        cells = "".join(
            f'<td class="num">{format_value(v, decimals[c])}</td>'
            if c in numeric
            else f"<td>{html.escape(format_value(v, 0))}</td>"
            for c, v in zip(table.columns, row, strict=True)
        )
        rows.append(f"<tr>{cells}</tr>")
    legend = "".join(
        f"<dt>{html.escape(c)}</dt><dd>{html.escape(descriptions[c])}</dd>"
        for c in table.columns
        if descriptions.get(c)
    )
    notes = []
    if shown.height < table.height:
        notes.append(f"{shown.height:,} of {table.height:,} rows shown.")
    if any(table[c].null_count() for c in table.columns):
        notes.append(f"{MISSING} : suppressed (too few to show) or not available.")
    return (
        f'<figure class="dh-table" id="table-{html.escape(name)}" data-table="{html.escape(name)}">'
        f"<figcaption>{html.escape(title)}</figcaption>"
        f'<table class="dh-data"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
        + (f'<dl class="dh-legend">{legend}</dl>' if legend else "")
        + (f'<p class="dh-note">{" ".join(notes)}</p>' if notes else "")
        + "</figure>"
    )


def chart_spec(
    table: str, kind: str, x: str, y: str | list[str], **texts: str | None
) -> dict[str, Any]:
    """A chart as data (published.ChartSpec): which published table, which columns, which
    captions. Refused (with the field) when it names no column the table could have or an
    unknown kind."""
    return ChartSpec.build(table, kind, x, y, **texts).as_spec()


def check_spec(spec: dict[str, Any], table: pl.DataFrame) -> list[str]:
    """What is wrong with a chart for this table (empty when it can be drawn)."""
    problems = []
    for column in [spec["x"], *spec["y"]]:
        if column not in table.columns:
            problems.append(f"the table has no column '{column}'")
    for column in spec["y"]:
        if column in table.columns and not table.schema[column].is_numeric():
            problems.append(f"'{column}' is not numeric: a chart plots numbers")
    return problems


def chart_svg(spec: dict[str, Any], table: pl.DataFrame) -> str:
    """The chart drawn from the table's own values (a fresh matplotlib figure, SVG text)."""
    from matplotlib import rc_context
    from matplotlib.figure import Figure
    from matplotlib.ticker import StrMethodFormatter

    figure = Figure(figsize=(8, max(3.0, 0.3 * table.height) if spec["kind"] == "barh" else 3.5))
    ax = figure.add_subplot()
    labels = [format_value(v, 0) for v in table[spec["x"]].to_list()]
    colours = ["#004699", "#ec0000", "#ffbc2c", "#00a03c"]
    for number, column in enumerate(spec["y"]):
        values = [math.nan if v is None else float(v) for v in table[column].to_list()]
        colour = colours[number % len(colours)]
        if spec["kind"] == "line":
            ax.plot(labels, values, marker="o", color=colour, label=column)
        elif spec["kind"] == "barh":
            height = 0.8 / len(spec["y"])
            positions = [i + number * height for i in range(len(labels))]
            ax.barh(positions, values, height=height, color=colour, label=column)
            ax.set_yticks([i + 0.4 - height / 2 for i in range(len(labels))], labels)
            ax.invert_yaxis()
        else:
            width = 0.8 / len(spec["y"])
            positions = [i + number * width for i in range(len(labels))]
            ax.bar(positions, values, width=width, color=colour, label=column)
            ax.set_xticks([i + 0.4 - width / 2 for i in range(len(labels))], labels)
    if spec["kind"] != "barh" and len(labels) > 12:
        ax.tick_params(axis="x", labelrotation=90, labelsize=7)
    if len(spec["y"]) > 1:
        ax.legend()
    # x_label names the categories' axis and y_label the values', whichever way bars lie
    x_text = spec.get("x_label", spec["x"])
    y_text = spec.get("y_label", ", ".join(spec["y"]))
    if spec["kind"] == "barh":
        x_text, y_text = y_text, x_text
    ax.set_xlabel(x_text)
    ax.set_ylabel(y_text)
    values_axis = ax.xaxis if spec["kind"] == "barh" else ax.yaxis
    values_axis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))  # 175,000, not 175000
    if spec.get("title"):
        ax.set_title(spec["title"])
    ax.spines[["top", "right"]].set_visible(False)
    figure.tight_layout()
    buffer = io.StringIO()
    # text as text, not glyph outlines: a third smaller and faster, and readable by screen readers
    with rc_context({"svg.fonttype": "none"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    return buffer.getvalue()


def chart_html(spec: dict[str, Any], table: pl.DataFrame, *, name: str) -> str:
    svg = chart_svg(spec, table)
    data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    caption = spec.get("title") or f"{', '.join(spec['y'])} per {spec['x']}"
    return (
        f'<figure class="dh-chart" id="chart-{html.escape(name)}" data-chart="{html.escape(name)}">'
        f'<img src="data:image/svg+xml;base64,{data}" alt="{html.escape(caption)}">'
        f"<figcaption>{html.escape(caption)} (from the table "
        f'<a href="#table-{html.escape(spec["table"])}">{html.escape(spec["table"])}</a>)'
        "</figcaption></figure>"
    )
