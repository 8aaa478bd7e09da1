"""Differencing between releases: a run's published tables against every released table of
its dossier, so that two releases cannot be subtracted to show a group smaller than the
dossier's minimum count (docs/differencing.md).

Every released run keeps its published tables (`reports/<id>/<run>/published/`, root's,
read-only to the workspace's group) beside `release.json`: those files are the record of
every released cell, and this module reads them where they are. There is no separate index:
a second copy of the cells would have to be written at release, kept in step with the runs
and protected like them, and it would save little, since a release is read only when its
table has the same dimensions as the new one (decided from the tiny `.meta.json` and the
Parquet footer) and hundreds of releases are compared in well under a second
(docs/differencing.md, "Cost").

Two tables are compared when they have the same *dimensions*: the columns that say what a
row stands for. Those are the columns publish() was not told are counts or magnitudes, less
the attributes that are not whole numbers (a percentage is a derived measure, not a
category; a year or an hour is a category). Rows are joined on the dimension values; count
columns of the same name are compared cell by cell, and magnitudes are reported in the rows
a count flags.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from .extracts import current_provenance
from .home import Home

RULE = "differencing"
SHOWN_ROWS = 5  # rows spelled out in a finding's message; `rows` lists them all
RELEASED = "__released"  # suffix of a released table's columns after the join


@dataclass(frozen=True)
class PublishedTable:
    """One table publish() wrote for a run, with what its declaration says it holds."""

    run_id: str
    template: str
    parameters: dict[str, Any]
    name: str
    path: Path  # the .parquet file
    dimensions: frozenset[str]
    counts: tuple[str, ...]
    magnitudes: tuple[str, ...]

    def describe(self) -> str:
        values = ", ".join(f"{k}={_show(v)}" for k, v in sorted(self.parameters.items()))
        return (
            f"released run {self.run_id} ({self.template}"
            + (f": {values}" if values else "")
            + f"), table '{self.name}'"
        )


def differencing_checks(home: Home, dossier_id: str, folder: Path) -> list[dict[str, Any]]:
    """One checks.json entry per published table of the run at `folder` whose cells differ
    from a released table's by more than 0 and less than the dossier's min_count.

    Compared: every released run of the dossier but this one, table by table when the
    dimensions are the same, except runs of the same template for another of its declared
    choices (another district: other people, so a small difference there is a coincidence,
    not a group). A released run that cannot be read is reported on every table: it could
    not be compared, so nothing passes unseen. The run's own tables are read as the output
    checks read them, and a failure to read them is raised.
    """
    import polars as pl

    min_count = _min_count(home, dossier_id)
    run = _run(folder)
    tables = _published(folder, run)
    separate = _choice_parameters(home, run.template)
    released: list[PublishedTable] = []
    unreadable: list[str] = []
    for path in _released_runs(home, dossier_id, exclude=folder.name):
        try:
            other = _run(path)
            if not (other.template == run.template and other.differs_in(run, separate)):
                released += _published(path, other)
        except (OSError, ValueError, TypeError, KeyError, pl.exceptions.PolarsError) as exc:
            unreadable.append(
                f"released run {path.name} could not be read ({type(exc).__name__}: "
                f"{_show(exc, 120)}): this table was not compared with it"
            )
    entries = []
    for table in tables:
        findings = [
            {"rule": RULE, "column": None, "rows": [], "message": message} for message in unreadable
        ]
        for other_table in released:
            if other_table.dimensions == table.dimensions:
                findings += compare(table, other_table, min_count)
        if findings:
            entries.append({"table": table.name, "passed": False, "findings": findings})
    return entries


def is_differencing(entry: dict[str, Any]) -> bool:
    """Whether a checks.json entry is one of ours (release re-computes those)."""
    findings = entry.get("findings") or []
    return bool(findings) and all(f.get("rule") == RULE for f in findings)


@contextlib.contextmanager
def release_lock(home: Home, dossier_id: str) -> Iterator[None]:
    """One release of a dossier at a time: two neighbouring runs released at once would
    each pass the check against releases that do not include the other."""
    folder = home.locks_dir / "releases"
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / f"{dossier_id}.lock")):
        yield


# ---------------------------------------------------------------- reading runs


def _min_count(home: Home, dossier_id: str) -> int:
    from dossier_kernel.disclosure import DEFAULT_RULES

    provenance = current_provenance(home.extract_dir(dossier_id)) or {}
    rules = {**DEFAULT_RULES, **(provenance.get("disclosure") or {})}
    return int(rules["min_count"])


def _released_runs(home: Home, dossier_id: str, exclude: str) -> list[Path]:
    parent = home.reports_dir / dossier_id
    if not parent.is_dir():
        return []
    return [
        run
        for run in sorted(parent.iterdir())
        if run.name != exclude and run.is_dir() and (run / "release.json").exists()
    ]


@dataclass(frozen=True)
class Run:
    run_id: str
    template: str
    parameters: dict[str, Any]

    def differs_in(self, other: Run, names: set[str]) -> bool:
        return any(self.parameters.get(n) != other.parameters.get(n) for n in names)


def _run(folder: Path) -> Run:
    provenance = json.loads((folder / "provenance.json").read_text(encoding="utf-8"))
    return Run(
        folder.name,
        str(provenance.get("template", "")),
        dict(provenance.get("parameters") or {}),
    )


def _choice_parameters(home: Home, template: str) -> set[str]:
    """The template's parameters with a closed list of choices (or `views`); none when
    the template is gone or broken, so every run of it is compared."""
    from .templates_catalog import TemplateError, load_template

    try:
        return {p.name for p in load_template(home, template).parameters if p.choices}
    except TemplateError:
        return set()


def _published(folder: Path, run: Run) -> list[PublishedTable]:
    """The tables of a run that have both their Parquet file and their declaration."""
    import polars as pl

    folder = folder / "published"
    if not folder.is_dir():
        return []
    tables = []
    for meta_path in sorted(folder.glob("*.meta.json")):
        name = meta_path.name.removesuffix(".meta.json")
        path = folder / f"{name}.parquet"
        if not path.exists():
            continue  # the output checks fail such a table; there is nothing to compare
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        schema = pl.read_parquet_schema(path)
        counts = tuple(c for c in meta.get("counts", []) if c in schema)
        magnitudes = tuple(c for c in meta.get("magnitudes", {}) if c in schema)
        attributes = set(meta.get("attributes", []))
        dimensions = frozenset(
            column
            for column, dtype in schema.items()
            if column not in counts
            and column not in magnitudes
            and not (column in attributes and not dtype.is_integer())
        )
        tables.append(
            PublishedTable(
                run.run_id, run.template, run.parameters, name, path, dimensions, counts, magnitudes
            )
        )
    return tables


# ---------------------------------------------------------------- comparing


def compare(new: PublishedTable, old: PublishedTable, min_count: int) -> list[dict[str, Any]]:
    """Findings for `new` against one released table with the same dimensions."""
    import polars as pl

    counts = [c for c in new.counts if c in old.counts]
    if not counts:
        return []
    magnitudes = [c for c in new.magnitudes if c in old.magnitudes]
    try:
        pairs = _pairs(new, old, sorted(new.dimensions), [*counts, *magnitudes])
    except (OSError, pl.exceptions.PolarsError) as exc:
        return [
            {
                "rule": RULE,
                "column": None,
                "rows": [],
                "message": f"could not be compared with {old.describe()} "
                f"({type(exc).__name__}: {_show(exc, 120)})",
            }
        ]
    findings = []
    flagged: set[int] = set()
    for column in counts:
        rows = _small_differences(pairs, column, min_count)
        if rows:
            flagged |= {r["__row"] for r in rows}
            findings.append(_finding(new, old, column, rows, min_count, "count"))
    for column in magnitudes:
        in_flagged = pairs.filter(pl.col("__row").is_in(sorted(flagged))).to_dicts()
        rows = [r for r in in_flagged if r[column] != r[column + RELEASED]]
        if rows:
            findings.append(_finding(new, old, column, rows, min_count, "magnitude"))
    return findings


def _pairs(
    new: PublishedTable, old: PublishedTable, dimensions: list[str], values: list[str]
) -> Any:
    """The rows of both tables joined on their dimension values (compared as text, so a
    category stored as Categorical in one and String in the other still matches), with the
    new table's row numbers in `__row`. Rows whose dimension values repeat within a table
    cannot be matched to one row of the other and are left out; a table without dimensions
    is compared only when both hold one row (a total)."""
    import polars as pl

    left = pl.read_parquet(new.path, columns=[*dimensions, *values]).with_row_index("__row")
    right = pl.read_parquet(old.path, columns=[*dimensions, *values])
    numeric = [pl.col(c).cast(pl.Float64, strict=False) for c in values]
    left, right = left.with_columns(numeric), right.with_columns(numeric)
    right = right.rename({c: c + RELEASED for c in values})
    if not dimensions:
        if left.height != 1 or right.height != 1:
            return left.clear().hstack(right.clear())
        return left.hstack(right)
    text = [pl.col(d).cast(pl.String) for d in dimensions]
    left = left.with_columns(text).filter(pl.len().over(dimensions) == 1)
    right = right.with_columns(text).filter(pl.len().over(dimensions) == 1)
    return left.join(right, on=dimensions, how="inner", nulls_equal=True).sort("__row")


def _small_differences(pairs: Any, column: str, min_count: int) -> list[dict[str, Any]]:
    """Rows where the two cells differ by more than 0 and less than `min_count`, or may:
    a blank (suppressed) cell is taken to hold 1 to min_count - 1, as suppress_small
    leaves it, so against a shown value v the difference lies in [v - (m-1), v - 1]."""
    import polars as pl

    here, there = pl.col(column), pl.col(column + RELEASED)
    gap = (here - there).abs()
    exact = here.is_not_null() & there.is_not_null() & (gap > 0) & (gap < min_count)
    if min_count <= 1:  # nothing is suppressed under a minimum of 1: a blank is not a count
        return pairs.filter(exact).to_dicts()
    shown = pl.coalesce(here, there)
    low, high = shown - (min_count - 1), shown - 1
    possible = ((low <= min_count - 1) & (high >= 1)) | ((low <= -1) & (high >= 1 - min_count))
    suppressed = (here.is_null() ^ there.is_null()) & possible
    return pairs.filter(exact | suppressed).to_dicts()


def _finding(
    new: PublishedTable,
    old: PublishedTable,
    column: str,
    rows: list[dict[str, Any]],
    min_count: int,
    kind: str,
) -> dict[str, Any]:
    dimensions = sorted(new.dimensions)
    shown = "; ".join(_cell(r, column, dimensions, min_count) for r in rows[:SHOWN_ROWS])
    more = f"; and {len(rows) - SHOWN_ROWS} more" if len(rows) > SHOWN_ROWS else ""
    if kind == "count":
        lead = f"'{column}' differs by fewer than {min_count} from {old.describe()}"
    else:
        lead = (
            f"magnitude '{column}' in the rows flagged against {old.describe()} "
            "gives the total of the few units in the difference"
        )
    return {
        "rule": RULE,
        "column": column,
        "rows": [int(r["__row"]) for r in rows],
        "message": f"{lead} in {len(rows)} row(s): {shown}{more}",
    }


def _cell(row: dict[str, Any], column: str, dimensions: list[str], min_count: int) -> str:
    where = (
        ", ".join(f"{d}={_show(row[d]) if row[d] is not None else '(blank)'}" for d in dimensions)
        or "the table's one row"
    )
    here, there = row[column], row[column + RELEASED]
    if here is not None and there is not None:
        return (
            f"{where}: {_number(here)} here, {_number(there)} there "
            f"(difference {_number(here - there)})"
        )
    shown = here if here is not None else there
    sides = ("here", "suppressed there") if here is not None else ("there", "suppressed here")
    low, high = _possible_gap(shown, min_count)
    return (
        f"{where}: {_number(shown)} {sides[0]}, {sides[1]} (1 to {min_count - 1}), "
        f"a difference of {_number(low)} to {_number(high)}"
    )


def _possible_gap(shown: float, min_count: int) -> tuple[float, float]:
    """The least and greatest |shown - s| for a suppressed s in 1 .. min_count - 1."""
    low, high = shown - (min_count - 1), shown - 1
    if low >= 0:
        return low, high
    if high <= 0:
        return -high, -low
    return 0, max(-low, high)


def _number(value: float) -> str:
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}"


def _show(value: object, limit: int = 40) -> str:
    """A value from a table or a file in a message: one line, printable, bounded."""
    text = "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode() for c in str(value)
    )
    return text if len(text) <= limit else text[: limit - 1] + "…"
