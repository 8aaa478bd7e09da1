"""Output checks for published tables: the rules of a dossier's `disclosure` (DESIGN.md), and
what they catch and miss (docs/output-checks.md).

Used twice: by `publish()` in a notebook (so authors see the verdict early) and by the hub on
the run's copies (dossierhub.checks, the verdict that counts). The author's declaration (which
columns are counts, magnitudes, attributes) is taken as a claim, not as the truth: values are
compared with the dossier's own pseudonyms, text that holds numbers is checked as numbers, and
tables without counts are looked at for person-level rows.

Every finding has a severity. "fail" findings fail the table: it is released only with a
written justification. "review" findings are shown to the reviewer without blocking (a value
that would fail the count rule in a column declared as an attribute, such as an hour of day).
"""

from __future__ import annotations

import io
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import polars as pl

from .identifiers import DossierFacts, TooManyCandidates, pseudonym_matches

PSEUDONYM = re.compile(r"^[0-9a-f]{32}$")
HEX_CODE = r"^[0-9a-f]{8,}$"
DECIMAL = r"^[+-]?[0-9]+([.,][0-9]+)?$"
WHOLE = r"^[+-]?[0-9]+$"
DEFAULT_RULES = {
    "min_count": 10,
    "dominance": {"n": 1, "k": 0.5},
    "max_rows": 1000,
    "max_bytes": 16_000_000,
}
VARYING = 0.5
"""A numeric attribute with a distinct value in at least this share of rows varies per row."""
RECORD_ROWS = 10
"""From this many rows, a table without counts whose other columns repeat is records."""
MICRODATA_ROWS = 100
"""From this many rows, a table without counts made only of varying numbers is records."""
NEAR_UNIQUE = 0.9
"""Share of distinct values above which hex codes look like one code per row."""
TEXT_NUMBERS = 0.9
"""Share of whole numbers above which an undeclared text column is checked as a count."""

FAIL = "fail"
REVIEW = "review"
Severity = Literal["fail", "review"]


@dataclass
class Finding:
    rule: str
    column: str | None
    message: str
    rows: list[int] = field(default_factory=list)
    severity: Severity = FAIL


@dataclass
class CheckResult:
    table: str
    passed: bool
    findings: list[Finding]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def _repr_markdown_(self) -> str:
        items = "\n".join(
            f"- **{f.rule}**{' (for review)' if f.severity == REVIEW else ''}: {f.message}"
            for f in self.findings
        )
        if self.passed:
            head = f"**{self.table}**: passes the output checks."
            return head + (f"\n\nFor the reviewer:\n\n{items}" if items else "")
        return f"**{self.table}**: fails the output checks\n\n{items}"


def check_table(
    name: str,
    table: pl.DataFrame,
    meta: dict[str, Any],
    rules: dict[str, Any],
    identifier_columns: set[str],
    contributions: pl.DataFrame | None = None,
    *,
    facts: DossierFacts | None = None,
) -> CheckResult:
    """Every rule, every finding (not just the first); the table passes without "fail" ones.

    facts: what is known of the dossier (its pseudonyms, quasi-identifier columns); by default
    the dossier of the kernel this runs in ($DOSSIER_CATALOG), else nothing.
    """
    rules = {**DEFAULT_RULES, **(rules or {})}
    facts = DossierFacts.from_environment() if facts is None else facts
    minimum = int(rules["min_count"])
    findings = _size_findings(table, rules)
    identifiers = set(identifier_columns) | facts.identifier_columns
    findings += _identifier_findings(table, identifiers, facts)
    declared = _Declared.of(table, meta)
    findings += declared.findings
    counts = _count_columns(table, declared)
    findings += _small_counts(counts, minimum)
    findings += _count_like_attributes(table, declared, minimum)
    if declared.magnitudes:
        findings += _dominance(table, declared.magnitudes, rules["dominance"], contributions)
    findings += _person_level(table, declared, bool(counts), facts, minimum)
    return CheckResult(name, not any(f.severity == FAIL for f in findings), findings)


# ---------------------------------------------------------------- size


def _size_findings(table: pl.DataFrame, rules: dict[str, Any]) -> list[Finding]:
    findings = []
    if table.height > rules["max_rows"]:
        findings.append(
            Finding(
                "max_rows", None, f"{table.height} rows, more than the {rules['max_rows']} allowed"
            )
        )
    size = table_bytes(table)
    if size > rules["max_bytes"]:
        findings.append(
            Finding("max_bytes", None, f"{size} bytes, more than the {rules['max_bytes']} allowed")
        )
    return findings


# ---------------------------------------------------------------- identifiers


def _identifier_findings(
    table: pl.DataFrame, identifier_columns: set[str], facts: DossierFacts
) -> list[Finding]:
    """Per column, the strongest of: named as an identifier, holding the dossier's pseudonyms
    (in any form, identifiers.py), shaped like pseudonyms, or looking like codes (review)."""
    lowered = {c.lower() for c in identifier_columns}
    named = [c for c in table.columns if c.lower() in lowered]
    findings = []
    try:
        matches = pseudonym_matches(table.drop(named), facts)
    except TooManyCandidates as exc:  # bounded work, whatever a kernel publishes
        matches = {}
        findings.append(
            Finding("identifiers", None, f"too many values to compare with pseudonyms: {exc}")
        )
    except Exception as exc:  # unreadable extracts must not pass the table unseen
        matches = {}
        findings.append(
            Finding(
                "identifiers",
                None,
                f"the values could not be compared with the dossier's pseudonyms "
                f"({type(exc).__name__})",
            )
        )
    for column in table.columns:
        if column in named:
            findings.append(
                Finding(
                    "identifiers",
                    column,
                    f"column '{column}' is named as an identifier of the dossier's data",
                    list(range(table.height)),
                )
            )
        elif column in matches:
            rows = matches[column]
            findings.append(
                Finding(
                    "identifiers",
                    column,
                    f"{len(rows)} value(s) of '{column}' are (part of) the dossier's own "
                    f"pseudonyms (rows {_rows(rows)})",
                    rows,
                )
            )
        else:
            findings += _pattern_findings(table, column)
    return findings


def _pattern_findings(table: pl.DataFrame, column: str) -> list[Finding]:
    """Without a match: values shaped like pseudonyms (fail), or like other row codes (review)."""
    text = _text(table[column])
    if text is None:
        return []
    values = pl.DataFrame({"v": text.str.strip_chars().str.to_lowercase()}).with_row_index("row")
    values = values.drop_nulls()
    if values.is_empty():
        return []
    shaped = values.filter(pl.col("v").str.contains(PSEUDONYM.pattern))
    if shaped.height >= 0.5 * values.height:
        rows = shaped["row"].to_list()
        return [
            Finding(
                "identifiers",
                column,
                f"'{column}' holds pseudonyms: {len(rows)} value(s) of 32 hex characters "
                f"(rows {_rows(rows)})",
                rows,
            )
        ]
    codes = values.filter(pl.col("v").str.contains(HEX_CODE))
    if (
        codes.height >= 2
        and codes.height >= 0.5 * values.height
        and codes["v"].str.contains("[a-f]").any()
        and codes["v"].n_unique() >= NEAR_UNIQUE * codes.height
    ):
        rows = codes["row"].to_list()
        return [
            Finding(
                "identifiers",
                column,
                f"'{column}' holds hex codes, nearly one per row, that are not the dossier's "
                f"pseudonyms (rows {_rows(rows)}): check that they identify no one",
                rows,
                REVIEW,
            )
        ]
    return []


# ---------------------------------------------------------------- declarations and counts


@dataclass
class _Declared:
    """The author's declaration (meta.json) against the table's columns."""

    counts: list[str]
    magnitudes: dict[str, str]
    attributes: list[str]
    findings: list[Finding]

    @classmethod
    def of(cls, table: pl.DataFrame, meta: dict[str, Any]) -> _Declared:
        counts = [str(c) for c in meta.get("counts", [])]
        magnitudes = {str(c): str(s) for c, s in (meta.get("magnitudes") or {}).items()}
        attributes = [str(c) for c in meta.get("attributes", [])]
        findings = []
        for column in sorted({*counts, *magnitudes, *attributes} - set(table.columns)):
            findings.append(
                Finding("declaration", column, f"'{column}' is declared but is not in the table")
            )
        present = set(table.columns)
        return cls(
            [c for c in counts if c in present],
            {c: s for c, s in magnitudes.items() if c in present},
            [c for c in attributes if c in present],
            findings,
        )

    def names(self) -> set[str]:
        return {*self.counts, *self.magnitudes, *self.attributes}


@dataclass
class _Count:
    column: str
    values: pl.Series  # Float64, null where the cell holds no number
    note: str


def _count_columns(table: pl.DataFrame, declared: _Declared) -> list[_Count]:
    """The columns checked as counts: declared ones (text read as numbers), undeclared numeric
    ones (publish() refuses them; a hand-written declaration may not), and undeclared text
    columns of whole numbers (a count stored as text escapes publish()'s declaration)."""
    counts = []
    for column in declared.counts:
        values = _numbers(table[column], DECIMAL)
        if values is not None:
            note = "" if table[column].dtype.is_numeric() else " (stored as text)"
            counts.append(_Count(column, values, note))
    for column in table.columns:
        if column in declared.names():
            continue
        series = table[column]
        if series.dtype.is_numeric():
            counts.append(_Count(column, series.cast(pl.Float64), " (not declared: a count)"))
        elif _mostly_whole_numbers(series):
            note = " (whole numbers stored as text, so checked as a count)"
            counts.append(_Count(column, _numbers(series, WHOLE), note))  # type: ignore[arg-type]
    return counts


def _small_counts(counts: list[_Count], minimum: int) -> list[Finding]:
    findings = []
    for count in counts:
        rows = _small_rows(count.values, minimum)
        if rows:
            findings.append(
                Finding(
                    "min_count",
                    count.column,
                    f"{len(rows)} cell(s) of '{count.column}'{count.note} below {minimum} "
                    f"(rows {_rows(rows)})",
                    rows,
                )
            )
    return findings


def _count_like_attributes(table: pl.DataFrame, declared: _Declared, minimum: int) -> list[Finding]:
    """Attributes of whole numbers that the count rule would refuse: shown, not blocking (an
    hour of day is an attribute; a disguised count looks the same)."""
    findings = []
    for column in declared.attributes:
        values = _numbers(table[column], WHOLE)
        if values is None or values.drop_nulls().is_empty():
            continue
        present = values.drop_nulls()
        if not (present == present.round(0)).all():
            continue
        rows = _small_rows(values, minimum)
        if rows:
            findings.append(
                Finding(
                    "count_like_attribute",
                    column,
                    f"'{column}' is declared an attribute; {len(rows)} cell(s) hold whole "
                    f"numbers from 1 to {minimum - 1}, which would fail the minimum count if "
                    f"they were counts (rows {_rows(rows)}): check that it is not a count",
                    rows,
                    REVIEW,
                )
            )
    return findings


def _numbers(series: pl.Series, pattern: str) -> pl.Series | None:
    """A column as Float64: numbers as they are, text that matches `pattern` read as a number
    (a decimal comma as a point), other text as null; None for other types."""
    if series.dtype.is_numeric():
        return series.cast(pl.Float64)
    text = _text(series)
    if text is None:
        return None
    stripped = text.str.strip_chars()
    is_number = stripped.str.contains(pattern).fill_null(False)
    numbers = stripped.str.replace(",", ".", literal=True).cast(pl.Float64, strict=False)
    return numbers.zip_with(is_number, pl.Series([None], dtype=pl.Float64)).alias(series.name)


def _mostly_whole_numbers(series: pl.Series) -> bool:
    text = _text(series)
    if text is None:
        return False
    values = text.str.strip_chars().drop_nulls()
    values = values.filter(values != "")
    return bool(values.len()) and values.str.contains(WHOLE).mean() >= TEXT_NUMBERS


def _small_rows(values: pl.Series, minimum: int) -> list[int]:
    frame = pl.DataFrame({"v": values}).with_row_index("row")
    return frame.filter((pl.col("v") > 0) & (pl.col("v") < minimum))["row"].to_list()


def _text(series: pl.Series) -> pl.Series | None:
    if series.dtype == pl.String:
        return series
    if isinstance(series.dtype, pl.Categorical | pl.Enum):
        return series.cast(pl.String)
    return None


# ---------------------------------------------------------------- dominance


def _dominance(
    table: pl.DataFrame,
    magnitudes: dict[str, str],
    rule: dict[str, Any],
    contributions: pl.DataFrame | None,
) -> list[Finding]:
    findings = []
    n, k = int(rule["n"]), float(rule["k"])
    for column, source in magnitudes.items():
        if contributions is None or source not in contributions.columns:
            findings.append(
                Finding(
                    "dominance",
                    column,
                    f"'{column}' is a magnitude without its largest contributions",
                )
            )
            continue
        top = contributions[source].list.head(n).list.sum()
        share = pl.DataFrame({"total": table[column], "top": top}).with_row_index("_row")
        bad = share.filter((pl.col("total") > 0) & (pl.col("top") / pl.col("total") > k))
        if bad.height:
            rows = bad["_row"].to_list()
            findings.append(
                Finding(
                    "dominance",
                    column,
                    f"{len(rows)} cell(s) of '{column}' "
                    f"where the {n} largest contributor(s) make up more than "
                    f"{k:.0%} (rows {_rows(rows)})",
                    rows,
                )
            )
    return findings


# ---------------------------------------------------------------- person-level tables


def _person_level(
    table: pl.DataFrame,
    declared: _Declared,
    has_counts: bool,
    facts: DossierFacts,
    minimum: int,
) -> list[Finding]:
    """A table with counts says how many people each row covers (the count rule checks them).
    Without counts, each row may be one person: combinations of quasi-identifiers must cover at
    least min_count rows (k-anonymity), and rows that look like records are refused."""
    if has_counts:
        return []
    quasi = {q.lower() for q in facts.quasi_identifiers}
    keys = [c for c in table.columns if c.lower() in quasi]
    if keys:
        return _k_anonymity(table, keys, minimum)
    # numeric attributes, and numbers stored as text declared as attributes
    values = [c for c in declared.attributes if _numbers(table[c], DECIMAL) is not None]
    single = [c for c in values if table[c].drop_nulls().len()]
    if table.height == 1 and single:
        return [
            Finding(
                "microdata",
                single[0],
                f"a single row with a value of '{single[0]}' and no count behind it: it may be "
                "one person's value; publish the number of people behind it as a count",
                [0],
            )
        ]
    return _records(table, values)


def _records(table: pl.DataFrame, values: list[str]) -> list[Finding]:
    """An aggregate has one row per group: its other columns tell its rows apart. Rows whose
    varying values (numeric attributes with a distinct value in at least half of the rows) repeat
    the same other columns, or that have no other column, are records: one row per person."""
    varying = [c for c in values if table[c].n_unique() >= VARYING * table.height]
    if not varying:
        return []
    rest = [c for c in table.columns if c not in varying]
    if rest:
        if table.height < RECORD_ROWS or not table.select(rest).is_duplicated().any():
            return []
        rows = table.with_row_index("_row").filter(table.select(rest).is_duplicated())
        why = f"the same {', '.join(rest)} come(s) back with different values"
    else:
        if table.height < MICRODATA_ROWS:
            return []
        rows = table.with_row_index("_row")
        why = "no other column tells the rows apart"
    shown = rows["_row"].to_list()
    return [
        Finding(
            "microdata",
            ", ".join(varying),
            f"{table.height} rows without any count, whose values of {', '.join(varying)} vary "
            f"from row to row while {why} (rows {_rows(shown)}): the rows look like records of "
            "single people; publish aggregates with the number of people behind each row as a "
            "count",
            shown,
        )
    ]


def _k_anonymity(table: pl.DataFrame, keys: list[str], minimum: int) -> list[Finding]:
    sizes = table.with_row_index("_row").with_columns(pl.len().over(keys).alias("_rows"))
    small = sizes.filter(pl.col("_rows") < minimum)
    if small.is_empty():
        return []
    rows = small["_row"].to_list()
    combinations = small.select(keys).unique().height
    return [
        Finding(
            "k_anonymity",
            ", ".join(keys),
            f"no count, and {combinations} combination(s) of the quasi-identifier(s) "
            f"{', '.join(keys)} cover fewer than {minimum} rows (rows {_rows(rows)}): each row "
            "may be one person; publish the number of people behind each row as a count",
            rows,
        )
    ]


# ---------------------------------------------------------------- helpers


def table_bytes(table: pl.DataFrame) -> int:
    buffer = io.BytesIO()
    table.write_parquet(buffer)
    return buffer.tell()


def _rows(rows: list[int]) -> str:
    shown = ", ".join(str(r) for r in rows[:10])
    return shown + (f" and {len(rows) - 10} more" if len(rows) > 10 else "")


def suppress_small(table: pl.DataFrame, counts: list[str], min_count: int) -> pl.DataFrame:
    """Blank (NULL) count cells between 1 and min_count - 1, so the table passes."""
    return table.with_columns(
        pl.when((pl.col(c) > 0) & (pl.col(c) < min_count)).then(None).otherwise(pl.col(c)).alias(c)
        for c in counts
    )


def round_counts(table: pl.DataFrame, counts: list[str], base: int = 5) -> pl.DataFrame:
    """Round counts to a multiple of `base` (small cells still need suppress_small)."""
    return table.with_columns(
        ((pl.col(c) / base).round() * base).cast(pl.Int64).alias(c) for c in counts
    )
