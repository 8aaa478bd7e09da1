"""One audited decision path: every allow or deny on a dossier, from every face.

The command line, the pages, the REST API (and the JupyterLab panel, which uses it) and the hub
ask here. The rules stay where they are (portal.py: roles; reports/requests.py and
reports/release.py: runs and releases; spawner.py: workspaces) and say no by raising
ReportRefused; `decide` runs one rule and appends exactly one audit record for it: `<action>`
when allowed, `<action>.refused` when not, with the person (actor), the dossier asked for, the
outcome and, for a refusal, its reason and sentence.
The record carries the channel of the process (audit.set_channel), so a refusal in the pages
is told from one typed on the command line.

A refusal is recorded under the dossier id the person asked for, whether or not it exists:
they get the same answer either way (portal.member_entry), and the dossier's members see the
attempt in its trail. Reads that pages repeat (the run detail, which the run page polls while
a run is going; the dossier page) are recorded when refused only: ACTIONS says which, and
docs/decisions.md why.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from dossierhub.state.audit import AuditLog
from dossierhub.state.home import Home

if TYPE_CHECKING:  # reports imports polars and nbconvert: seconds the hub need not spend
    from dossierhub.state.problems import ReportRefused

T = TypeVar("T")

log = logging.getLogger("dossierhub.decisions")

REFUSED = ".refused"
TEXT_LIMIT = 300  # what a person typed is recorded, but never a megabyte of it


@dataclass(frozen=True)
class Action:
    """One kind of decision. `record_allowed` is False for reads that pages repeat."""

    name: str
    record_allowed: bool = True


ACTIONS = {
    a.name: a
    for a in (
        Action("workspace.open"),  # the Open workspace button (pages, hub home page)
        Action("workspace.start"),  # the hub starts a dossier's workspace (spawner)
        Action("report.run"),
        Action("report.release"),
        Action("report.read"),  # report.html, review.html, a published table's CSV
        Action("report.show", record_allowed=False),  # a run's detail: polled by the run page
        Action("dossier.show", record_allowed=False),  # the dossier page, its runs, templates
        Action("audit.show"),
        Action("admin.overview"),
        Action("executions.show"),  # who ran what in a dossier's workspace (API)
        Action("executions.latest", record_allowed=False),  # the panel, after every run
        Action("executions.mine"),  # a person's own, across dossiers (My activity, API)
        Action("executions.export"),  # one person's activity, for an access request
    )
}


@dataclass
class Decision:
    """One decision about to be taken: `allow` or `refuse` records it, once."""

    home: Home
    action: str
    actor: str
    dossier: str | None = None
    asked: dict[str, Any] = field(default_factory=dict)
    decided: bool = False  # allow() or refuse() was called (a quiet read writes nothing)

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"'{self.action}' is not a decision of decisions.ACTIONS")

    def allow(self, **facts: Any) -> None:
        """Record that it was allowed, with what was done (a run's id, a release's record);
        for the reads of ACTIONS that pages repeat, only mark it decided."""
        if ACTIONS[self.action].record_allowed:
            self._append(self.action, {**facts, "outcome": "allowed"})
        else:
            self._mark()

    def refuse(self, refused: ReportRefused) -> ReportRefused:
        """Record the refusal; returns it, for the caller to raise or answer."""
        self.refused_for(refused.reason, str(refused))
        return refused

    def refused_for(self, reason: str, message: str) -> None:
        """Record a refusal: `reason` as ReportRefused's (forbidden, not_found, conflict,
        invalid, malformed), `message` the sentence the person was given."""
        self._append(
            self.action + REFUSED,
            {"outcome": "refused", "reason": reason, "message": _short(message)},
        )

    def _append(self, name: str, details: dict[str, Any]) -> None:
        self._mark()
        where = {"dossier": self.dossier} if self.dossier is not None else {}
        asked = {k: _short(v) if isinstance(v, str) else v for k, v in self.asked.items()}
        # what was done (details) says more than what was asked: a checked template name
        AuditLog(self.home).append(name, actor=self.actor, **{**where, **asked, **details})

    def _mark(self) -> None:
        if self.decided:
            raise RuntimeError(f"decision {self.action} of {self.actor} recorded twice")
        self.decided = True


def decide(
    home: Home,
    action: str,
    actor: str,
    dossier: str | None,
    rule: Callable[[], T],
    facts: Callable[[T], dict[str, Any]] | None = None,
    **asked: Any,
) -> T:
    """Run `rule` (which raises ReportRefused to say no) and record the decision once.

    `asked` is what the person asked for (a run id, a template), recorded either way; `facts`
    turns the rule's result into what an allowed record adds. Errors other than a refusal
    are not decisions: they propagate unrecorded (the caller's log has them)."""
    from dossierhub.state.problems import ReportRefused

    decision = Decision(home, action, actor, dossier, asked)
    try:
        result = rule()
    except ReportRefused as exc:
        raise decision.refuse(exc) from None
    decision.allow(**(facts(result) if facts is not None else {}))
    return result


def refuse(
    home: Home, action: str, actor: str, dossier: str | None, refused: ReportRefused, **asked: Any
) -> ReportRefused:
    """Record a refusal made at the edge, before any rule ran (a request body that is not
    JSON or does not fit its schema): a decision like any other."""
    return Decision(home, action, actor, dossier, asked).refuse(refused)


# how a refusal answers over HTTP (pages, API, the hub's spawner)
HTTP_STATUS = {
    "malformed": 400,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "invalid": 422,
}


def http_status(refused: ReportRefused) -> int:
    return HTTP_STATUS.get(refused.reason, 422)


def reason_of_status(status: int) -> str:
    """The refusal reason of an HTTP status (the spawner's and the hub's own refusals)."""
    return next((r for r, s in HTTP_STATUS.items() if s == status), "forbidden")


def _short(text: str) -> str:
    return text if len(text) <= TEXT_LIMIT else text[: TEXT_LIMIT - 1] + "…"


# ---------------------------------------------------------------- what an allowed record adds


def run_facts(pending: Any) -> dict[str, Any]:
    """report.run: the run's id, template and checked parameters (a requests.PendingRun)."""
    return {"run": pending.run_id, "template": pending.template.name, "parameters": pending.values}


def release_facts(record: dict[str, Any]) -> dict[str, Any]:
    """report.release: the justification, the failed checks and the outputs included."""
    return {
        "justification": record.get("justification"),
        "failed_checks": record.get("failed_checks", []),
        "included": record.get("included", []),
        "report_sha256": record.get("report_sha256"),
    }


# ---------------------------------------------------------------- refusals by JupyterHub itself

# Paths at which the hub itself (its roles, before the spawner is asked) refuses a person a
# workspace: starting it (the spawn page, the REST API) and opening it (the workspace's OAuth
# login at the hub). What the person asked is in the path or the OAuth client id.
_HUB_REFUSALS = (
    ("workspace.start", re.compile(r"/hub/spawn/dossier-([a-z][a-z0-9-]*)(?:/|$)")),
    ("workspace.start", re.compile(r"/hub/api/users/dossier-([a-z][a-z0-9-]*)/server(?:/|$)")),
)
_OAUTH_AUTHORIZE = "/hub/api/oauth2/authorize"
_WORKSPACE_CLIENT = re.compile(r"jupyterhub-user-dossier-([a-z][a-z0-9-]*)")


def hub_request_logger(home: Home) -> Callable[[Any], None]:
    """JupyterHub's `log_function` (tornado_settings): its own request log, and a refusal
    record when the hub's roles refuse a person a dossier's workspace. Allowed opens are not
    recorded here (every page of the workspace passes the hub's OAuth); the Open workspace
    button (workspace.open) and the spawner (workspace.start) record those."""
    from jupyterhub.log import log_request

    def log_and_audit(handler: Any) -> None:
        log_request(handler)
        try:
            _audit_hub_refusal(home, handler)
        except Exception:  # the audit of a refusal must never break the hub's answer
            log.exception("could not record the hub's refusal of %s", handler.request.path)

    return log_and_audit


def mark_decided(handler: Any) -> None:
    """Tell the request log that this hub request's decision is recorded already (by the
    spawner), so a refusal it answered is not recorded a second time."""
    if handler is not None:
        setattr(handler, _DECIDED, True)


_DECIDED = "_dossierhub_decided"


def _audit_hub_refusal(home: Home, handler: Any) -> None:
    status = handler.get_status()
    if status not in (403, 404) or getattr(handler, _DECIDED, False):
        return  # 404: to someone who may not see a workspace, the hub hides it
    request = handler.request
    asked = _hub_refusal_of(request.path, handler.get_query_argument("client_id", ""))
    if asked is None:
        return
    user = getattr(handler, "_jupyterhub_user", None)  # who the hub found, without asking again
    if user is None or getattr(user, "kind", "user") != "user":
        return  # not logged in, or a service: no person to record (the hub's log has it)
    action, dossier = asked
    Decision(home, action, user.name, dossier).refused_for(
        "forbidden",
        f"the hub answered {status} to {request.method} {request.path}: no role of "
        f"{user.name} in dossier {dossier} allows it",
    )


def _hub_refusal_of(path: str, client_id: str) -> tuple[str, str] | None:
    if path.rstrip("/").endswith(_OAUTH_AUTHORIZE):
        found = _WORKSPACE_CLIENT.fullmatch(client_id)
        return ("workspace.open", found.group(1)) if found else None
    for action, pattern in _HUB_REFUSALS:
        match = pattern.search(path)
        if match:
            return action, match.group(1)
    return None


# ---------------------------------------------------------------- hub-level changes


def dossiers_of(home: Home, hub_user: str) -> list[str]:
    """The dossiers a hub account acts in: a workspace account's own, a person's every one
    (a token minted for them reaches each), so the record shows in each of their trails."""
    from dossierhub.state.directory import WORKSPACE_PREFIX, read_directory

    entries = read_directory(home)
    if hub_user.startswith(WORKSPACE_PREFIX):
        return [e.id for e in entries if e.hub_user == hub_user]
    return [e.id for e in entries if e.role_of(hub_user) is not None]
