"""Who may do what in a dossier, and why not (roles.py): one function per rule, whose answer
both refuses the act (reports.py) and explains it on the pages (portal.py)."""

from __future__ import annotations

import datetime as dt

from dossierhub.state.directory import DossierEntry
from dossierhub.state.roles import (
    is_told_why_not_released,
    may_open_workspace,
    may_read_run,
    may_release,
    may_run,
    may_see_unchecked,
)

TODAY = dt.date(2026, 1, 1)
ARMOEDE = DossierEntry(
    "armoede", "Poverty", "Why", "art. 6", "2026-01-01", ("a.jansen", "c.bakker"),
    ("b.devries",), ("d.visser",),
)  # fmt: skip


def test_leads_and_analysts_open_the_workspace_and_run_reports_until_expiry() -> None:
    for rule in (may_open_workspace, may_run):
        assert rule(ARMOEDE, "a.jansen", TODAY) is None
        assert rule(ARMOEDE, "b.devries", TODAY) is None
        viewer = rule(ARMOEDE, "d.visser", TODAY)
        assert viewer is not None and viewer.reason == "forbidden"
        assert "d.visser is a viewer of dossier armoede" in viewer.why
        stranger = rule(ARMOEDE, "h.deboer", TODAY)
        assert stranger is not None and "not a member" in stranger.why
        late = rule(ARMOEDE, "a.jansen", TODAY + dt.timedelta(days=1))
        assert (
            late is not None and late.reason == "conflict" and "expired on 2026-01-01" in late.why
        )


def test_the_hub_gives_its_workspace_to_exactly_those_who_may_open_it() -> None:
    may = {p for p in ("a.jansen", "c.bakker", "b.devries", "d.visser", "h.deboer")
           if may_open_workspace(ARMOEDE, p, TODAY) is None}  # fmt: skip
    assert set(ARMOEDE.workers) == may


def release(person: str, **run: object):  # type: ignore[no-untyped-def]
    status = run.pop("status", "succeeded")
    facts = {"started_by": "b.devries", "status": status, "succeeded": status == "succeeded",
             "released": None, **run}  # fmt: skip
    return may_release(person, ARMOEDE.role_of(person), dossier_id="armoede", run_id="r1", **facts)


def test_four_eyes_release() -> None:
    assert release("a.jansen") is None
    assert "only leads release" in release("b.devries").why
    own = release("a.jansen", started_by="a.jansen")
    assert own.reason == "forbidden" and "four eyes" in own.why
    assert release("c.bakker", started_by="a.jansen") is None
    again = release("a.jansen", released="released by c.bakker")
    assert again.reason == "conflict" and "already released by c.bakker" in again.why
    failed = release("a.jansen", status="failed")
    assert failed.reason == "conflict" and "only succeeded runs" in failed.why


def test_the_team_reads_every_run_viewers_the_released_ones() -> None:
    def read(person: str, released: bool):  # type: ignore[no-untyped-def]
        role = ARMOEDE.role_of(person)
        return may_read_run(person, role, dossier_id="armoede", run_id="r1", released=released)

    for worker in ("a.jansen", "b.devries"):
        assert read(worker, False) is None and read(worker, True) is None
        assert may_see_unchecked(worker, ARMOEDE.role_of(worker), "armoede") is None
    assert read("d.visser", True) is None
    unreleased = read("d.visser", False)
    assert unreleased is not None and "viewers read released reports only" in unreleased.why
    assert read("h.deboer", True) is not None  # a stranger reads nothing, released or not
    unchecked = may_see_unchecked("d.visser", "viewer", "armoede")
    assert unchecked is not None and "only its leads and analysts" in unchecked.why
    assert [is_told_why_not_released(ARMOEDE.role_of(p)) for p in ("a.jansen", "b.devries")] == [
        True,
        False,
    ]
