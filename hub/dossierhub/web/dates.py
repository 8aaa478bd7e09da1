"""Dates and times on the pages: the one formatting rule, as the jinja filters `when` and `day`.

Records keep times in UTC ISO 8601 (`2026-12-01T06:11:48.538+00:00`); people read
`1 Dec 2026, 07:11`. The server renders each time in the installation's time zone
(settings.yaml `hub.time_zone`) inside `<time datetime="ISO">`, and the page script
(static/dossierhub.js) writes it again in the browser's own zone, so a page reads right with
and without script. A calendar date (a dossier's expiry) is no moment: `day` shows it as it
is, in no zone. A value that is not a time is shown as it came, never an error page.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from markupsafe import Markup


def moment(value: Any) -> dt.datetime | None:
    """The aware datetime of an ISO text or datetime (naive means UTC), or None."""
    if isinstance(value, dt.datetime):
        found = value
    elif isinstance(value, str) and value:
        try:
            found = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    return found if found.tzinfo else found.replace(tzinfo=dt.UTC)


def local_text(when: dt.datetime, zone: str) -> str:
    """`1 Dec 2026, 07:11` in `zone` (English month names: the pages are in English)."""
    here = when.astimezone(ZoneInfo(zone))
    return f"{here.day} {here:%b %Y, %H:%M}"


def when(value: Any, zone: str, empty: str = "") -> Markup:
    """A moment as `<time datetime="…">` in `zone`; the page script re-renders it."""
    found = moment(value)
    if found is None:
        return Markup("{}").format(value or empty)
    iso = found.astimezone(dt.UTC).isoformat(timespec="seconds")
    return Markup('<time datetime="{}" data-when="moment">{}</time>').format(
        iso, local_text(found, zone)
    )


def day(value: Any, empty: str = "") -> Markup:
    """A calendar date (`2026-12-31`) as `<time datetime="2026-12-31">31 Dec 2026</time>`."""
    try:
        found = dt.date.fromisoformat(str(value)[:10]) if value else None
    except ValueError:
        found = None
    if found is None:
        return Markup("{}").format(value or empty)
    return Markup('<time datetime="{}">{}</time>').format(
        found.isoformat(), f"{found.day} {found:%b %Y}"
    )
