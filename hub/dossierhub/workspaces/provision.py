"""Bring the hub's users and groups in line with the manifests (through the REST API).

Group membership changes apply at once. Roles (one per dossier) are read by JupyterHub only at
start, so a new or removed dossier restarts the hub process; `dossierhub serve` keeps the proxy
and the workspaces running through that restart.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from dossierhub.data.extracts import Progress, remove_extracts
from dossierhub.isolation import sandbox
from dossierhub.isolation.unixusers import identities, isolation_enabled
from dossierhub.state.audit import AuditLog
from dossierhub.state.directory import WORKSPACE_PREFIX, DossierEntry
from dossierhub.state.home import Home
from dossierhub.state.models import Dossier
from dossierhub.state.settings import load_settings
from dossierhub.workspaces.hubapi import HubAPI, HubUnavailable
from dossierhub.workspaces.servestate import read_serve_state


@dataclass
class SyncReport:
    changes: list[str] = field(default_factory=list)
    by_dossier: dict[str, list[str]] = field(default_factory=dict)

    def note(self, text: str, *dossier_ids: str) -> None:
        """A change made in the hub, and the dossiers whose trail it belongs in."""
        self.changes.append(text)
        for dossier_id in dossier_ids:
            self.by_dossier.setdefault(dossier_id, []).append(text)


def sync_hub(home: Home, api: HubAPI, entries: list[DossierEntry]) -> SyncReport:
    """Users, groups and workspaces in line with the directory; every change is audited in
    the trail of its dossier (hub.sync), also when the hub fails partway."""
    report = SyncReport()
    try:
        _sync(home, api, entries, report)
    finally:
        audit = AuditLog(home)
        for dossier_id, changes in sorted(report.by_dossier.items()):
            audit.append("hub.sync", dossier=dossier_id, changes=changes)
    return report


def _sync(home: Home, api: HubAPI, entries: list[DossierEntry], report: SyncReport) -> None:
    users = api.users()
    groups = api.groups()
    people = sorted({p for e in entries for p in (*e.workers, *e.viewers)})
    missing = [n for n in [*people, *(e.hub_user for e in entries)] if n not in users]
    api.create_users(missing)
    for name in missing:
        report.note(f"created hub user {name}", *_dossiers_of(entries, name))
    for entry in entries:
        removed = _set_members(api, groups, entry.group, entry.workers, report, entry.id)
        _set_members(api, groups, entry.viewer_group, entry.viewers, report, entry.id)
        if entry.expired():
            if api.server_running(entry.hub_user):
                expire_workspace(home, api, entry.id)
                report.note(f"stopped the workspace of expired dossier {entry.id}", entry.id)
        elif removed and api.server_running(entry.hub_user):
            restart_workspace(home, api, entry, removed)
            report.note(
                f"restarted the workspace of {entry.id} to close the connections of "
                f"{', '.join(removed)}",
                entry.id,
            )
    wanted = {e.hub_user for e in entries}
    for name in sorted(users):
        if name.startswith(WORKSPACE_PREFIX) and name not in wanted:
            api.stop_server(name)
            api.delete_user(name)
            for group in (name, f"{name}-viewers"):
                if group in groups:
                    api.delete_group(group)
            report.note(
                f"deprovisioned hub user and groups of {name}", name.removeprefix(WORKSPACE_PREFIX)
            )


def _dossiers_of(entries: list[DossierEntry], name: str) -> list[str]:
    return [e.id for e in entries if name == e.hub_user or e.role_of(name) is not None]


def _set_members(
    api: HubAPI,
    groups: dict[str, list[str]],
    group: str,
    wanted: tuple[str, ...],
    report: SyncReport,
    dossier_id: str,
) -> list[str]:
    if group not in groups:
        api.create_group(group)
        report.note(f"created group {group}", dossier_id)
    current = set(groups.get(group, []))
    add = sorted(set(wanted) - current)
    remove = sorted(current - set(wanted))
    api.add_to_group(group, add)
    api.remove_from_group(group, remove)
    for person in add:
        report.note(f"added {person} to {group}", dossier_id)
    for person in remove:
        report.note(f"removed {person} from {group}", dossier_id)
    return remove


def restart_workspace(home: Home, api: HubAPI, entry: DossierEntry, removed: list[str]) -> None:
    """Close every open connection (kernels, terminals, rooms) of removed members."""
    run_chore(
        home,
        entry.id,
        "notice",
        f"# Workspace restarted\n\nOn {time.strftime('%Y-%m-%d %H:%M')} the team of dossier "
        f"{entry.id} changed ({len(removed)} member(s) left), so the workspace was "
        "restarted to close their connections. Notebooks are unchanged; re-run your "
        "kernels.\n",
    )
    api.stop_server(entry.hub_user)
    api.start_server(entry.hub_user)


def expire_workspace(
    home: Home, api: HubAPI | None, dossier_id: str, progress: Progress | None = None
) -> bool:
    """What expiry does, wherever it is noticed (apply, the hub sync, dossierhub-expiry): stop
    the workspace (when the hub is there to ask), delete the extracts, keep the notebooks with
    their outputs cleared. True when there were extracts to delete."""
    if api is not None:
        api.stop_server(WORKSPACE_PREFIX + dossier_id)
    removed = remove_extracts(home, dossier_id, progress or Progress())
    clear_outputs(home, dossier_id)
    return removed


def clear_outputs(home: Home, dossier_id: str) -> int:
    """Clear the outputs of every notebook in the dossier's workspace (chores.py)."""
    done = run_chore(home, dossier_id, "clear-outputs")
    return int(done or 0)


def start_here_spec(dossier: Dossier) -> dict:
    """What the "Start here" notebook says about `dossier`, from its manifest (root's)."""
    return {
        "id": dossier.id,
        "title": dossier.title,
        "purpose": dossier.purpose,
        "views": {
            name: {"columns": list(view.columns), "pseudonymized": list(view.pseudonymize)}
            for name, view in dossier.sources.items()
        },
        "templates": list(dossier.templates),
        "dossier_url": f"/services/dossierhub/dossiers/{dossier.id}",
    }


def write_start_here(home: Home, dossier: Dossier) -> str | None:
    """Write or refresh the dossier's "Start here" notebook, as the workspace (chores.py):
    "written", "refreshed" or "kept" (a person changed it); None without a workspace folder."""
    return run_chore(home, dossier.id, "start-here", json.dumps(start_here_spec(dossier)))


def run_chore(home: Home, dossier_id: str, chore: str, stdin: str = "") -> str | None:
    """Run a chores.py chore in workspaces/<id> as the workspace's identity: in its sandbox
    (no network) when the machine has one. None when there is no workspace folder."""
    folder = home.workspace_dir(dossier_id)
    if not folder.is_dir():
        return None
    settings = load_settings(home)
    python = settings.workspaces.python or sys.executable
    command = [python, "-I", "-m", "dossierhub.workspaces.chores", chore, str(folder)]
    as_identity: dict = {}
    ids = identities(home, dossier_id) if isolation_enabled() else None
    if isolation_enabled() and ids is None:
        return None  # no workspace identity: nobody of this installation wrote there
    if ids is not None and sandbox.unavailable(settings) is None:
        command = [
            *sandbox.prefix(
                ids.workspace,
                ro=sandbox.environment_paths(python),
                rw=[folder],
                chdir=folder,
                network=False,
                die_with_parent=True,
            ),
            *command,
        ]
    elif ids is not None:
        as_identity = {
            "user": ids.workspace.uid,
            "group": ids.workspace.gid,
            "extra_groups": list(ids.workspace.groups),
        }
    try:
        result = subprocess.run(
            command,
            input=stdin,
            capture_output=True,
            text=True,
            cwd="/",
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(folder)},
            timeout=600,
            check=False,
            **as_identity,
        )
    except subprocess.TimeoutExpired:
        raise OSError(f"the {chore} chore in workspace {dossier_id} took over 600 s") from None
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or [f"exit {result.returncode}"])[-1]
        raise OSError(f"the {chore} chore in workspace {dossier_id} failed: {reason}")
    return result.stdout.strip()


def request_hub_restart(home: Home, role_ids: set[str], timeout: float = 90) -> None:
    """Ask `dossierhub serve` to restart the hub so it loads the roles of `role_ids`."""
    state = read_serve_state(home)
    if state is None:
        return
    os.kill(state.serve_pid, signal.SIGHUP)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = read_serve_state(home)
        if (
            current is not None
            and current.started > state.started
            and set(current.role_ids) == role_ids
        ):
            return
        time.sleep(0.2)
    raise HubUnavailable(
        f"the hub did not come back within {timeout:.0f} s after a restart for new roles"
    )
