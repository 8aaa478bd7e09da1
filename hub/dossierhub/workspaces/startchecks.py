"""Whether a dossier's workspace may start, decided once for every spawner: the local one
(spawner.py) and the Kubernetes one (kubespawner.py) ask the same functions, so a refusal
(no personal servers, the dossier gone, a broken manifest, expired, no data) reads the same
and is audited the same on both.

The spawners add only what is theirs to check (the Unix identities here, the pod's numbers
there); each records its decision as `workspace.start` through `start_decision`.
"""

from __future__ import annotations

import logging
from typing import Any

from tornado import web

from dossierhub.state.decisions import Decision, mark_decided
from dossierhub.state.directory import WORKSPACE_PREFIX
from dossierhub.state.home import Home
from dossierhub.state.models import Dossier, read_dossier
from dossierhub.state.problems import RefusedError


class WorkspaceRefused(web.HTTPError):
    """The spawner's no, in words a person can act on. JupyterHub replaces an HTTPError's
    sentence with its generic "Failed to start your server" unless `jupyterhub_message` is
    set; the hub's pages (templates/error.html, not_running.html) read `dossier_id` and
    `case` to say what to do about it, and the hub API answers with the sentence."""

    def __init__(self, status: int, dossier_id: str, case: str, message: str) -> None:
        super().__init__(status, message)
        self.dossier_id = dossier_id
        self.case = case  # expired, no_data, gone, manifest, identity, failed
        self.jupyterhub_message = message


def dossier_of(hub_user: str) -> str:
    """The dossier whose workspace the hub user `dossier-<id>` is; 403 for anyone else's
    server: people have no personal servers here."""
    if not hub_user.startswith(WORKSPACE_PREFIX):
        raise web.HTTPError(
            403,
            "People have no personal servers here: open a dossier workspace from the home page.",
        )
    return hub_user[len(WORKSPACE_PREFIX) :]


def requested_by(handler: Any) -> str:
    """The person whose request started the workspace (the hub sets `handler` on a spawn);
    a service or the API otherwise."""
    person = getattr(handler, "current_user", None) if handler is not None else None
    return getattr(person, "name", None) or "hub"


def start_decision(home: Home, hub_user: str, handler: Any) -> Decision:
    """The `workspace.start` record of this start (allow or refuse it once); the hub's
    request log is told it is recorded, so one request makes one record."""
    ours = hub_user.startswith(WORKSPACE_PREFIX)
    mark_decided(handler)
    return Decision(
        home,
        "workspace.start",
        requested_by(handler),
        hub_user.removeprefix(WORKSPACE_PREFIX) if ours else None,
        {} if ours else {"server": hub_user},
    )


def read_manifest(home: Home, dossier_id: str) -> Dossier:
    """The dossier's manifest; gone (404) or unreadable (409) as a WorkspaceRefused."""
    if not home.manifest_file(dossier_id).exists():
        raise WorkspaceRefused(404, dossier_id, "gone", f"Dossier {dossier_id} no longer exists.")
    try:
        return read_dossier(home, dossier_id)
    except RefusedError as exc:
        raise WorkspaceRefused(
            409, dossier_id, "manifest", f"{exc}: ask the admin to fix the manifest"
        ) from None


def startable_dossier(home: Home, dossier_id: str) -> Dossier:
    """The dossier, when its workspace may start: its manifest reads, it has not expired,
    and apply has built its extracts; else the WorkspaceRefused that says why."""
    dossier = read_manifest(home, dossier_id)
    if dossier.is_expired():
        raise WorkspaceRefused(
            403,
            dossier_id,
            "expired",
            f"Dossier {dossier_id} expired on {dossier.expires.isoformat()}: its workspace "
            "cannot be started. Its reports stay readable; ask the admin to extend it.",
        )
    if not home.extract_catalog(dossier_id).exists():
        raise WorkspaceRefused(
            409,
            dossier_id,
            "no_data",
            f"Dossier {dossier_id} has no data yet: ask the admin to run `dossierhub apply`.",
        )
    return dossier


def start_failed(
    log: logging.Logger, dossier_id: str, exc: Exception, where: str
) -> WorkspaceRefused:
    """An unexpected failure of a start, as the sentence a person sees. JupyterHub would print
    the exception on the start page, and it may name a folder under HOME or the API server:
    the hub's log keeps it whole, the person is told where to look (`where`, in words)."""
    log.error("workspace %s did not start", dossier_id, exc_info=exc)
    return WorkspaceRefused(
        500,
        dossier_id,
        "failed",
        f"The workspace of dossier {dossier_id} did not start ({type(exc).__name__}); "
        f"the reason is in {where}.",
    )
