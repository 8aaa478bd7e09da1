"""Heuristics that warn about undeclared personal data."""

from __future__ import annotations

import numpy as np
import pytest

from dossierhub.data.personal_data import name_hint, passes_bsn_check, value_hint
from dossierhub.demo import bsn_numbers


def test_bsn_eleven_test() -> None:
    assert passes_bsn_check("123456782")
    assert passes_bsn_check("111222333")
    assert not passes_bsn_check("123456789")
    assert not passes_bsn_check("000000000")
    assert passes_bsn_check("12345672")  # 8 digits: a leading zero was lost


def test_demo_bsns_are_valid_and_unique() -> None:
    numbers = bsn_numbers(np.random.default_rng(1), 5000)
    assert len(set(numbers.tolist())) == 5000
    assert all(passes_bsn_check(str(n)) for n in numbers)


def test_random_nine_digit_numbers_are_not_flagged() -> None:
    rng = np.random.default_rng(2)
    values = rng.integers(100_000_000, 999_999_999, 2000)
    assert value_hint(values.tolist()) is None


@pytest.mark.parametrize(
    ("values", "label"),
    [
        (["a@b.nl", "jan@gemeente.amsterdam", None, "x@y.com"], "e-mail"),
        (["020-5551234", "0612345678", "+31 6 12345678"], "phone"),
        (["1012 AB 1", "1102CD 22-3", "1055 KL 7h"], "postcode"),
        ([123456782, 111222333, 999999990], "BSN"),
    ],
)
def test_values_that_look_personal(values: list, label: str) -> None:
    hint = value_hint(values)
    assert hint is not None and label in hint


@pytest.mark.parametrize(
    "name",
    [
        "bsn",
        "email",
        "e_mail",
        "telefoon",
        "achternaam",
        "home_address",
        "date_of_birth",
        "iban",
        "kenteken",
    ],
)
def test_names_that_look_personal(name: str) -> None:
    assert name_hint(name)


@pytest.mark.parametrize("name", ["district", "amount", "month", "count", "mode", "tellijn"])
def test_ordinary_names(name: str) -> None:
    assert name_hint(name) is None
