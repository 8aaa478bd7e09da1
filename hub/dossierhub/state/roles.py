"""Who may do what in a dossier, and why not: each role rule is decided by one function here.

A function returns None when the person may, or a `Denied` with the sentence they are shown
and the kind of refusal (as ReportRefused sorts them for HTTP). reports/ enforces these
rules, portal.py and the hub's home page (hubconfig.workspaces_for) explain them with the same
functions, so a button is never offered for what would then be refused, nor the other way
round. The hub's own access to a workspace (its group, hubconfig) is given to the people of
WORKER_ROLES (directory.DossierEntry.workers).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol


class Membership(Protocol):
    """What the rules need to know of a dossier (directory.DossierEntry is one). A protocol, so
    that the directory can take WORKER_ROLES from here without the two modules knowing each
    other both ways."""

    @property
    def id(self) -> str: ...
    @property
    def expires(self) -> str: ...
    def role_of(self, person: str) -> str | None: ...
    def expired(self, today: dt.date | None = None) -> bool: ...


WORKER_ROLES = ("lead", "analyst")  # open and start the workspace, run reports, see unchecked
RELEASER_ROLE = "lead"


@dataclass(frozen=True)
class Denied:
    why: str
    reason: str = "forbidden"  # forbidden | conflict (as ReportRefused.reason)


def _is(person: str, role: str | None, dossier_id: str) -> str:
    return f"{person} is {'a ' + role if role else 'not a member'} of dossier {dossier_id}"


def may_open_workspace(
    entry: Membership, person: str, today: dt.date | None = None
) -> Denied | None:
    role = entry.role_of(person)
    if role not in WORKER_ROLES:
        return Denied(
            f"{_is(person, role, entry.id)}: only its leads and analysts open its workspace"
        )
    if entry.expired(today):
        return Denied(
            f"dossier {entry.id} expired on {entry.expires}: its workspace is closed", "conflict"
        )
    return None


def may_run(entry: Membership, person: str, today: dt.date | None = None) -> Denied | None:
    role = entry.role_of(person)
    if role not in WORKER_ROLES:
        return Denied(f"{_is(person, role, entry.id)}: only its leads and analysts run reports")
    if entry.expired(today):
        return Denied(f"dossier {entry.id} expired on {entry.expires}: no new runs", "conflict")
    return None


def may_release(
    person: str,
    role: str | None,
    *,
    dossier_id: str,
    run_id: str,
    started_by: str,
    status: str,
    released_by: str | None,
) -> Denied | None:
    """Four eyes: a lead who did not start the run releases it, once, if it succeeded. (That
    failed checks need a written justification is the release's own step, reports.release_run.)"""
    if role != RELEASER_ROLE:
        return Denied(f"{person} is not a lead of dossier {dossier_id}: only leads release")
    if started_by == person:
        return Denied(f"{person} started run {run_id}: another lead must release it (four eyes)")
    if released_by is not None:
        return Denied(f"run {run_id} was already released by {released_by}", "conflict")
    if status != "succeeded":
        return Denied(f"run {run_id} {status}: only succeeded runs are released", "conflict")
    return None
