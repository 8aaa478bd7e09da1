"""Bring the hub's users and groups in line with the manifests (through the REST API).

Group membership changes apply at once. Roles (one per dossier) are read by JupyterHub only at
start, so a new or removed dossier restarts the hub process; `dossierhub serve` keeps the proxy
and the workspaces running through that restart.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field

from dossierhub.data.extracts import Progress, remove_extracts
from dossierhub.state.audit import AuditLog
from dossierhub.state.directory import WORKSPACE_PREFIX, DossierEntry
from dossierhub.state.home import Home
from dossierhub.workspaces.hubapi import HubAPI, HubUnavailable
from dossierhub.workspaces.servestate import read_serve_state
from dossierhub.workspaces.workspacechores import clear_outputs, run_chore


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
        try:
            _stop_or_restart(home, api, entry, removed, report)
        except OSError as exc:
            # a chore in the workspace folder failed (whatever the team left there): noted
            # in this dossier's trail; the other dossiers' members are still brought in line
            report.note(f"workspace of {entry.id}: {exc}", entry.id)
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


def _stop_or_restart(
    home: Home, api: HubAPI, entry: DossierEntry, removed: list[str], report: SyncReport
) -> None:
    """An expired dossier's workspace stopped; one that lost members restarted."""
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
    clear_outputs(home, dossier_id)  # OSError: the caller records it for this dossier
    return removed


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
