"""Spotting personal data that a steward forgot to declare, by column name and by values.

This only warns: a false alarm costs a look, a miss is where a leak would start.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_NAME_HINTS = re.compile(
    r"(^|_)(bsn|sofi|burgerservicenummer|e?_?mail|email|emailadres|phone|telefoon|telephone|"
    r"tel|mobile|mobiel|gsm|name|naam|voornaam|achternaam|surname|firstname|lastname|"
    r"address|adres|straat|street|huisnummer|housenumber|house_number|postcode_huisnummer|"
    r"iban|passport|paspoort|birthdate|birth_date|date_of_birth|dob|geboortedatum|"
    r"kenteken|license_plate|licenseplate|ip|ip_address|ipadres)($|_)",
    re.IGNORECASE,
)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
_PHONE = re.compile(r"^(\+31|0031|0)[\s-]?[1-9](?:[\s-]?\d){8}$|^\+[1-9]\d{7,14}$")
_POSTCODE_HOUSE = re.compile(r"^[1-9]\d{3}\s?[A-Za-z]{2}[\s,]+\d+\s?[A-Za-z0-9-]{0,6}$")
_NINE_DIGITS = re.compile(r"^\d{8,9}$")

THRESHOLD = 0.5
"""Share of sampled non-null values that must match before a column is flagged."""


def passes_bsn_check(text: str) -> bool:
    """The BSN eleven-test: 9 digits, weights 9..2 and -1, sum divisible by 11, not all zero."""
    digits = text.zfill(9)
    if len(digits) != 9 or not digits.isdigit() or int(digits) == 0:
        return False
    total = sum(int(d) * w for d, w in zip(digits[:8], range(9, 1, -1), strict=True))
    return (total - int(digits[8])) % 11 == 0


def name_hint(column: str) -> str | None:
    match = _NAME_HINTS.search(column)
    return match.group(2).lower() if match else None


def value_hint(values: Iterable[object]) -> str | None:
    """What the sampled values look like, if most of them look like one kind of personal data."""
    texts = [str(v).strip() for v in values if v is not None and str(v).strip()]
    if not texts:
        return None
    total = len(texts)
    checks = (
        (
            "citizen service numbers (BSN: 9 digits passing the eleven-test)",
            lambda t: bool(_NINE_DIGITS.match(t)) and passes_bsn_check(t),
        ),
        ("e-mail addresses", lambda t: bool(_EMAIL.match(t))),
        ("phone numbers", lambda t: bool(_PHONE.match(t))),
        ("postcode + house number addresses", lambda t: bool(_POSTCODE_HOUSE.match(t))),
    )
    for label, check in checks:
        if sum(1 for t in texts if check(t)) / total >= THRESHOLD:
            return label
    return None
