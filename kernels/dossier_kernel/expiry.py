"""The expiry rule, decided here only: a dossier's `expires` is its last usable day, inclusive,
in the installation's local time, and its members are warned from WARNING_DAYS before.

It lives in the kernel package because both sides of the hub/workspace wall need it: the hub
(apply, the spawner, report runs, the pages, the expiry service) and the workspace's Dossier
panel (dossier_lab/info.py, which tells the panel what to show). It imports nothing of either.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

WARNING_DAYS = 30


@dataclass(frozen=True)
class Expiry:
    expires: dt.date
    days_left: int  # 0 on the last usable day; negative once expired

    @property
    def expired(self) -> bool:
        return self.days_left < 0

    @property
    def expires_soon(self) -> bool:
        """Still usable, and within the warning period."""
        return 0 <= self.days_left <= WARNING_DAYS


def expiry(expires: dt.date | str, today: dt.date | None = None) -> Expiry:
    """`expires` as a date or as written in provenance and the directory (YYYY-MM-DD)."""
    day = dt.date.fromisoformat(expires) if isinstance(expires, str) else expires
    return Expiry(day, (day - (today or dt.date.today())).days)
