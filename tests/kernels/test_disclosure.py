"""The output-check rules on plain frames: every rule finds what it should, and only that."""

from __future__ import annotations

import os

import polars as pl

from dossier_kernel.disclosure import check_table, round_counts, suppress_small

RULES = {"min_count": 10, "dominance": {"n": 1, "k": 0.5}, "max_rows": 3, "max_bytes": 10_000}


def rules_found(table: pl.DataFrame, meta: dict, **kw: object) -> list[str]:
    return [f.rule for f in check_table("t", table, meta, RULES, set(), **kw).findings]


def test_a_safe_table_passes() -> None:
    table = pl.DataFrame({"area": ["a", "b"], "people": [0, 25]})
    assert rules_found(table, {"counts": ["people"]}) == []


def test_size_limits() -> None:
    rows = pl.DataFrame({"area": list("abcd")})
    assert rules_found(rows, {}) == ["max_rows"]
    wide = pl.DataFrame({"text": [os.urandom(20_000).hex()]})  # incompressible
    assert rules_found(wide, {}) == ["max_bytes"]


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
