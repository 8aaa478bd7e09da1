"""Who may do what in a dossier, and why not: each role rule is decided by one function here.

A function returns None when the person may, or a `Denied` with the sentence they are shown
and the kind of refusal (as ReportRefused sorts them for HTTP). reports/ enforces these
rules, portal.py (the pages and API) explains them with the same functions, so a button is
never offered for what would then be refused, nor the other way round. The hub's own access to
a workspace (its group, hubconfig) is given to the people of WORKER_ROLES
(directory.DossierEntry.workers).
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


def _not_worker(person: str, role: str | None, dossier_id: str, doing: str) -> Denied | None:
    if role in WORKER_ROLES:
        return None
    return Denied(f"{_is(person, role, dossier_id)}: only its leads and analysts {doing}")


def may_open_workspace(
    entry: Membership, person: str, today: dt.date | None = None
) -> Denied | None:
    denied = _not_worker(person, entry.role_of(person), entry.id, "open its workspace")
    if denied is not None:
        return denied
    if entry.expired(today):
        return Denied(
            f"dossier {entry.id} expired on {entry.expires}: its workspace is closed", "conflict"
        )
    return None


def may_run(entry: Membership, person: str, today: dt.date | None = None) -> Denied | None:
    denied = may_prepare_runs(person, entry.role_of(person), entry.id)
    if denied is not None:
        return denied
    if entry.expired(today):
        return Denied(f"dossier {entry.id} expired on {entry.expires}: no new runs", "conflict")
    return None


def may_prepare_runs(person: str, role: str | None, dossier_id: str) -> Denied | None:
    """The templates a dossier runs, with their forms: for those who run reports (may_run),
    also once the dossier expired (they still see what it offered)."""
    return _not_worker(person, role, dossier_id, "run reports")


def may_see_unchecked(person: str, role: str | None, dossier_id: str) -> Denied | None:
    """The team's working material: every run (released or not), a run's unchecked outputs
    (review.html, the list offered for inclusion) and the hashes of all its files. (A hash
    of a small file is a clue, so viewers get the hashes of what they read only.)"""
    return _not_worker(person, role, dossier_id, "see a run's unchecked outputs")


def may_read_run(
    person: str, role: str | None, *, dossier_id: str, run_id: str, released: bool
) -> Denied | None:
    """A run's page, report and tables, and its mention in the audit trail: the team reads
    every run, viewers released runs only (records.is_released)."""
    if role is None:
        return Denied(f"{_is(person, role, dossier_id)}")
    if released or may_see_unchecked(person, role, dossier_id) is None:
        return None
    return Denied(
        f"run {run_id} of dossier {dossier_id} is not released: viewers read released reports only"
    )


def is_told_why_not_released(role: str | None) -> bool:
    """Whom a run's page tells why it cannot release the run (the others are not offered a
    release at all): the dossier's leads."""
    return role == RELEASER_ROLE


def may_release(
    person: str,
    role: str | None,
    *,
    dossier_id: str,
    run_id: str,
    started_by: str,
    succeeded: bool,
    status: str,
    released: str | None,
) -> Denied | None:
    """Four eyes: a lead who did not start the run releases it, once, if it succeeded.
    `released` is how the run's release is described (records.ReleaseState.words), None
    while unreleased. (That failed checks need a written justification is
    records.needs_justification, applied by release.release_run.)"""
    if role != RELEASER_ROLE:
        return Denied(f"{person} is not a lead of dossier {dossier_id}: only leads release")
    if started_by == person:
        return Denied(f"{person} started run {run_id}: another lead must release it (four eyes)")
    return may_be_released(run_id=run_id, succeeded=succeeded, status=status, released=released)


def may_be_released(
    *, run_id: str, succeeded: bool, status: str, released: str | None
) -> Denied | None:
    """The run's half of may_release: unreleased and succeeded. (Who may release it is the
    other half; a run that may be released but has no lead who may is one a second lead is
    missing for.)"""
    if released is not None:
        return Denied(f"run {run_id} was already {released}", "conflict")
    if not succeeded:
        return Denied(f"run {run_id} {status}: only succeeded runs are released", "conflict")
    return None


def may_see_executions(person: str, role: str | None, dossier_id: str) -> Denied | None:
    """Everyone's executions in a dossier's workspace (who ran which code, its first line):
    its leads and analysts. A first line of code can hold data, so the others with access to
    the dossier's pages (viewers) see their own executions only (may_see_own_executions)."""
    return _not_worker(person, role, dossier_id, "see who ran what in its workspace")


def may_see_own_executions(person: str, asked_for: str | None) -> Denied | None:
    """A person always sees their own executions, in every dossier, also one they have left;
    another person's through the dossier's rule only (may_see_executions)."""
    if asked_for is None or asked_for == person:
        return None
    return Denied(f"{person} may see their own executions only, not those of {asked_for}")


def may_export_activity(person: str, admin: bool) -> Denied | None:
    """One person's executions across every dossier, for an access request: the
    installation's admins (settings.yaml hub.admins; on the command line, HOME's owner)."""
    if admin:
        return None
    return Denied(f"{person} is not an admin: only admins export a person's activity")
