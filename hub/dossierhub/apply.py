"""`dossierhub apply`: validate everything, then bring each dossier's extracts in line."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import duckdb

from dossierhub.data.extracts import (
    DossierResult,
    Progress,
    build_dossier,
    existing_extract_ids,
    remove_extracts,
)
from dossierhub.data.policy import Installation, load_installation
from dossierhub.isolation.unixusers import (
    clash,
    identities,
    isolation_enabled,
    raw_problem,
    secure_dossier,
    secure_home,
)
from dossierhub.state.applylock import apply_lock
from dossierhub.state.audit import AuditLog
from dossierhub.state.directory import DossierEntry, write_directory
from dossierhub.state.home import Home
from dossierhub.state.masterkey import read_master_key
from dossierhub.state.problems import Problem, RefusedError
from dossierhub.state.settings import load_settings
from dossierhub.workspaces.hubapi import HubAPI, HubUnavailable
from dossierhub.workspaces.hubrollout import InCluster, roll_hub, wait_for_api
from dossierhub.workspaces.provision import expire_workspace, request_hub_restart, sync_hub
from dossierhub.workspaces.servestate import read_serve_state

WAITING = "waiting for another apply to finish (it holds apply's lock in the hub's database) ..."


@dataclass
class ApplyReport:
    results: list[DossierResult] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    hub_changes: list[str] = field(default_factory=list)
    # the hub could not be told (extracts are built and recorded; apply exits 1 with this)
    hub_error: str | None = None

    @property
    def failed(self) -> list[DossierResult]:
        return [r for r in self.results if r.status == "failed"]


def apply(
    home: Home,
    ids: list[str],
    progress: Progress,
    *,
    force: bool = False,
    today: dt.date | None = None,
) -> ApplyReport:
    """Refuses (RefusedError, audited, nothing changed) on any invalid input. One apply at
    a time per installation on PostgreSQL (state/applylock.py); a second one waits."""
    with apply_lock(load_settings(home), lambda: progress.message(WAITING)):
        return _apply(home, ids, progress, force=force, today=today)


def _apply(
    home: Home,
    ids: list[str],
    progress: Progress,
    *,
    force: bool,
    today: dt.date | None,
) -> ApplyReport:
    audit = AuditLog(home)
    inst = load_installation(home, today=today, sample_values=False)
    problems = list(inst.problems.errors)
    unknown = [i for i in ids if i not in inst.manifest_files and i not in inst.dossiers]
    problems += [
        Problem(
            f"dossiers/{i}.yaml",
            "",
            "does not exist.",
            "name a dossier that has a manifest, or run apply without ids to "
            "deprovision dossiers whose manifest was removed.",
        )
        for i in unknown
    ]
    if isolation_enabled() and (why := raw_problem(home)):
        problems.append(
            Problem(
                "raw/",
                "",
                why + ".",
                "make it root's and 0700 once, from a pod or machine that mounts it "
                "read-write (chown 0:0 raw; chmod 0700 raw).",
            )
        )
    if problems:
        audit.append("apply.refused", dossiers=ids or "all", problems=[str(p) for p in problems])
        raise RefusedError(problems)
    master_key = read_master_key(home)
    report = ApplyReport(warnings=[*inst.problems.warnings, *_identity_clashes(inst)])
    selected = ids or sorted(inst.dossiers)
    for dossier_id in selected:
        report.results.append(_apply_one(inst, dossier_id, master_key, progress, force, today))
    _secure(inst, report.results)
    entries = write_directory(home, list(inst.dossiers.values()))
    try:
        report.hub_changes = _update_hub(home, entries)
    except HubUnavailable as exc:
        report.hub_error = str(exc)
    if not ids:
        for leftover in existing_extract_ids(home):
            if leftover not in inst.dossiers:
                remove_extracts(home, leftover, progress)
                report.results.append(
                    DossierResult(
                        leftover, "removed", note="manifest removed: dossier deprovisioned"
                    )
                )
    audit.append(
        "apply",
        dossiers=[_audit_entry(r) for r in report.results],
        forced=force,
        hub=report.hub_changes,
        **({"hub_error": report.hub_error} if report.hub_error else {}),
    )
    return report


def _identity_clashes(inst: Installation) -> list[Problem]:
    """Run as root: Unix names that another live installation owns. The extracts are built,
    but serve and the dossier's workspace and runs refuse to start until the name is free or
    this installation has its own isolation.prefix."""
    if not isolation_enabled():
        return []
    return [
        Problem(f"dossiers/{i}.yaml", "id", why, severity="warning")
        for i in sorted(inst.dossiers)
        if (why := clash(inst.home, i))
    ]


def _secure(inst: Installation, results: list[DossierResult]) -> None:
    """Run as root: extracts readable by their dossier's identities only (made when first
    needed, by serve, a workspace's start or a report run: until then, by root only). On
    pods the dossier's number is handed out here, and owns its workspace folder; HOME's
    control files, the numbers' among them, go to the control identity last."""
    if not isolation_enabled():
        return
    for result in results:
        if result.status in ("built", "up to date"):
            ids = identities(inst.home, result.dossier_id)
            secure_dossier(inst.home, result.dossier_id, ids)
    secure_home(inst.home)


def _update_hub(home: Home, entries: list[DossierEntry]) -> list[str]:
    """With the hub running: membership at once; new or removed dossiers restart the hub.
    In apply's pod (the environment names z2jh's hub Deployment) by rolling that Deployment,
    on one machine through serve."""
    cluster = InCluster.from_environment()
    if cluster is not None:
        return _update_hub_in_cluster(home, cluster, entries)
    state = read_serve_state(home)
    if state is None:
        return []  # serve brings the hub in line when it starts
    wanted = {e.id for e in entries}
    if set(state.role_ids) != wanted:
        request_hub_restart(home, wanted)
        return [f"hub restarted for the roles of {', '.join(sorted(wanted)) or 'no dossier'}"]
    api = HubAPI.for_home(home)
    try:
        return sync_hub(home, api, entries).changes
    finally:
        api.close()


def _update_hub_in_cluster(
    home: Home, cluster: InCluster, entries: list[DossierEntry]
) -> list[str]:
    wanted = {e.id for e in entries}
    changes = []
    if roll_hub(load_settings(home), cluster, wanted):
        changes.append(
            f"hub restarted for the roles of {', '.join(sorted(wanted)) or 'no dossier'}"
        )
    api = cluster.api()
    try:
        wait_for_api(api, cluster.rollout_seconds)
        return changes + sync_hub(home, api, entries).changes
    finally:
        api.close()


def _apply_one(
    inst: Installation,
    dossier_id: str,
    master_key: bytes,
    progress: Progress,
    force: bool,
    today: dt.date | None,
) -> DossierResult:
    dossier = inst.dossiers[dossier_id]
    if dossier.is_expired(today):
        # the hub sync that follows stops a workspace still running (it asks the hub)
        expired = f"expired on {dossier.expires.isoformat()}"
        try:
            removed = expire_workspace(inst.home, None, dossier_id, progress)
        except OSError as exc:
            # the extracts are removed first; what failed (a chore in the workspace folder,
            # whatever the team left there) is this dossier's alone: apply goes on
            reason = (str(exc).splitlines() or [exc.__class__.__name__])[0]
            return DossierResult(dossier_id, "failed", note=f"{expired}: {reason}")
        note = f"{expired}: " + ("extracts removed" if removed else "no extracts to remove")
        return DossierResult(dossier_id, "removed" if removed else "expired", note=note)
    try:
        return build_dossier(
            inst.home,
            dossier,
            inst.plans[dossier_id],
            inst.sources,
            master_key,
            progress,
            force=force,
        )
    except (duckdb.Error, OSError) as exc:
        reason = (str(exc).splitlines() or [exc.__class__.__name__])[0]
        return DossierResult(
            dossier_id, "failed", note=f"{reason}; the previous extracts are unchanged"
        )


def _audit_entry(result: DossierResult) -> dict[str, object]:
    return {
        "id": result.dossier_id,
        "status": result.status,
        "policy_hash": result.policy_hash,
        "generation": result.generation,
        "note": result.note,
        "views": [
            {
                "view": v.view,
                "source": v.source,
                "status": v.status,
                "rows_in": v.rows_in,
                "rows_out": v.rows_out,
                "pseudonymized": list(v.pseudonymized),
            }
            for v in result.views
        ],
    }
