"""Output checks for published tables: the rules of a dossier's `disclosure`
(docs/reference.md), and what they catch and miss (docs/output-checks.md).

Used twice: by `publish()` in a notebook (so authors see the verdict early) and by the hub on
the run's copies (dossierhub.reports.checks, the verdict that
counts). The author's declaration (which
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
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Final, Literal

import polars as pl

from .identifiers import DossierFacts, TooManyCandidates, pseudonym_matches
from .provenance import DEFAULT_RULES, disclosure_rules

__all__ = ["DEFAULT_RULES", "disclosure_rules"]  # the rules' defaults live with the contract

PSEUDONYM = re.compile(r"^[0-9a-f]{32}$")
PSEUDONYM_IN_TEXT = r"[0-9a-f]{32}"
HEX_CODE = r"^[0-9a-f]{8,}$"
DECIMAL = r"^[+-]?[0-9]+([.,][0-9]+)?$"
WHOLE = r"^[+-]?[0-9]+$"
VARYING = 0.5
"""A numeric attribute with a distinct value in at least this share of rows varies per row."""
RECORD_ROWS = 10
"""From this many rows, a table without counts whose other columns repeat is records."""
MICRODATA_ROWS = 100
"""From this many rows, a table without counts made only of varying numbers is records."""
NEAR_UNIQUE = 0.9
"""Share of distinct values above which hex codes look like one code per row."""
TEXT_NUMBERS = 0.9
"""Share of count-like cells (COUNT_TEXT or MARKER) above which an undeclared text column is
checked as a count."""
COUNT_TEXT = r"^[+-]?[0-9]+(?:[.,]0+)?(?:\s*\p{L}+(?:\s+\p{L}+)*)?$"
"""A whole number, perhaps written as a decimal ("3.0") or followed by a unit ("3 households")."""
MARKER = r"^(?:(?:<|<=|\u2264)\s*[0-9]+|[*x\u00d7\u2013.-])$"
"""What tables print for a suppressed cell ("<5", "*", "x", "-"; also \u2264, \u00d7, \u2013)."""
LEADING_NUMBER = r"^([+-]?[0-9]+)"
MAX_NESTED = 1_000_000
"""More values inside nested (list, struct) cells than this are not read: the table fails."""
ROUNDING = 0.01
"""Share of a magnitude cell by which its listed contributions may exceed it (rounded cells)."""
CAPTION_NUMBER = r"[0-9][0-9.,]*[0-9]"
DATE_OR_TIME = r"[0-9]{4}-[0-9]{2}-[0-9]{2}|[0-9]{1,2}:[0-9]{2}(?::[0-9]{2})?"
YEAR = r"^(?:19|20)[0-9]{2}$"

FAIL: Final = "fail"
REVIEW: Final = "review"
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
    rules: Mapping[str, Any] | None,
    identifier_columns: set[str],
    contributions: pl.DataFrame | None = None,
    *,
    facts: DossierFacts | None = None,
) -> CheckResult:
    """Every rule, every finding (not just the first); the table passes without "fail" ones.

    facts: what is known of the dossier (its pseudonyms, quasi-identifier columns); by default
    the dossier of the kernel this runs in ($DOSSIER_CATALOG), else nothing.
    """
    rules = disclosure_rules(rules)
    facts = DossierFacts.from_environment() if facts is None else facts
    minimum = int(rules["min_count"])
    findings = _size_findings(table, rules)
    identifiers = set(identifier_columns) | facts.identifier_columns
    findings += _identifier_findings(table, identifiers, facts)
    findings += text_findings(table_texts(name, table, meta), facts)
    declared = _Declared.of(table, meta)
    findings += declared.findings
    try:
        counts = _count_columns(table, declared)
    except TooManyCandidates as exc:  # bounded work: nested cells too large to read
        counts = []
        findings.append(Finding("min_count", None, f"the counts could not be checked: {exc}"))
    findings += _small_counts(counts, minimum)
    findings += _count_like_attributes(table, declared, minimum)
    if declared.magnitudes:
        findings += _dominance(table, declared.magnitudes, rules["dominance"], contributions)
        findings += _dominance_claims(table, declared.magnitudes, contributions, minimum)
    findings += _person_level(table, declared, bool(counts), facts, minimum)
    return CheckResult(name, not any(f.severity == FAIL for f in findings), findings)


# ---------------------------------------------------------------- captions and names


def table_texts(name: str, table: pl.DataFrame, meta: dict[str, Any]) -> dict[str, str]:
    """What a viewer reads of a table besides its cells: its name (in the CSV's address), its
    column names, its title and its column descriptions; {where: text}. Column names are
    placed by position: a name may itself be what must not be shown."""
    texts = {"the table's name": name}
    texts.update({f"the name of column {i + 1}": c for i, c in enumerate(table.columns)})
    if isinstance(meta.get("title"), str):
        texts["the title"] = meta["title"]
    descriptions = meta.get("descriptions")
    if isinstance(descriptions, dict):
        for i, text in enumerate(descriptions.values()):
            if isinstance(text, str):
                texts[f"description {i + 1} (of a column)"] = text
    return texts


def text_findings(texts: dict[str, str], facts: DossierFacts) -> list[Finding]:
    """Findings on captions and names ({where: text}, e.g. table_texts or a chart's title and
    axis labels): a pseudonym of the dossier (in any form identifiers.py knows) or of its
    shape fails; a number that is not a date, time or year is shown for review (it may be one
    person's value). Messages say where, never the text."""
    if not texts:
        return []
    places = list(texts)
    frame = pl.DataFrame({"text": [texts[p] for p in places]}, schema={"text": pl.String})
    findings = []
    try:
        matched = set(pseudonym_matches(frame, facts).get("text", []))
    except TooManyCandidates as exc:
        matched = set()
        findings.append(Finding("captions", None, f"the captions could not be compared: {exc}"))
    shaped = frame["text"].str.to_lowercase().str.contains(PSEUDONYM_IN_TEXT)
    undated = frame["text"].str.replace_all(DATE_OR_TIME, " ")
    numbers = undated.str.extract_all(CAPTION_NUMBER).to_list()
    for row, place in enumerate(places):
        if row in matched or shaped[row]:
            findings.append(
                Finding(
                    "captions",
                    None,
                    f"{place} holds (part of) one of the dossier's pseudonyms, or a value "
                    "shaped like one: names and captions are shown to every viewer",
                )
            )
        elif any(_counts_as_caption_number(n) for n in numbers[row] or []):
            findings.append(
                Finding(
                    "captions",
                    None,
                    f"{place} holds a number: check that it is not one person's value",
                    severity=REVIEW,
                )
            )
    return findings


def _counts_as_caption_number(text: str) -> bool:
    """Numbers of three digits or more, except years: "Top 5" is no one's income."""
    digits = re.sub(r"[^0-9]", "", text)
    return len(digits) >= 3 and not re.match(YEAR, text)


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
    cells: pl.DataFrame  # (row, v): v as Float64, a row per number (nested cells hold several)
    note: str


def _count_columns(table: pl.DataFrame, declared: _Declared) -> list[_Count]:
    """The columns checked as counts: declared ones (text and nested cells read as numbers),
    undeclared numeric ones (publish() refuses them; a hand-written declaration may not),
    undeclared nested ones (every number inside is a count: [3] is 3) and undeclared text
    columns of count-like cells ("3", "3.0", "3 households", with "<5"-style markers)."""
    counts = []
    for column in declared.counts:
        cells = _cells(table[column])
        if cells is not None:
            kind = table[column].dtype
            note = "" if kind.is_numeric() else f" (stored as {_kind(kind)})"
            counts.append(_Count(column, cells, note))
    for column in table.columns:
        if column in declared.names():
            continue
        series = table[column]
        if series.dtype.is_numeric():
            note = " (not declared: a count)"
            counts.append(_Count(column, _flat(series.cast(pl.Float64)), note))
        elif series.dtype.is_nested():
            note = " (numbers inside nested cells, so checked as counts)"
            counts.append(_Count(column, _nested(series), note))
        elif _count_like_text(series) and (read := _count_text(series)) is not None:
            note = " (count-like text, so checked as a count)"
            counts.append(_Count(column, _flat(read), note))
    return counts


def _small_counts(counts: list[_Count], minimum: int) -> list[Finding]:
    findings = []
    for count in counts:
        rows = _small_rows(count.cells, minimum)
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


def _cells(series: pl.Series) -> pl.DataFrame | None:
    """(row, v) of the numbers a declared count holds, or None when it holds none."""
    if series.dtype.is_nested():
        return _nested(series)
    values = _count_text(series) if _text(series) is not None else _numbers(series, DECIMAL)
    return None if values is None else _flat(values)


def _flat(values: pl.Series) -> pl.DataFrame:
    return pl.DataFrame({"v": values.cast(pl.Float64)}).with_row_index("row")


def _nested(series: pl.Series) -> pl.DataFrame:
    """(row, v) for every number or count-like text inside lists, arrays and structs, at
    most MAX_NESTED values (TooManyCandidates beyond)."""
    pending = [pl.DataFrame({"v": series}).with_row_index("row")]
    found, read = [], 0
    while pending:
        frame = pending.pop()
        read += frame.height
        if read > MAX_NESTED:
            raise TooManyCandidates(f"more than {MAX_NESTED:,} values inside nested cells")
        dtype = frame.schema["v"]
        if isinstance(dtype, pl.Array):
            frame = frame.with_columns(pl.col("v").arr.to_list())
            dtype = frame.schema["v"]
        if isinstance(dtype, pl.List):
            if int(frame["v"].list.len().sum() or 0) + read > MAX_NESTED:
                raise TooManyCandidates(f"more than {MAX_NESTED:,} values inside nested cells")
            pending.append(frame.explode("v"))
        elif isinstance(dtype, pl.Struct):
            pending += [
                frame.select("row", pl.col("v").struct.field(f.name).alias("v"))
                for f in dtype.fields
            ]
        else:
            values = _count_text(frame["v"]) if _text(frame["v"]) is not None else None
            values = _numbers(frame["v"], DECIMAL) if values is None else values
            if values is not None:
                found.append(frame.select("row", v=values.cast(pl.Float64)))
    schema = {"row": pl.UInt32, "v": pl.Float64}
    return pl.concat(found) if found else pl.DataFrame(schema=schema)


def _count_text(series: pl.Series) -> pl.Series | None:
    """Text read as counts: a decimal as it is, a count-like cell as its leading number (the
    "3" of "3 households" or "3.0"), anything else (markers, words) as null."""
    text = _text(series)
    if text is None:
        return None
    stripped = text.str.strip_chars()
    decimal = _read_numbers(text, DECIMAL)
    leading = stripped.str.extract(LEADING_NUMBER, 1).cast(pl.Float64, strict=False)
    count_like = stripped.str.contains(COUNT_TEXT).fill_null(False)
    fallback = leading.zip_with(count_like, pl.Series([None], dtype=pl.Float64))
    return decimal.fill_null(fallback).alias(series.name)


def _kind(dtype: pl.DataType) -> str:
    return "nested values" if dtype.is_nested() else "text"


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
        rows = _small_rows(_flat(values), minimum)
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
    return _read_numbers(text, pattern).alias(series.name)


def _read_numbers(text: pl.Series, pattern: str) -> pl.Series:
    """Text that matches `pattern` as a number (a decimal comma as a point), the rest null."""
    stripped = text.str.strip_chars()
    is_number = stripped.str.contains(pattern).fill_null(False)
    numbers = stripped.str.replace(",", ".", literal=True).cast(pl.Float64, strict=False)
    return numbers.zip_with(is_number, pl.Series([None], dtype=pl.Float64))


def _count_like_text(series: pl.Series) -> bool:
    """Text whose non-empty cells are nearly all counts or suppression markers, some counts."""
    text = _text(series)
    if text is None:
        return False
    values = text.str.strip_chars().drop_nulls()
    values = values.filter(values != "")
    if not values.len():
        return False
    counts = values.str.contains(COUNT_TEXT)
    markers = values.str.contains(MARKER)
    share = (counts | markers).mean()  # a float: the values are not empty
    return bool(counts.any()) and isinstance(share, float) and share >= TEXT_NUMBERS


def _small_rows(cells: pl.DataFrame, minimum: int) -> list[int]:
    small = cells.filter((pl.col("v") > 0) & (pl.col("v") < minimum))
    return small["row"].unique().sort().to_list()


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
    """The (n, k) rule on the n largest contributions, sorted here: the order the author
    listed them in is not trusted."""
    findings = []
    n, k = int(rule["n"]), float(rule["k"])
    for column, source in magnitudes.items():
        listed = _contributions(contributions, source, table.height)
        if listed is None:
            findings.append(
                Finding(
                    "dominance",
                    column,
                    f"'{column}' is a magnitude without its largest contributions (a list of "
                    "numbers per row)",
                )
            )
            continue
        top = listed.list.sort(descending=True, nulls_last=True).list.head(n).list.sum()
        share = pl.DataFrame({"total": _magnitude(table, column), "top": top})
        share = share.with_row_index("_row")
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


def _dominance_claims(
    table: pl.DataFrame,
    magnitudes: dict[str, str],
    contributions: pl.DataFrame | None,
    minimum: int,
) -> list[Finding]:
    """What the contributions claim, checked against the cells: they are part of the cell
    (their sum is at most the cell, within ROUNDING), every shown cell has them, and a cell
    they add up to entirely has at least `minimum` contributors (3 as [1, 1, 1] is a count)."""
    findings = []
    for column, source in magnitudes.items():
        listed = _contributions(contributions, source, table.height)
        if listed is None:
            continue  # _dominance fails it
        cells = pl.DataFrame(
            {
                "total": _magnitude(table, column),
                "sum": listed.list.sum(),
                "given": listed.list.len().fill_null(0),
                "positive": listed.list.eval(pl.element() > 0).list.sum().fill_null(0),
            }
        ).with_row_index("_row")
        slack = pl.max_horizontal(pl.col("total").abs() * ROUNDING, pl.lit(1.0))
        shown = pl.col("total").is_not_null() & (pl.col("total") != 0)
        checks = [
            (shown & (pl.col("given") == 0), "have no contributions listed"),
            (pl.col("sum") > pl.col("total") + slack, "are less than their listed contributions"),
            (
                shown & (pl.col("sum") >= pl.col("total") - slack) & (pl.col("positive") < minimum),
                f"are made up entirely of fewer than {minimum} listed contributions",
            ),
        ]
        for condition, what in checks:
            rows = cells.filter(condition.fill_null(False))["_row"].to_list()
            if rows:
                findings.append(
                    Finding(
                        "dominance",
                        column,
                        f"{len(rows)} cell(s) of the magnitude '{column}' {what} "
                        f"(rows {_rows(rows)})",
                        rows,
                    )
                )
    return findings


def _contributions(contributions: pl.DataFrame | None, source: str, rows: int) -> pl.Series | None:
    """The contributions of a magnitude as lists of Float64 (one per row), else None."""
    if contributions is None or source not in contributions.columns:
        return None
    if contributions.height != rows:
        return None
    listed = contributions[source]
    if isinstance(listed.dtype, pl.Array):
        listed = listed.arr.to_list()
    if not isinstance(listed.dtype, pl.List) or not listed.dtype.inner.is_numeric():
        return None
    return listed.cast(pl.List(pl.Float64))


def _magnitude(table: pl.DataFrame, column: str) -> pl.Series:
    values = _numbers(table[column], DECIMAL)
    return values if values is not None else pl.Series(column, [None] * table.height, pl.Float64)


# ---------------------------------------------------------------- person-level tables


def _person_level(
    table: pl.DataFrame,
    declared: _Declared,
    has_counts: bool,
    facts: DossierFacts,
    minimum: int,
) -> list[Finding]:
    """Rows of single people, whether or not the table has counts (a group's count joined on
    to each person's row says nothing of the row): combinations of quasi-identifiers must
    cover at least min_count rows (k-anonymity) when the table is not one row per group,
    and rows that look like records are refused. Without counts, numeric attributes describe
    groups of unknown size (_unknown_groups)."""
    quasi = {q.lower() for q in facts.quasi_identifiers}
    keys = [c for c in table.columns if c.lower() in quasi]
    # numeric attributes, and numbers stored as text declared as attributes
    values = [c for c in declared.attributes if _numbers(table[c], DECIMAL) is not None]
    single = [c for c in values if table[c].drop_nulls().len()]
    if not has_counts and table.height == 1 and single:
        return [
            Finding(
                "microdata",
                single[0],
                f"a single row with a value of '{single[0]}' and no count behind it: it may be "
                "one person's value; publish the number of people behind it as a count",
                [0],
            )
        ]
    if has_counts and _one_row_per_group(table, declared, keys):
        return []
    findings = [] if has_counts else _unknown_groups(table, single)
    if keys:
        return findings + _k_anonymity(table, keys, minimum)
    return findings + _records(table, values)


def _one_row_per_group(table: pl.DataFrame, declared: _Declared, keys: list[str]) -> bool:
    """Whether the columns that say what a row stands for (all but counts, magnitudes and
    numeric attributes; quasi-identifiers always) tell the rows apart, as in an aggregate.
    A table made only of measures is not known to be one."""
    measures = {*declared.counts, *declared.magnitudes}
    measures |= {c for c in declared.attributes if table[c].dtype.is_numeric()}
    what = [c for c in table.columns if c in keys or c not in measures]
    if not what:
        return table.height < RECORD_ROWS
    return table.height < RECORD_ROWS or not table.select(what).is_duplicated().any()


def _unknown_groups(table: pl.DataFrame, attributes: list[str]) -> list[Finding]:
    """Numeric attributes without any count: a mean or a rate is one person's value when its
    group is one person, and nothing in the table says it is not. Fractional types fail;
    integer ones (a year, an hour, or a median in whole euros) are shown for review."""
    findings = []
    for column in attributes:
        integer = table[column].dtype.is_integer()
        findings.append(
            Finding(
                "unknown_group_size",
                column,
                f"'{column}' is a numeric attribute in a table without any count: the groups "
                "it describes may be one person; publish the number of people behind each "
                "row as a count in the same table"
                + (" (whole numbers: fine if it is a category such as a year)" if integer else ""),
                list(range(table.height)),
                REVIEW if integer else FAIL,
            )
        )
    return findings


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
