"""The output-check rules on plain frames: every rule finds what it should, and only that.

Pseudonyms are compared with a real parquet file of pseudonyms (made as apply makes them) read by
a real DuckDB; the hub-side verdict on real demo extracts is tests/hub/test_checks.py.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

import polars as pl
import pytest

from dossier_kernel.disclosure import check_table, round_counts, suppress_small, text_findings
from dossier_kernel.identifiers import DossierFacts, candidate_pieces

RULES = {"min_count": 10, "dominance": {"n": 1, "k": 0.5}, "max_rows": 3, "max_bytes": 10_000}
LOOSE = {**RULES, "max_rows": 100_000, "max_bytes": 100_000_000}
NOTHING = DossierFacts()


def rules_found(table: pl.DataFrame, meta: dict, **kw: object) -> list[str]:
    kw.setdefault("facts", NOTHING)
    return [f.rule for f in check_table("t", table, meta, RULES, set(), **kw).findings]


def pseudonyms(count: int) -> list[str]:
    """As pseudonym.py makes them: the first 16 bytes of an HMAC-SHA256, as lowercase hex."""
    key = b"k" * 32
    return [
        hmac.new(key, str(i).encode(), hashlib.sha256).digest()[:16].hex() for i in range(count)
    ]


@pytest.fixture(scope="module")
def known(tmp_path_factory: pytest.TempPathFactory) -> DossierFacts:
    """A dossier whose extract holds 10,000 people's pseudonyms."""
    path = tmp_path_factory.mktemp("extract") / "people.parquet"
    pl.DataFrame({"bsn": pseudonyms(10_000)}).write_parquet(path)
    return DossierFacts(pseudonym_files=((path, "bsn"),))


def flagged(table: pl.DataFrame, facts: DossierFacts, meta: dict | None = None) -> dict:
    result = check_table("t", table, meta or {}, LOOSE, set(), facts=facts)
    return {(f.rule, f.column): (f.rows, f.severity) for f in result.findings}


def test_a_safe_table_passes() -> None:
    table = pl.DataFrame({"area": ["a", "b"], "people": [0, 25]})
    assert rules_found(table, {"counts": ["people"]}) == []


def test_size_limits() -> None:
    rows = pl.DataFrame({"area": list("abcd")})
    assert rules_found(rows, {}) == ["max_rows"]
    wide = pl.DataFrame({"text": [os.urandom(20_000).hex()]})  # incompressible
    assert "max_bytes" in rules_found(wide, {})


def test_the_default_row_limit_fits_aggregate_tables() -> None:
    table = pl.DataFrame({"cell": [f"c{i}" for i in range(1001)], "people": [20] * 1001})
    result = check_table("t", table, {"counts": ["people"]}, {}, set(), facts=NOTHING)
    assert [f.rule for f in result.findings] == ["max_rows"]
    assert "more than the 1000 allowed" in result.findings[0].message


def test_a_magnitude_without_its_contributions_fails() -> None:
    table = pl.DataFrame({"amount": [100.0]})
    assert rules_found(table, {"magnitudes": {"amount": "amount__top"}}) == ["dominance"]
    balanced = pl.DataFrame({"amount__top": [[30.0, 20.0]]})
    assert (
        rules_found(table, {"magnitudes": {"amount": "amount__top"}}, contributions=balanced) == []
    )


def test_helpers_make_small_cells_pass() -> None:
    table = pl.DataFrame({"people": [3, 12, 0]})
    suppressed = suppress_small(table, ["people"], 10)
    assert suppressed["people"].to_list() == [None, 12, 0]
    assert rules_found(suppressed, {"counts": ["people"]}) == []
    assert round_counts(pl.DataFrame({"people": [12, 13, 27]}), ["people"])["people"].to_list() == [
        10,
        15,
        25,
    ]


# ---------------------------------------------------------------- the dossier's own pseudonyms

P = pseudonyms(10_000)


def disguises() -> list[tuple[str, pl.Series]]:
    """Five of the dossier's pseudonyms (rows 0..4), each column hiding them another way."""
    five = P[:5]
    as_int128 = pl.Series([int(p, 16) for p in five], dtype=pl.UInt128)
    return [
        ("upper-cased", pl.Series([p.upper() for p in five])),
        ("a 20-character prefix", pl.Series([p[:20] for p in five])),
        ("a 12-character prefix", pl.Series([p[:12] for p in five])),
        ("a 12-character suffix", pl.Series([p[-12:] for p in five])),
        ("15 characters from the middle", pl.Series([p[9:24] for p in five])),
        ("inside other text", pl.Series([f"case {p[:16].upper()}/2025" for p in five])),
        (
            "in groups of 8 with separators",
            pl.Series([" - ".join(p[i : i + 8] for i in range(0, 32, 8)) for p in five]),
        ),
        ("Categorical", pl.Series(five, dtype=pl.Categorical)),
        ("Enum", pl.Series(five, dtype=pl.Enum(five))),
        ("a 15-digit prefix as Int64", pl.Series([int(p[:15], 16) for p in five])),
        ("the whole value as UInt128", as_int128),
        ("the whole value as a float", pl.Series([float(int(p, 16)) for p in five])),
        ("the whole value in decimal digits", pl.Series([str(int(p, 16)) for p in five])),
        ("bytes", pl.Series([bytes.fromhex(p) for p in five])),
        ("a list", pl.Series([[p, "x"] for p in five])),
    ]


@pytest.mark.parametrize(("form", "column"), disguises(), ids=[d[0] for d in disguises()])
def test_pseudonyms_are_recognised_in_any_form(
    known: DossierFacts, form: str, column: pl.Series
) -> None:
    table = pl.DataFrame({"who": column, "area": ["a", "b", "c", "d", "e"]})
    found = flagged(table, known, {"attributes": ["who"]} if column.dtype.is_numeric() else None)
    assert found[("identifiers", "who")] == ([0, 1, 2, 3, 4], "fail"), form
    assert not check_table("t", table, {}, LOOSE, set(), facts=known).passed


def test_one_pseudonym_diluted_among_other_values_is_found(known: DossierFacts) -> None:
    values = [f"area {i}" for i in range(40)]
    values[17] = P[123][:20]
    found = flagged(pl.DataFrame({"label": values}), known)
    assert found == {("identifiers", "label"): ([17], "fail")}


def test_values_that_are_not_the_dossiers_pseudonyms_are_not_matched(known: DossierFacts) -> None:
    other = [hashlib.sha256(str(i).encode()).hexdigest()[:20] for i in range(200)]
    table = pl.DataFrame(
        {
            "code": other,  # hex of other origins, 20 characters: shown as codes, not matched
            "amount_cents": [12_345_678_901_234 + i for i in range(200)],  # large numbers
            "day": ["20251006"] * 200,
        }
    )
    found = flagged(table, known, {"attributes": ["amount_cents"]})
    assert found[("identifiers", "code")][1] == "review"
    assert ("identifiers", "amount_cents") not in found


def test_short_fragments_are_beyond_comparison(known: DossierFacts) -> None:
    """Documented limit: 11 characters (44 bits) are not compared (docs/output-checks.md)."""
    table = pl.DataFrame({"who": [p[:11] for p in P[:5]], "n": [20] * 5})
    found = flagged(table, known, {"counts": ["n"]})
    assert found == {("identifiers", "who"): ([0, 1, 2, 3, 4], "review")}


def test_pseudonyms_are_read_only_when_a_value_could_hide_one(tmp_path: Path) -> None:
    missing = DossierFacts(pseudonym_files=((tmp_path / "gone.parquet", "bsn"),))
    aggregate = pl.DataFrame({"area": ["a", "b"], "people": [12, 30], "year": [2025, 2025]})
    assert candidate_pieces(aggregate).is_empty()
    assert flagged(aggregate, missing, {"counts": ["people"], "attributes": ["year"]}) == {}
    # with a candidate, extracts that cannot be read fail the table instead of passing it
    suspicious = aggregate.with_columns(code=pl.lit("3fa29b0c1d2e3f40"))
    result = check_table("t", suspicious, {"counts": ["people"]}, LOOSE, set(), facts=missing)
    assert not result.passed
    assert "could not be compared" in result.findings[0].message


def test_the_comparison_is_bounded_whatever_a_kernel_publishes(tmp_path: Path) -> None:
    missing = DossierFacts(pseudonym_files=((tmp_path / "never-read.parquet", "bsn"),))
    blob = pl.DataFrame({"blob": [os.urandom(1_100_000).hex()]})  # 2.2M hex pieces
    result = check_table("t", blob, {}, LOOSE, set(), facts=missing)
    assert not result.passed
    assert [(f.rule, f.severity) for f in result.findings] == [("identifiers", "fail")]
    assert "too many values to compare" in result.findings[0].message


def test_identifier_names_and_the_pseudonym_pattern_still_count() -> None:
    table = pl.DataFrame({"BSN": ["x", "y"], "hid": [hashlib.md5(b"1").hexdigest()] * 2})
    result = check_table("t", table, {}, LOOSE, {"bsn"}, facts=NOTHING)
    assert [(f.rule, f.column, f.severity) for f in result.findings] == [
        ("identifiers", "BSN", "fail"),
        ("identifiers", "hid", "fail"),
    ]


# ---------------------------------------------------------------- counts and attributes


def test_counts_stored_as_text_are_checked_as_counts() -> None:
    declared = pl.DataFrame({"area": ["a", "b", "c"], "people": ["3", "25", "<10"]})
    found = flagged(declared, NOTHING, {"counts": ["people"]})
    assert found == {("min_count", "people"): ([0], "fail")}
    undeclared = pl.DataFrame({"area": ["a", "b", "c"], "people": ["14", " 7", "40"]})
    found = flagged(undeclared, NOTHING)
    assert found == {("min_count", "people"): ([1], "fail")}
    categorical = undeclared.with_columns(pl.col("people").cast(pl.Categorical))
    assert flagged(categorical, NOTHING) == {("min_count", "people"): ([1], "fail")}


def test_text_codes_declared_as_attributes_are_only_shown() -> None:
    table = pl.DataFrame({"district_code": ["01", "02", "03"], "people": [20, 30, 40]})
    result = check_table(
        "t",
        table,
        {"counts": ["people"], "attributes": ["district_code"]},
        LOOSE,
        set(),
        facts=NOTHING,
    )
    assert result.passed
    assert [(f.rule, f.severity, f.rows) for f in result.findings] == [
        ("count_like_attribute", "review", [0, 1, 2])
    ]


def test_a_count_declared_as_an_attribute_is_shown_to_the_reviewer() -> None:
    table = pl.DataFrame({"area": ["a", "b"], "households": [3, 25], "people": [30, 40]})
    result = check_table(
        "t",
        table,
        {"counts": ["people"], "attributes": ["households"]},
        LOOSE,
        set(),
        facts=NOTHING,
    )
    assert result.passed  # review findings do not block
    (finding,) = result.findings
    assert (finding.rule, finding.column, finding.rows, finding.severity) == (
        "count_like_attribute",
        "households",
        [0],
        "review",
    )
    assert "for review" in result._repr_markdown_()


def test_attributes_that_are_not_whole_numbers_are_not_counts() -> None:
    table = pl.DataFrame({"area": ["a", "b"], "pct": [3.5, 40.25], "people": [30, 40]})
    assert flagged(table, NOTHING, {"counts": ["people"], "attributes": ["pct"]}) == {}


def test_a_hand_written_declaration_does_not_hide_a_numeric_column() -> None:
    table = pl.DataFrame({"area": ["a", "b"], "people": [4, 40]})
    assert flagged(table, NOTHING, {}) == {("min_count", "people"): ([0], "fail")}
    assert flagged(table, NOTHING, {"counts": ["people", "ghost"]}) == {
        ("declaration", "ghost"): ([], "fail"),
        ("min_count", "people"): ([0], "fail"),
    }


# ---------------------------------------------------------------- person-level tables


def test_one_persons_value_in_a_single_row_fails() -> None:
    table = pl.DataFrame({"income": [45_230]})
    assert flagged(table, NOTHING, {"attributes": ["income"]}) == {
        ("microdata", "income"): ([0], "fail")
    }
    counted = table.with_columns(households=pl.lit(400))
    assert flagged(counted, NOTHING, {"attributes": ["income"], "counts": ["households"]}) == {}


def test_records_declared_as_attributes_fail() -> None:
    districts = ["Noord", "Zuid", "West"]
    records = pl.DataFrame(
        {
            "district": [districts[i % 3] for i in range(300)],
            "income": [20_000 + 37 * i for i in range(300)],
        }
    )
    found = flagged(records, NOTHING, {"attributes": ["income"]})
    assert found[("microdata", "income")] == (list(range(300)), "fail")
    only_numbers = records.select("income")
    assert ("microdata", "income") in flagged(only_numbers, NOTHING, {"attributes": ["income"]})


def test_attributes_need_a_count_in_their_table() -> None:
    """A mean per area without the number of people behind it may be one person's value:
    fractional attributes fail, whole-number ones (an hour) are shown for review; with a count
    in the same table the rows are groups whose size the count rule checks."""
    means = pl.DataFrame(
        {
            "area": [f"area {i}" for i in range(400)],
            "mean_income": [30_000.5 + i for i in range(400)],
        }
    )
    assert flagged(means, NOTHING, {"attributes": ["mean_income"]}) == {
        ("unknown_group_size", "mean_income"): (list(range(400)), "fail")
    }
    counted = means.with_columns(households=pl.lit(25))
    meta = {"counts": ["households"], "attributes": ["mean_income"]}
    assert flagged(counted, NOTHING, meta) == {}
    hours = pl.DataFrame(
        {"hour": list(range(24)), "mean_speed": [14.0 + i / 10 for i in range(24)]}
    )
    assert flagged(hours, NOTHING, {"attributes": ["hour", "mean_speed"]}) == {
        ("count_like_attribute", "hour"): (list(range(1, 10)), "review"),
        ("unknown_group_size", "hour"): (list(range(24)), "review"),
        ("unknown_group_size", "mean_speed"): (list(range(24)), "fail"),
    }


def test_quasi_identifier_combinations_need_the_minimum_count() -> None:
    facts = DossierFacts(quasi_identifiers=frozenset({"birth_year", "postcode"}))
    people = pl.DataFrame(
        {
            "Birth_Year": [1970] * 12 + [1971] * 3,
            "postcode": [1011] * 12 + [1012] * 3,
            "district": ["Centrum"] * 15,
        }
    )
    found = flagged(people, facts, {"attributes": ["Birth_Year", "postcode"]})
    assert found[("k_anonymity", "Birth_Year, postcode")] == ([12, 13, 14], "fail")
    counted = pl.DataFrame({"birth_year": [1970, 1971], "residents": [120, 3]})
    assert flagged(counted, facts, {"attributes": ["birth_year"], "counts": ["residents"]}) == {
        ("min_count", "residents"): ([1], "fail")
    }


# ---------------------------------------------------------------- red-team follow-ups


def test_pseudonyms_in_names_and_captions_fail_and_numbers_are_for_review(
    known: DossierFacts,
) -> None:
    """What a viewer reads besides the cells: the table's name, column names, title and
    descriptions. A pseudonym there (in any form) fails; a number that is not a date, time or
    year is shown for review; the messages never repeat the text."""
    person = pseudonyms(10_000)[42]
    table = pl.DataFrame({"area": ["a", "b"], "people": [20, 30]})
    meta = {"counts": ["people"]}

    def captions(name: str, table: pl.DataFrame, meta: dict) -> list[tuple[str, str]]:
        result = check_table(name, table, meta, LOOSE, set(), facts=known)
        assert all(person[:12] not in f.message.lower() for f in result.findings)
        return [(f.message.split(" holds")[0], f.severity) for f in result.findings]

    assert captions("t", table, meta) == []
    assert captions("h" + person[:20], table, meta) == [("the table's name", "fail")]
    renamed = table.rename({"people": person.upper()})
    assert captions("t", renamed, {"counts": [person.upper()]}) == [
        ("the name of column 2", "fail")
    ]
    described = {**meta, "descriptions": {"people": f"see {person[4:24]}"}}
    assert captions("t", table, described) == [("description 1 (of a column)", "fail")]
    titled = {**meta, "title": "People (one of them earns 227,440)"}
    assert captions("t", table, titled) == [("the title", "review")]
    dated = {**meta, "title": "Passages (2025-10-06 to 2025-11-02, 07:00, in 2025, top 5)"}
    assert captions("t", table, dated) == []


def test_text_findings_for_chart_texts(known: DossierFacts) -> None:
    person = pseudonyms(10_000)[7]
    texts = {"the title of chart 1": "Reach", "the y label of chart 1": f"% of {person[:16]}"}
    found = text_findings(texts, known)
    assert [(f.rule, f.severity) for f in found] == [("captions", "fail")]
    assert found[0].message.startswith("the y label of chart 1 holds")
    assert text_findings({}, known) == []


@pytest.mark.parametrize("unit", ["ns", "us", "ms"])
def test_pseudonyms_stored_as_dates_and_durations_are_found(known: DossierFacts, unit: str) -> None:
    """Temporal types are integers shown as dates: 15 hex digits of a pseudonym fit in one."""
    codes = pl.Series([int(p[:15], 16) for p in pseudonyms(10_000)[:30]], dtype=pl.Int64)
    as_time = pl.DataFrame(
        {
            "when": codes.cast(pl.Datetime(unit)),
            "how_long": codes.cast(pl.Duration(unit)),
            "day": pl.Series([20_000 + i for i in range(30)], dtype=pl.Int32).cast(pl.Date),
        }
    )
    found = flagged(as_time, known)
    assert found[("identifiers", "when")] == (list(range(30)), "fail")
    assert found[("identifiers", "how_long")] == (list(range(30)), "fail")
    assert ("identifiers", "day") not in found  # ordinary dates are no one's pseudonym


@pytest.mark.parametrize(
    "cells",
    [
        pl.Series([{"n": 12, "parts": [12, 40]}, {"n": 40, "parts": [40, 3]}]),  # struct, list
        pl.Series([[12.0], [3.0]], dtype=pl.Array(pl.Float64, 1)),
        pl.Series(["12 households", "3 huishoudens"]),
        pl.Series(["12", "3.0"]),
        pl.Series(["<10", "<10", "12", "7", "40"]),  # the marker hides 1-9, 7 is shown
    ],
)
def test_small_counts_inside_nested_cells_and_text_fail(cells: pl.Series) -> None:
    table = pl.DataFrame({"area": [f"a{i}" for i in range(cells.len())], "households": cells})
    found = flagged(table, NOTHING)
    rows, severity = found[("min_count", "households")]
    assert severity == "fail" and rows == [1 if cells.len() == 2 else 3]
    declared = flagged(table, NOTHING, {"counts": ["households"]})
    assert declared[("min_count", "households")] == (rows, "fail")


def test_text_that_is_not_a_count_is_not_checked_as_one() -> None:
    """Hours, dates, codes and percentages written as text are categories or measures."""
    table = pl.DataFrame(
        {
            "hour": ["07:00", "08:00", "09:00"],
            "day": ["2025-10-06", "2025-10-07", "2025-10-08"],
            "share": ["5%", "7%", "9%"],
            "zone": ["Zone 3", "Zone 4", "Zone 5"],
        }
    )
    assert flagged(table, NOTHING) == {}


def test_too_many_nested_values_fail_without_being_read() -> None:
    table = pl.DataFrame({"households": [list(range(600_000)), list(range(600_000))]})
    found = flagged(table, NOTHING)
    assert ("min_count", None) in found


def test_dominance_claims_are_checked_against_the_cells() -> None:
    """Contributions are sorted by the check, must not exceed the cell, must be there for
    every shown cell, and a cell they make up entirely needs min_count of them."""
    table = pl.DataFrame(
        {"area": list("abcde"), "households": [20] * 5, "amount": [100.0, 3.0, 50.0, 80.0, 0.0]}
    )
    largest = [
        [10.0, 10.0, 80.0],  # unsorted: 80% from one
        [1.0, 1.0, 1.0],  # a count of 3 as a magnitude
        [40.0, 40.0],  # more than the cell
        None,  # no contributions for a shown cell
        [],  # nothing to list for a cell of 0
    ]
    meta = {"counts": ["households"], "magnitudes": {"amount": "amount__top"}}
    contributions = pl.DataFrame(
        {"amount__top": largest}, schema={"amount__top": pl.List(pl.Float64)}
    )
    result = check_table("t", table, meta, LOOSE, set(), contributions, facts=NOTHING)
    found = sorted((f.rows, f.message.split(" (rows")[0]) for f in result.findings)
    assert found == [
        (
            [0, 1, 2],
            "3 cell(s) of the magnitude 'amount' are made up entirely of fewer than 10 "
            "listed contributions",
        ),
        (
            [0, 2],
            "2 cell(s) of 'amount' where the 1 largest contributor(s) make up more than 50%",
        ),
        ([2], "1 cell(s) of the magnitude 'amount' are less than their listed contributions"),
        ([3], "1 cell(s) of the magnitude 'amount' have no contributions listed"),
    ]
    honest = pl.DataFrame({"amount__top": [[9.0] * 5] * 5})
    spread = table.with_columns(amount=pl.lit(200.0))
    assert check_table("t", spread, meta, LOOSE, set(), honest, facts=NOTHING).findings == []


def test_person_level_rows_fail_even_with_a_count_joined_on() -> None:
    """A group's count on each person's row does not make the rows groups: when the columns
    that say what a row is repeat, k-anonymity and the records rule apply as without counts."""
    facts = DossierFacts(quasi_identifiers=frozenset({"size"}))
    people = pl.DataFrame(
        {
            "area": [f"area {i % 4}" for i in range(200)],
            "size": [1 + i % 3 if i < 195 else 7 for i in range(200)],
            "income": [20_000 + 37 * i for i in range(200)],
            "households_in_area": [50] * 200,
        }
    )
    meta = {"counts": ["households_in_area"], "attributes": ["size", "income"]}
    found = flagged(people, facts, meta)
    assert found[("k_anonymity", "size")] == (list(range(195, 200)), "fail")
    without_quasi = flagged(people, NOTHING, meta)
    assert without_quasi[("microdata", "income")][1] == "fail"
    # an aggregate with one row per group keeps passing
    groups = people.group_by("area", "size").agg(
        pl.col("income").mean(), pl.len().alias("households_in_area").cast(pl.Int64) + 10
    )
    assert set(flagged(groups, facts, meta)) == {("count_like_attribute", "size")}  # review
