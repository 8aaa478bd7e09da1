"""The dossier's own pseudonyms, recognised in a published table whatever form they take.

A pattern (32 lowercase hex characters) only catches the careless: upper-cased, truncated,
made Categorical, cast to an integer or mixed with other values, a pseudonym no longer looks
like one. So every cell is turned into the hex it could be hiding (docs/output-checks.md):

- text (String, Categorical, Enum, JSON of nested values, hex of Binary) is lower-cased and
  read with and without separators (space - _ : .); every run of at least MIN_FRAGMENT hex
  characters, and the hex of every run of at least MIN_DECIMAL decimal digits, is a candidate;
- an integer of at least 16**(MIN_FRAGMENT - 1) is a candidate as hex (and with the leading
  zeros, which the number lost); a float as large gives its first FLOAT_HEX_DIGITS exact digits;
- a Date, Datetime, Time or Duration is the integer it is stored as (a Duration of microseconds
  shows "8588342 days, 19:27:44.722239" and gives 15 hex digits back exactly).

A candidate is compared with the pseudonyms of the dossier's extracts, never with a pattern:
each pseudonym contributes its MIN_FRAGMENT-character windows at offsets 0, STEP, 2*STEP, ...
(the last one ends at the pseudonym's end), and each candidate all its MIN_FRAGMENT-character
pieces. A fragment of a pseudonym is therefore found when it keeps at least MIN_FRAGMENT
characters from its start or end, or MIN_FRAGMENT + STEP - 1 from anywhere.

Why MIN_FRAGMENT = 12 (48 bits): a random 12-hex piece meets one of W windows with chance
W / 16**12; a ~1M-resident dossier has about 1.5M distinct pseudonyms (people and households),
W = 9M windows, so about 3e-8 per piece and 7e-7 for a whole 32-character value that is not a
pseudonym. Shorter would let digits-only values (dates, amounts in cents) meet pseudonyms by
chance; longer would miss a 15-hex-digit prefix cast to a 64-bit integer and a float's 13 exact
hex digits.

Pseudonyms are loaded only when a table has a candidate (most aggregate tables have none), and
compared inside DuckDB: the candidates' pieces are the small side of a semi-join that streams
over the extracts' pseudonym columns, so nothing the size of the dossier is held in memory.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import polars as pl

from .provenance import ExtractProvenance, read_provenance

MIN_FRAGMENT = 12
STEP = 4
PSEUDONYM_LENGTH = 32
OFFSETS = tuple(range(0, PSEUDONYM_LENGTH - MIN_FRAGMENT + 1, STEP))
MIN_DECIMAL = 14  # 16**11 has 14 decimal digits: shorter numbers have fewer than 12 hex digits
FLOAT_HEX_DIGITS = 13  # a float's 53-bit mantissa holds at least 13 exact hex digits
SMALLEST = 16 ** (MIN_FRAGMENT - 1)
EXACT_FLOAT = 2**53
SEPARATORS = r"[\s\-_:.]"
LOST_ZEROS = 3  # a fragment starting with 4 zeros (1 in 65536) is missed as a number
MAX_PIECES = 2_000_000
"""More pieces than this are not compared (memory and time stay bounded whatever a kernel
publishes): the table fails instead. A 5000-row table of pseudonyms gives about 100,000."""


class TooManyCandidates(Exception):
    """A table holds more hex-like values than the check compares."""


@dataclass(frozen=True)
class DossierFacts:
    """What the checks know of the dossier besides the table itself.

    identifier_columns: names of its pseudonymised columns; quasi_identifiers: names of its
    quasi-identifier columns (catalog kind `quasi-identifier`); pseudonym_files: the extract
    files and columns holding its pseudonyms.
    """

    identifier_columns: frozenset[str] = frozenset()
    quasi_identifiers: frozenset[str] = frozenset()
    pseudonym_files: tuple[tuple[Path, str], ...] = ()
    duckdb_config: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_extracts(cls, folder: Path, provenance: ExtractProvenance | None) -> DossierFacts:
        """From an extracts folder (one generation, or extracts/<id>) and its provenance
        (whose reader refused any view file that is not a plain name inside the folder)."""
        if provenance is None:
            return cls()
        quasi: set[str] = set()
        files: list[tuple[Path, str]] = []
        for view in provenance.views.values():
            quasi.update(view.quasi_identifiers)
            files += [(folder / view.file, column) for column in view.pseudonymized]
        return cls(frozenset(provenance.identifier_columns()), frozenset(quasi), tuple(files))

    @classmethod
    def from_environment(cls) -> DossierFacts:
        """Inside a workspace or report kernel: the extracts next to $DOSSIER_CATALOG (read
        only); elsewhere nothing is known. A malformed provenance is refused
        (ProvenanceError): its pseudonyms are not silently left unchecked."""
        catalog = os.environ.get("DOSSIER_CATALOG")
        if not catalog:
            return cls()
        folder = Path(catalog).parent
        try:
            provenance = read_provenance(folder)
        except OSError:
            return cls()
        config: dict[str, Any] = {}
        if os.environ.get("DOSSIER_DUCKDB_MEMORY_LIMIT"):
            config["memory_limit"] = os.environ["DOSSIER_DUCKDB_MEMORY_LIMIT"]
        if os.environ.get("DOSSIER_DUCKDB_THREADS"):
            config["threads"] = int(os.environ["DOSSIER_DUCKDB_THREADS"])
        return replace(cls.from_extracts(folder, provenance), duckdb_config=config)

    def known_pieces(self, pieces: Iterable[str]) -> set[str]:
        """The pieces (MIN_FRAGMENT lowercase hex characters) that are windows of a pseudonym."""
        wanted = sorted(set(pieces))
        if not wanted or not self.pseudonym_files:
            return set()
        import duckdb

        scans = " UNION ALL ".join(
            f"SELECT {_identifier(column)} AS v FROM read_parquet({_literal(str(path))})"
            for path, column in self.pseudonym_files
        )
        offsets = ", ".join(f"({o + 1})" for o in OFFSETS)
        # distinct first: people appear in several views, and payments repeat them monthly
        # (apply writes pseudonyms as lowercase hex: nothing to normalise on this side)
        query = (
            f"SELECT DISTINCT w FROM (SELECT substr(v, o, {MIN_FRAGMENT}) AS w "
            f"FROM (SELECT DISTINCT v FROM ({scans}) WHERE v IS NOT NULL) AS p, "
            f"(VALUES {offsets}) AS t(o)) WHERE w IN (SELECT piece FROM pieces)"
        )
        con = duckdb.connect(config=self.duckdb_config)
        try:
            con.execute(
                "CREATE TEMP TABLE pieces AS SELECT unnest(?::VARCHAR[]) AS piece",
                [wanted],
            )
            return {row[0] for row in con.execute(query).fetchall()}
        finally:
            con.close()


def pseudonym_matches(table: pl.DataFrame, facts: DossierFacts) -> dict[str, list[int]]:
    """{column: rows} of the cells that hold (a fragment of) one of the dossier's pseudonyms."""
    candidates = candidate_pieces(table)
    if candidates.is_empty() or not facts.pseudonym_files:
        return {}
    known = facts.known_pieces(candidates["piece"].unique().to_list())
    if not known:
        return {}
    hits = (
        candidates.filter(pl.col("piece").is_in(list(known)))
        .group_by("column")
        .agg(pl.col("row").unique().sort())
    )
    return {column: rows for column, rows in hits.iter_rows()}


def candidate_pieces(table: pl.DataFrame) -> pl.DataFrame:
    """(column, row, piece) for every MIN_FRAGMENT-hex piece a cell could be hiding."""
    every = [_runs(table[name]) for name in table.columns]
    runs = [r for r in every if r is not None and not r.is_empty()]
    if not runs:
        return pl.DataFrame(schema={"column": pl.String, "row": pl.UInt32, "piece": pl.String})
    unique = pl.concat(runs).unique()
    _bounded(int((unique["run"].str.len_chars() - MIN_FRAGMENT + 1).sum()))
    return (
        unique.with_columns(
            start=pl.int_ranges(0, pl.col("run").str.len_chars() - MIN_FRAGMENT + 1)
        )
        .explode("start")
        .select(
            "column",
            "row",
            piece=pl.col("run").str.slice(pl.col("start"), MIN_FRAGMENT),
        )
        .unique()
    )


def _runs(series: pl.Series) -> pl.DataFrame | None:
    """(column, row, run): hex runs of at least MIN_FRAGMENT characters hidden in a column."""
    dtype = series.dtype
    if dtype.is_temporal():  # Date, Datetime, Time, Duration: integers shown as dates
        series, dtype = series.to_physical(), series.to_physical().dtype
    if dtype.is_integer():
        return _number_runs(series, exact=True)
    if dtype.is_float():
        return _number_runs(series, exact=False)
    text = _as_text(series)
    if text is None:
        return None
    frame = pl.DataFrame({"text": text.str.to_lowercase()}).with_row_index("row")
    frame = frame.filter(pl.col("text").str.len_chars() >= MIN_FRAGMENT)
    if frame.is_empty():
        return None
    joined = pl.col("text").str.replace_all(SEPARATORS, "")
    hex_runs = frame.select(
        "row",
        run=pl.concat_list(
            pl.col("text").str.extract_all(f"[0-9a-f]{{{MIN_FRAGMENT},}}"),
            joined.str.extract_all(f"[0-9a-f]{{{MIN_FRAGMENT},}}"),
        ),
    ).explode("run")
    digit_runs = (
        frame.select(
            "row",
            digits=pl.concat_list(
                pl.col("text").str.extract_all(f"[0-9]{{{MIN_DECIMAL},}}"),
                joined.str.extract_all(f"[0-9]{{{MIN_DECIMAL},}}"),
            ),
        )
        .explode("digits")
        .drop_nulls()
        .unique()
    )
    _bounded(digit_runs.height * (LOST_ZEROS + 1))
    decimal = _hex_of_integers(
        digit_runs["row"].to_list(),
        digit_runs["digits"].str.to_integer(base=10, dtype=pl.UInt128, strict=False).to_list(),
    )
    runs = pl.concat([hex_runs.drop_nulls(), decimal], how="vertical_relaxed")
    return runs.with_columns(column=pl.lit(series.name)).select("column", "row", "run")


def _as_text(series: pl.Series) -> pl.Series | None:
    """The column as text, or None for types that cannot carry a hex run (bool, dates)."""
    dtype = series.dtype
    if dtype == pl.String:
        return series
    if isinstance(dtype, pl.Categorical | pl.Enum):
        return series.cast(pl.String)
    if dtype.is_decimal():
        return series.cast(pl.String)
    if dtype == pl.Binary:
        return series.bin.encode("hex")
    if dtype.is_nested():
        return series.to_frame().select(pl.struct(pl.all()).struct.json_encode()).to_series()
    return None


def _number_runs(series: pl.Series, *, exact: bool) -> pl.DataFrame:
    """Hex of the numbers large enough to carry MIN_FRAGMENT hex digits."""
    frame = pl.DataFrame({"value": series}).with_row_index("row")
    if not exact:
        frame = frame.with_columns(pl.col("value").cast(pl.Float64))
        frame = frame.filter(pl.col("value").is_finite())
    elif series.dtype != pl.UInt128:  # room for abs() of the most negative value
        frame = frame.with_columns(pl.col("value").cast(pl.Int128))
    large = frame.filter(pl.col("value").abs() >= SMALLEST)
    _bounded(large.height * (LOST_ZEROS + 1))
    rows, values = large["row"].to_list(), large["value"].to_list()
    if exact:
        runs = _hex_of_integers(rows, values)
    else:  # beyond 2**53 only the leading digits of a float are exact
        digits = [None if abs(v) < EXACT_FLOAT else FLOAT_HEX_DIGITS for v in values]
        runs = _hex_of_integers(rows, [int(abs(v)) for v in values], digits)
    return runs.with_columns(column=pl.lit(series.name)).select("column", "row", "run")


def _hex_of_integers(
    rows: list[int], values: list[int | None], keep: list[int | None] | None = None
) -> pl.DataFrame:
    """(row, run) with each integer's hex (its first `keep` digits when given), also with the
    leading zeros (up to LOST_ZEROS) that a number made of hex digits loses."""
    out_rows, runs = [], []
    for index, (row, value) in enumerate(zip(rows, values, strict=True)):
        if value is None or abs(value) < SMALLEST:
            continue
        digits = format(abs(value), "x")[: keep[index] if keep else None]
        for zeros in range(LOST_ZEROS + 1):
            out_rows.append(row)
            runs.append("0" * zeros + digits)
    return pl.DataFrame({"row": out_rows, "run": runs}, schema={"row": pl.UInt32, "run": pl.String})


def _bounded(pieces: int) -> None:
    if pieces > MAX_PIECES:
        raise TooManyCandidates(
            f"{pieces:,} hex-like pieces, more than the {MAX_PIECES:,} that are compared"
        )


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
