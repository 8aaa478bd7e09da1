"""Differencing between releases: a run's published tables against every released table of
its dossier, so that two releases cannot be subtracted to show a group smaller than the
dossier's minimum count (docs/differencing.md).

Every released run keeps its published tables (`reports/<id>/<run>/published/`, root's,
read-only to the workspace's group) beside `release.json`: those files are the record of
every released cell, and this module reads them where they are. There is no separate index:
it would be a second copy of the cells, written at release, kept in step with the runs
(a run released before it existed, a release whose index write failed) and protected like
them, to save time that is small at the scale of a dossier: the declarations and Parquet
footers of 100 releases and one scan of their tables take 0.1 to 0.16 s, 1000 releases 1.4
to 1.8 s (bench/bench_differencing.py; docs/differencing.md, "Cost").

Two tables are compared when they have the same *dimensions*: the columns that say what a
row stands for. Those are the columns publish() was not told are counts or magnitudes, less
the attributes that are not whole numbers (a percentage is a derived measure, not a
category; a year or an hour is a category). Rows are joined on the dimension values; count
columns of the same name are compared cell by cell, and magnitudes are reported in the rows
a count flags.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from dossier_kernel.published import (
    DECLARATION_SUFFIX,
    PublishedError,
    names_with,
    read_declaration,
    table_file,
)
from dossierhub.reports.checks import run_rules
from dossierhub.reports.records import check_entry, is_released, read_record
from dossierhub.state.home import Home, RunFolder
from dossierhub.state.problems import ReportRefused

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
    dtypes: dict[str, str]  # column -> Polars type, from the Parquet footer

    def describe(self) -> str:
        values = ", ".join(f"{k}={_show(v)}" for k, v in sorted(self.parameters.items()))
        return (
            f"released run {self.run_id} ({self.template}"
            + (f": {values}" if values else "")
            + f"), table '{self.name}'"
        )


def differencing_checks(home: Home, dossier_id: str, folder: RunFolder) -> list[dict[str, Any]]:
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

    run = _run(folder)
    # the rules of the run's own extracts generation, as its output checks had (run_rules)
    min_count = int(run_rules(home, dossier_id, run.generation)["min_count"])
    # its own tables with a declaration the strict reader refuses fail the output checks
    # (checks.py); here they are left out rather than fail the run
    tables = _published(folder, run, skip_unreadable=True)
    separate = _choice_parameters(home, run.template)
    released: list[PublishedTable] = []
    unreadable: list[str] = []
    for path in _released_runs(home, dossier_id, exclude=folder.run_id):
        try:
            other = _run(path)
            if not (other.template == run.template and other.differs_in(run, separate)):
                released += _published(path, other)
        except (
            OSError,
            ValueError,
            TypeError,
            KeyError,
            ReportRefused,
            pl.exceptions.PolarsError,
        ) as exc:
            unreadable.append(
                f"released run {path.run_id} could not be read ({type(exc).__name__}: "
                f"{_show(exc, 120)}): this table was not compared with it"
            )
    entries = []
    for table in tables:
        findings: list[dict[str, Any]] = [
            {"rule": RULE, "column": None, "rows": [], "message": message} for message in unreadable
        ]
        same = [other for other in released if other.dimensions == table.dimensions]
        findings += compare(table, same, min_count)
        if findings:
            entries.append(check_entry(table.name, False, findings))
    return entries


def is_differencing(entry: dict[str, Any]) -> bool:
    """Whether a checks.json entry is one of ours (release re-computes those)."""
    findings = entry.get("findings") or []
    return bool(findings) and all(f.get("rule") == RULE for f in findings)


@contextlib.contextmanager
def release_lock(home: Home, dossier_id: str) -> Iterator[None]:
    """One release of a dossier at a time: two neighbouring runs released at once would
    each pass the check against releases that do not include the other."""
    lock = home.release_lock_file(dossier_id)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock)):
        yield


# ---------------------------------------------------------------- reading runs


def _released_runs(home: Home, dossier_id: str, exclude: str) -> list[RunFolder]:
    parent = home.runs_dir(dossier_id)
    if not parent.is_dir():
        return []
    runs = [home.run_folder(dossier_id, p.name) for p in sorted(parent.iterdir()) if p.is_dir()]
    return [run for run in runs if run.run_id != exclude and is_released(run)]


@dataclass(frozen=True)
class Run:
    run_id: str
    template: str
    parameters: dict[str, Any]
    generation: str | None = None  # of the extracts it read: whose rules judge it

    def differs_in(self, other: Run, names: set[str]) -> bool:
        return any(self.parameters.get(n) != other.parameters.get(n) for n in names)


def _run(folder: RunFolder) -> Run:
    record = read_record(folder)
    return Run(folder.run_id, record.template, dict(record.parameters), record.extracts_generation)


def _choice_parameters(home: Home, template: str) -> set[str]:
    """The template's parameters with a closed list of choices (or `views`); none when
    the template is gone or broken, so every run of it is compared."""
    from dossierhub.state.templates import TemplateError, load_template

    try:
        return {p.name for p in load_template(home, template).parameters if p.choices}
    except TemplateError:
        return set()


def _published(
    run_folder: RunFolder, run: Run, *, skip_unreadable: bool = False
) -> list[PublishedTable]:
    """The tables of a run that have both their Parquet file and their declaration. A
    declaration that is not what publish() writes raises PublishedError (a released run's:
    the caller reports it), or with `skip_unreadable` leaves its table out."""
    import polars as pl

    folder = run_folder.published
    if not folder.is_dir():
        return []
    tables = []
    files = {p.name for p in folder.iterdir()}
    for name in sorted(names_with(files, DECLARATION_SUFFIX)):
        path = folder / table_file(name)
        if not path.exists():
            continue  # the output checks fail such a table; there is nothing to compare
        try:
            declaration = read_declaration(folder, name)
        except PublishedError:
            if skip_unreadable:
                continue
            raise
        schema = pl.read_parquet_schema(path)
        counts = tuple(c for c in declaration.counts if c in schema)
        magnitudes = tuple(c for c in declaration.magnitudes if c in schema)
        attributes = set(declaration.attributes)
        dimensions = frozenset(
            column
            for column, dtype in schema.items()
            if column not in counts
            and column not in magnitudes
            and not (column in attributes and not dtype.is_integer())
        )
        tables.append(
            PublishedTable(
                run.run_id,
                run.template,
                run.parameters,
                name,
                path,
                dimensions,
                counts,
                magnitudes,
                {column: str(dtype) for column, dtype in schema.items()},
            )
        )
    return tables


# ---------------------------------------------------------------- comparing


def compare(
    new: PublishedTable, olds: list[PublishedTable], min_count: int
) -> list[dict[str, Any]]:
    """Findings for `new` against released tables with the same dimensions: one per
    released table and column, in the order of `olds`. All of them are read and joined in
    one query (a query per table costs milliseconds each, which a thousand releases add
    up to seconds); when one cannot be read, each is compared on its own so that the one
    is named and the others still count."""
    import polars as pl

    olds = [old for old in olds if set(new.counts) & set(old.counts)]
    if not olds:
        return []
    try:
        pairs = _pairs(new, olds, _parameter_texts(new))
    except (OSError, pl.exceptions.PolarsError) as exc:
        if len(olds) > 1:
            return [f for old in olds for f in compare(new, [old], min_count)]
        message = f"could not be compared with {olds[0].describe()} ({type(exc).__name__}: "
        return [
            {"rule": RULE, "column": None, "rows": [], "message": f"{message}{_show(exc, 120)})"}
        ]
    found: dict[tuple[int, int, str], list[dict[str, Any]]] = {}  # (table, order, column)
    for order, column in enumerate(new.counts):
        having = [i for i, old in enumerate(olds) if column in old.counts]
        for row in _small_differences(pairs, column, having, min_count):
            found.setdefault((row["__table"], order, column), []).append(row)
    flagged: dict[int, set[int]] = {}
    for (table, _, _), rows in found.items():
        flagged.setdefault(table, set()).update(r["__row"] for r in rows if r["__row"] is not None)
    for order, column in enumerate(new.magnitudes, start=len(new.counts)):
        for table, row_numbers in sorted(flagged.items()):
            if column not in olds[table].magnitudes:
                continue
            in_rows = pairs.filter(
                (pl.col("__table") == table) & pl.col("__row").is_in(sorted(row_numbers))
            ).to_dicts()
            differ = [r for r in in_rows if r[column] != r[column + RELEASED]]
            if differ:
                found[(table, order, column)] = differ
    return [
        _finding(new, olds[table], column, rows, min_count, column in new.counts)
        for (table, _, column), rows in sorted(found.items())
    ]


def _pairs(new: PublishedTable, olds: list[PublishedTable], parameters: set[str]) -> Any:
    """The rows of the new table joined with the rows of every released one on their
    key values (compared as text, so a category stored as Categorical in one and String in
    another still matches): the new table's row numbers in `__row`, the released table's
    index in `__table`, its cells suffixed with RELEASED. The keys are the dimensions less
    those that say nothing of a row (_join_keys). Rows whose key values repeat within a
    table cannot be matched to one row and are left out; tables without keys are compared
    only when both hold one row (a total).

    A row one table has and the other leaves out entirely is paired with nothing (null
    cells, `__left_out` says on which side): it is compared like a suppressed cell, as
    leaving a small row out tells what blanking it does."""
    import polars as pl

    dimensions = sorted(new.dimensions)
    values = [*new.counts, *new.magnitudes]
    text = [pl.col(d).cast(pl.String) for d in dimensions]
    everything = (
        pl.read_parquet(new.path, columns=[*dimensions, *values])
        .with_row_index("__row")
        .with_columns(*text, *(pl.col(c).cast(pl.Float64, strict=False) for c in values))
    )
    keys = _join_keys(everything, dimensions, parameters)
    # files with the same types are read by one scan (a scan per file costs milliseconds
    # each); the file's path says which released table a row comes from
    groups: dict[tuple[tuple[str, str], ...], list[int]] = {}
    for index, old in enumerate(olds):
        mine = [c for c in values if c in old.counts or c in old.magnitudes]
        key = tuple((c, old.dtypes[c]) for c in [*keys, *mine])
        groups.setdefault(key, []).append(index)
    scans = []
    for key, indexes in groups.items():
        mine = [c for c, _ in key if c not in keys]
        files = pl.LazyFrame(
            {"__file": [str(olds[i].path) for i in indexes], "__table": indexes},
            schema={"__file": pl.String, "__table": pl.Int64},
        )
        scans.append(
            pl.scan_parquet([olds[i].path for i in indexes], include_file_paths="__file")
            .select(
                *(pl.col(d).cast(pl.String) for d in keys),
                *(pl.col(c).cast(pl.Float64, strict=False).alias(c + RELEASED) for c in mine),
                "__file",
            )
            .join(files, on="__file")
            .drop("__file")
        )
    every_released = pl.concat(scans, how="diagonal_relaxed")
    right = every_released.filter(pl.len().over(["__table", *keys]) == 1)
    left = everything.filter(pl.len().over(keys) == 1 if keys else pl.len() == 1).lazy()
    if keys:
        parts = [
            left.join(right, on=keys, how="inner", nulls_equal=True),
            right.join(
                everything.lazy().select(keys), on=keys, how="anti", nulls_equal=True
            ).with_columns(__left_out=pl.lit("here")),
            left.join(pl.LazyFrame({"__table": range(len(olds))}), how="cross")
            .join(
                every_released.select("__table", *keys),
                on=["__table", *keys],
                how="anti",
                nulls_equal=True,
            )
            .with_columns(__left_out=pl.lit("there")),
        ]
        joined = pl.concat(parts, how="diagonal_relaxed")
    else:
        joined = left.join(right, how="cross").with_columns(__left_out=pl.lit(None, pl.String))
    for column in values:  # a released table without the column contributes nulls to it
        for name in (column, column + RELEASED):
            if name not in joined.collect_schema():
                joined = joined.with_columns(pl.lit(None, dtype=pl.Float64).alias(name))
    for dimension in dimensions:  # a row left out here has only the keys
        if dimension not in joined.collect_schema():
            joined = joined.with_columns(pl.lit(None, dtype=pl.String).alias(dimension))
    return joined.sort("__table", "__row", nulls_last=True).collect()


def _join_keys(table: Any, dimensions: list[str], parameters: set[str]) -> list[str]:
    """The dimensions that tell rows apart: not those with one value in a table of several
    rows, nor those whose one value is a parameter of the run (a threshold echoed as a
    column would otherwise keep every row of two runs from joining)."""
    keys = []
    for dimension in dimensions:
        distinct = table[dimension].drop_nulls().unique()
        constant = table[dimension].null_count() == 0 and distinct.len() == 1
        if constant and (table.height > 1 or str(distinct[0]) in parameters):
            continue
        keys.append(dimension)
    return keys


def _parameter_texts(table: PublishedTable) -> set[str]:
    """The run's parameter values as a column of text would hold them."""
    import polars as pl

    texts = set()
    for value in table.parameters.values():
        if isinstance(value, bool | int | float | str):
            texts.add(pl.Series([value]).cast(pl.String)[0])
    return texts


def _small_differences(
    pairs: Any, column: str, tables: list[int], min_count: int
) -> list[dict[str, Any]]:
    """Rows where the two cells differ by more than 0 and less than `min_count`, or may:
    a blank (suppressed) cell is taken to hold 1 to min_count - 1, as suppress_small
    leaves it, so against a shown value v the difference lies in [v - (m-1), v - 1]."""
    import polars as pl

    here, there = pl.col(column), pl.col(column + RELEASED)
    gap = (here - there).abs()
    exact = here.is_not_null() & there.is_not_null() & (gap > 0) & (gap < min_count)
    among = pl.col("__table").is_in(tables)
    if min_count <= 1:  # nothing is suppressed under a minimum of 1: a blank is not a count
        return pairs.filter(among & exact).to_dicts()
    shown = pl.coalesce(here, there)
    low, high = shown - (min_count - 1), shown - 1
    possible = ((low <= min_count - 1) & (high >= 1)) | ((low <= -1) & (high >= 1 - min_count))
    suppressed = (here.is_null() ^ there.is_null()) & possible
    return pairs.filter(among & (exact | suppressed)).to_dicts()


def _finding(
    new: PublishedTable,
    old: PublishedTable,
    column: str,
    rows: list[dict[str, Any]],
    min_count: int,
    is_count: bool,
) -> dict[str, Any]:
    dimensions = sorted(new.dimensions)
    shown = "; ".join(_cell(r, column, dimensions, min_count) for r in rows[:SHOWN_ROWS])
    more = f"; and {len(rows) - SHOWN_ROWS} more" if len(rows) > SHOWN_ROWS else ""
    if is_count:
        lead = f"'{column}' differs by fewer than {min_count} from {old.describe()}"
    else:
        lead = (
            f"magnitude '{column}' in the rows flagged against {old.describe()} "
            "gives the total of the few units in the difference"
        )
    return {
        "rule": RULE,
        "column": column,
        "rows": [int(r["__row"]) for r in rows if r["__row"] is not None],
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
    hidden = "left out" if row.get("__left_out") else "suppressed"
    sides = ("here", f"{hidden} there") if here is not None else ("there", f"{hidden} here")
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
