"""The expiry rule, decided once (dossier_kernel.expiry) for the hub and the workspace."""

from __future__ import annotations

import datetime as dt

from dossier_kernel.expiry import WARNING_DAYS, expiry
from dossierhub.state.directory import DossierEntry

LAST_DAY = dt.date(2027, 6, 30)


def test_expires_is_the_last_usable_day() -> None:
    assert not expiry(LAST_DAY, LAST_DAY).expired
    assert expiry(LAST_DAY, LAST_DAY).days_left == 0
    assert expiry("2027-06-30", LAST_DAY + dt.timedelta(days=1)).expired


def test_members_are_warned_for_the_last_warning_days_only() -> None:
    def soon(days_before: int) -> bool:
        return expiry(LAST_DAY, LAST_DAY - dt.timedelta(days=days_before)).expires_soon

    assert soon(0) and soon(WARNING_DAYS)
    assert not soon(WARNING_DAYS + 1)
    assert not soon(-1)  # expired: no longer "soon"


def test_the_hub_s_models_follow_the_rule() -> None:
    entry = DossierEntry("x", "X", "why", "art. 6", "2027-06-30", (), (), ())
    assert not entry.expired(LAST_DAY) and entry.expired(LAST_DAY + dt.timedelta(days=1))
