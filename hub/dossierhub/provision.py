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
from pathlib import Path

import nbformat

from .directory import WORKSPACE_PREFIX, DossierEntry
from .extracts import Progress, remove_extracts
from .home import Home
from .hubapi import HubAPI, HubUnavailable, read_serve_state

NOTICE = "WORKSPACE-NOTICE.md"


@dataclass
class SyncReport:
    changes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        self.changes.append(text)


def sync_hub(home: Home, api: HubAPI, entries: list[DossierEntry]) -> SyncReport:
    report = SyncReport()
    users = api.users()
    groups = api.groups()
    people = sorted({p for e in entries for p in (*e.workers, *e.viewers)})
    missing = [n for n in [*people, *(e.hub_user for e in entries)] if n not in users]
    api.create_users(missing)
    for name in missing:
        report.note(f"created hub user {name}")
    for entry in entries:
        removed = _set_members(api, groups, entry.group, entry.workers, report)
        _set_members(api, groups, entry.viewer_group, entry.viewers, report)
        if entry.expired():
            if api.server_running(entry.hub_user):
                expire_workspace(home, api, entry.id)
                report.note(f"stopped the workspace of expired dossier {entry.id}")
        elif removed and api.server_running(entry.hub_user):
            restart_workspace(home, api, entry, removed)
            report.note(
                f"restarted the workspace of {entry.id} to close the connections of "
                f"{', '.join(removed)}"
            )
    wanted = {e.hub_user for e in entries}
    for name in sorted(users):
        if name.startswith(WORKSPACE_PREFIX) and name not in wanted:
            api.stop_server(name)
            api.delete_user(name)
            for group in (name, f"{name}-viewers"):
                if group in groups:
                    api.delete_group(group)
            report.note(f"deprovisioned hub user and groups of {name}")
    return report


def _set_members(
    api: HubAPI,
    groups: dict[str, list[str]],
    group: str,
    wanted: tuple[str, ...],
    report: SyncReport,
) -> list[str]:
    if group not in groups:
        api.create_group(group)
        report.note(f"created group {group}")
    current = set(groups.get(group, []))
    add = sorted(set(wanted) - current)
    remove = sorted(current - set(wanted))
    api.add_to_group(group, add)
    api.remove_from_group(group, remove)
    for person in add:
        report.note(f"added {person} to {group}")
    for person in remove:
        report.note(f"removed {person} from {group}")
    return remove


def restart_workspace(home: Home, api: HubAPI, entry: DossierEntry, removed: list[str]) -> None:
    """Close every open connection (kernels, terminals, rooms) of removed members."""
    folder = home.workspaces_dir / entry.id
    if folder.exists():
        (folder / NOTICE).write_text(
            f"# Workspace restarted\n\nOn {time.strftime('%Y-%m-%d %H:%M')} the team of dossier "
            f"{entry.id} changed ({len(removed)} member(s) left), so the workspace was "
            "restarted to close their connections. Notebooks are unchanged; re-run your "
            "kernels.\n",
            encoding="utf-8",
        )
    api.stop_server(entry.hub_user)
    api.start_server(entry.hub_user)


def expire_workspace(home: Home, api: HubAPI | None, dossier_id: str) -> None:
    """Stop the workspace, delete the extracts, keep the notebooks with their outputs cleared."""
    if api is not None:
        api.stop_server(WORKSPACE_PREFIX + dossier_id)
    remove_extracts(home, dossier_id, Progress())
    clear_outputs(home.workspaces_dir / dossier_id)


def clear_outputs(folder: Path) -> int:
    """Outputs may hold data; an expired dossier keeps its notebooks' code and text only."""
    cleared = 0
    if not folder.exists():
        return 0
    for path in folder.rglob("*.ipynb"):
        if ".ipynb_checkpoints" in path.parts:
            path.unlink()
            continue
        try:
            notebook = nbformat.read(path, as_version=4)
        except (OSError, ValueError):
            continue
        changed = False
        for cell in notebook.cells:
            if cell.cell_type == "code" and (cell.outputs or cell.execution_count):
                cell.outputs, cell.execution_count, changed = [], None, True
        if changed:
            stat = path.stat()
            tmp = path.with_name(f".{path.name}.clearing")
            nbformat.write(notebook, tmp)
            os.chown(tmp, stat.st_uid, stat.st_gid)
            os.chmod(tmp, stat.st_mode & 0o777)
            os.replace(tmp, path)  # never a torn notebook, even for a reader right now
            cleared += 1
    return cleared


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
