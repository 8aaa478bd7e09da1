"""`publish(df, name, ...)` and `publish_chart(table, ...)`: what a report releases.

Inside a report run ($DOSSIERHUB_RUN_DIR set) the table (or the chart's description) is written
with the run; in a notebook it only shows what the check would say. Every numeric column must be
declared as a count, a magnitude (with the largest contributions per cell, for the dominance
rule) or an attribute, so an author cannot forget to say what a number is.

A viewer's report holds only these: the hub draws each table and chart from the checked files
(dossier_kernel.render) where the notebook displayed the value publish() returned, and withholds
every other output (docs/reports.md).
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

import polars as pl

from .disclosure import FAIL, CheckResult, check_table, text_findings
from .identifiers import DossierFacts
from .provenance import read_provenance
from .published import (
    NAME,
    PUBLISHED_DIR,
    ChartSpec,
    Declaration,
    chart_file,
    contributions_file,
    declaration_file,
    magnitude_source,
    short_text,
    table_file,
)
from .render import ARTEFACT_MIME, chart_html, check_spec, table_html

# what this process published, for publish_chart's preview in a notebook
_tables: dict[str, tuple[pl.DataFrame, dict[str, Any]]] = {}


class Published:
    """What publish() and publish_chart() return: the check's verdict (`passed`, `findings`),
    shown in a notebook with the table or chart as the released report will show it."""

    def __init__(self, kind: str, name: str, result: CheckResult, preview: str):
        self.kind, self.name, self.result, self._preview = kind, name, result, preview

    @property
    def passed(self) -> bool:
        return self.result.passed

    @property
    def findings(self) -> list[Any]:
        return self.result.findings

    @property
    def table(self) -> str:
        return self.result.table

    def to_json(self) -> dict[str, Any]:
        return self.result.to_json()

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        verdict = self.result._repr_markdown_()
        bundle: dict[str, Any] = {
            ARTEFACT_MIME: {"kind": self.kind, "name": self.name},
            "text/plain": verdict,
        }
        if self._preview:
            bundle["text/html"] = self._preview + f"<p><em>{html.escape(verdict)}</em></p>"
        return bundle

    def __repr__(self) -> str:
        return f"<published {self.kind} {self.name}: {'passes' if self.passed else 'fails'}>"


def dossier_rules() -> tuple[dict[str, Any], set[str]]:
    """The dossier's disclosure rules and identifier columns, from its extracts' provenance
    (none outside a dossier). A malformed provenance is refused (ProvenanceError), not read
    as "no rules": the early verdict would otherwise pass what the hub's check fails."""
    catalog = os.environ.get("DOSSIER_CATALOG")
    if not catalog:
        return {}, set()
    try:
        provenance = read_provenance(Path(catalog).parent)
    except OSError:
        return {}, set()
    return provenance.rules(), provenance.identifier_columns()


def publish(
    df: pl.DataFrame,
    name: str,
    *,
    counts: list[str] | tuple[str, ...] = (),
    magnitudes: dict[str, pl.Series | list[list[float]]] | None = None,
    attributes: list[str] | tuple[str, ...] = (),
    title: str | None = None,
    descriptions: dict[str, str] | None = None,
) -> Published:
    """Publish `df` as table `name`.

    counts: columns holding numbers of people or units (minimum cell count applies).
    magnitudes: column -> the largest contributions to each of its cells, in descending order
        (a list per row), for the dominance rule; the contributions are checked, not published.
    attributes: numeric columns that are neither (a year, a percentage of already-safe counts).
    title: the table's caption in the report (default: its name).
    descriptions: column -> what it holds, shown with the table (default: the catalog's).
    """
    if not isinstance(df, pl.DataFrame):
        raise TypeError("publish() takes a Polars DataFrame")
    if not NAME.match(name):
        raise ValueError(
            f"publish(): the name {name!r} must be lowercase letters, digits and "
            "'_', starting with a letter"
        )
    magnitudes = magnitudes or {}
    declared = set(counts) | set(magnitudes) | set(attributes)
    missing = [c for c in declared if c not in df.columns]
    if missing:
        raise ValueError(f"publish({name!r}): no such column(s): {', '.join(missing)}")
    numeric = [c for c, t in df.schema.items() if t.is_numeric()]
    undeclared = [c for c in numeric if c not in declared]
    if undeclared:
        raise ValueError(
            f"publish({name!r}): say what the numeric column(s) {', '.join(undeclared)} are: "
            "counts=[...], magnitudes={column: largest_contributions} or attributes=[...]"
        )
    contributions = (
        pl.DataFrame({magnitude_source(c): pl.Series(v) for c, v in magnitudes.items()})
        if magnitudes
        else None
    )
    if descriptions:
        unknown = [c for c in descriptions if c not in df.columns]
        if unknown:
            raise ValueError(f"publish({name!r}): descriptions of no column: {', '.join(unknown)}")
    declaration = Declaration(
        counts=tuple(counts),
        magnitudes={c: magnitude_source(c) for c in magnitudes},
        attributes=tuple(attributes),
        title=None if title is None else short_text(title, f"publish({name!r}): the title"),
        descriptions={
            c: short_text(d, f"publish({name!r}): the description of {c}")
            for c, d in (descriptions or {}).items()
        },
    )
    meta = declaration.as_meta()
    rules, identifiers = dossier_rules()
    result = check_table(name, df, meta, rules, identifiers, contributions)
    run_dir = os.environ.get("DOSSIERHUB_RUN_DIR")
    if run_dir:
        folder = Path(run_dir) / PUBLISHED_DIR
        folder.mkdir(exist_ok=True)
        df.write_parquet(folder / table_file(name))
        if contributions is not None:
            contributions.write_parquet(folder / contributions_file(name))
        (folder / declaration_file(name)).write_text(declaration.to_json())
    _tables[name] = (df, meta)
    # in a run the hub draws the table from its checked copy: no preview to make
    preview = "" if run_dir else table_html(df, meta, name=name)
    return Published("table", name, result, preview)


def publish_chart(
    table: str,
    *,
    x: str,
    y: str | list[str],
    kind: str = "bar",
    title: str | None = None,
    x_label: str | None = None,
    y_label: str | None = None,
    name: str | None = None,
) -> Published:
    """Chart a table published earlier in this notebook: `kind` is bar, barh or line, `x` the
    column along the axis, `y` one or more numeric columns. The report draws the chart from
    the checked table, so a chart passes exactly when its table does."""
    name = name or f"{table}_chart"
    if not NAME.match(name):
        raise ValueError(
            f"publish_chart(): the name {name!r} must be lowercase letters, digits and '_', "
            "starting with a letter (at most 63 characters)"
        )
    if table not in _tables:
        raise ValueError(
            f"publish_chart({table!r}): publish the table first, with publish(df, {table!r}, ...)"
        )
    df, _ = _tables[table]
    chart = ChartSpec.build(table, kind, x, y, title=title, x_label=x_label, y_label=y_label)
    spec = chart.as_spec()
    problems = check_spec(spec, df)
    if problems:
        raise ValueError(f"publish_chart({table!r}): {'; '.join(problems)}")
    run_dir = os.environ.get("DOSSIERHUB_RUN_DIR")
    if run_dir:
        (Path(run_dir) / PUBLISHED_DIR / chart_file(name)).write_text(chart.to_json())
    # its texts are what a viewer reads of it besides its table's cells: the hub checks them
    # too (checks.py); here the author sees the verdict early
    texts = {"the chart's name": name}
    texts.update({f"the chart's {key}": text for key, text in chart.texts().items()})
    findings = text_findings(texts, DossierFacts.from_environment())
    result = CheckResult(name, not any(f.severity == FAIL for f in findings), findings)
    # in a run the hub draws the chart from the checked table: no matplotlib in the kernel
    preview = "" if run_dir else chart_html(spec, df, name=name)
    return Published("chart", name, result, preview)
