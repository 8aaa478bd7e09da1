"""The row filter accepts plain conditions over the source's columns and nothing else."""

from __future__ import annotations

import pytest

from dossierhub.data.rowfilter import RowFilterError, normalize_filter

COLUMNS = ["birth_year", "district", "month", "amount", "Select"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("birth_year <= 2008", '"birth_year" <= 2008'),
        (
            "district IN ('Noord', 'Oost') AND amount > 10.5",
            "\"district\" IN ('Noord', 'Oost') AND \"amount\" > 10.5",
        ),
        ("year(month) = 2025 OR month IS NULL", 'YEAR("month") = 2025 OR "month" IS NULL'),
        ("lower(district) LIKE 'n%'", "LOWER(\"district\") LIKE 'n%'"),
        ("birth_year BETWEEN 1950 AND 1960", '"birth_year" BETWEEN 1950 AND 1960'),
        ("NOT (amount < 0)", 'NOT ("amount" < 0)'),
        ('"Select" = 1', '"Select" = 1'),
    ],
)
def test_plain_conditions_are_normalised(text: str, expected: str) -> None:
    assert normalize_filter(text, COLUMNS) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("birth_year IN (SELECT 1)", "subquery"),
        ("EXISTS (SELECT 1)", "subquery"),
        ("(SELECT max(amount) FROM x) > 1", "subquery"),
        ("amount > 1; SELECT 1", "several statements"),
        ("read_parquet('/etc/shadow') IS NULL", "read_parquet"),
        ("getenv('HOME') = ''", "getenv()"),
        ("amount > 1 /* hidden */", "comment"),
        ("amount > 1 -- hidden", "comment"),
        ("t.amount > 1", "table prefix"),
        ("salary > 1", "'salary'"),
        ("amount + 1", "not a condition"),
        ("", "empty"),
        ("amount >", "not valid SQL"),
        ("count(*) > 1", "not allowed"),
        ('"unterminated', "cannot be read as SQL"),
        ("amount = 'unterminated", "cannot be read as SQL"),
        ("amount > 1 /* unterminated", "cannot be read as SQL"),
        ("amount = $$unterminated", "cannot be read as SQL"),
        ("(" * 400 + "amount > 1" + ")" * 400, "nested too deeply"),
        ("NOT " * 2000 + "amount > 1", "nested too deeply"),
        ("CASE " * 2000, "nested too deeply"),
        ("lower(" * 500 + "district" + ")" * 500 + " = 'a'", "nested too deeply"),
    ],
)
def test_everything_else_is_refused(text: str, reason: str) -> None:
    with pytest.raises(RowFilterError) as caught:
        normalize_filter(text, COLUMNS)
    assert reason in str(caught.value)
    assert caught.value.fix
