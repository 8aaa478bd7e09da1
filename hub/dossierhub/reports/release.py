"""Releasing a run to the dossier's viewers: four eyes (a lead who did not start the run),
output checks passed or a written justification, the run's files as the run recorded them,
differencing against every earlier release re-computed, and the audit head it happened
under (release.json, records.py). The rule itself is roles.may_release; this module applies
it to a run's facts, for release_run and for the pages that explain it."""

from __future__ import annotations

import hashlib
from typing import Any

from dossierhub.reports import airlock
from dossierhub.reports.collect import file_hashes, lock_down
from dossierhub.reports.differencing import differencing_checks, is_differencing, release_lock
from dossierhub.reports.listing import RunDetail, RunSummary, show_run
from dossierhub.reports.records import (
    Release,
    is_released,
    needs_justification,
    now,
    write_release,
)
from dossierhub.state.audit import AuditLog
from dossierhub.state.directory import read_directory
from dossierhub.state.home import Home, RunFolder
from dossierhub.state.problems import ReportRefused
from dossierhub.state.roles import Denied, may_release


def release_denied(
    user: str, role: str | None, dossier_id: str, run: RunDetail | RunSummary
) -> Denied | None:
    """Whether `user` (with `role` in the dossier) may release `run`: the four-eyes rule
    (roles.may_release) on this run's facts (a run of a list has the same facts)."""
    return may_release(
        user,
        role,
        dossier_id=dossier_id,
        run_id=run.record.run_id,
        started_by=run.record.user,
        succeeded=run.record.succeeded,
        status=run.record.status,
        released=run.release.words(),
    )


def release_checks(home: Home, dossier_id: str, run: RunDetail) -> list[dict[str, Any]]:
    """The checks a release of `run` is decided with: the run's own output checks and
    differencing re-computed against every release now (another run may have been released
    since this one finished). release_run asks under the dossier's release lock; the run's
    page asks the same to know whether to ask for a justification."""
    differencing = differencing_checks(home, dossier_id, run.folder)
    return [c for c in run.checks if not is_differencing(c)] + differencing


def release_run(
    home: Home,
    dossier_id: str,
    run_id: str,
    user: str,
    justification: str | None,
    include: dict[str, str] | None = None,
) -> Release:
    """Four eyes: a lead who did not start the run; checks passed or a justification.
    The caller records the decision (decisions.decide, as report.release).

    `include` maps unchecked outputs (ids from outputs.json) the lead chooses to show viewers
    to a justification for each; every other unchecked output stays withheld."""
    run = show_run(home, dossier_id, run_id)
    entry = next((e for e in read_directory(home) if e.id == dossier_id), None)
    denied = release_denied(user, entry.role_of(user) if entry else None, dossier_id, run)
    if denied is not None:
        raise ReportRefused(denied.why, reason=denied.reason)
    folder = run.folder
    if file_hashes(folder) != run.record.outputs:
        raise ReportRefused(
            f"run {run_id}'s files differ from what the run recorded: not released",
            reason="conflict",
        )
    with release_lock(home, dossier_id):  # differencing sees every release before this one
        if is_released(folder):  # released by another lead meanwhile
            raise ReportRefused(f"run {run_id} was already released", reason="conflict")
        checks = release_checks(home, dossier_id, run)
        differencing = [c for c in checks if is_differencing(c)]
        failed = list(dict.fromkeys(c["table"] for c in checks if not c["passed"]))
        if needs_justification(checks) and not (justification and justification.strip()):
            message = (
                f"the output checks failed for {_failed_rules(checks)}: release "
                "only with a written justification"
            )
            raise ReportRefused(message, fields={"justification": message})
        release = Release(
            by=user,
            at=now(),
            justification=justification or None,
            failed_checks=failed,
            differencing=differencing,
            included=_included(folder, include or {}),
        )
        # the released report: the checked artefacts, the included outputs, who released it
        ctx = airlock.context_for(home, dossier_id, folder, checks)
        airlock.render_viewer(home, folder, run.record, ctx, release)
        release = release.model_copy(
            update={
                "report_sha256": hashlib.sha256(folder.report_html.read_bytes()).hexdigest(),
                "audit_head": AuditLog(home).head(),  # audit verify: the log must still hold it
            }
        )
        write_release(folder, release)
    lock_down(home, folder, dossier_id)
    return release


def _included(run: RunFolder, include: dict[str, str]) -> list[dict[str, str]]:
    """The unchecked outputs the releasing lead shows viewers, each with its justification
    and the hash of the output as reviewed; refused, naming the output, when an id is not an
    unchecked output of this run or its justification is empty."""
    unchecked = {o["id"]: o for o in airlock.unchecked_outputs(run)}
    fields = {}
    for oid, why in include.items():
        if oid not in unchecked:
            fields[f"include:{oid}"] = f"{oid} is not an unchecked output of this run"
        elif not (why and why.strip()):
            fields[f"include:{oid}"] = f"including {oid} needs a written justification"
    if fields:
        raise ReportRefused("; ".join(fields.values()), fields=fields)
    return [
        {"output": oid, "sha256": unchecked[oid]["sha256"], "justification": why.strip()}
        for oid, why in sorted(include.items())
    ]


def _failed_rules(checks: list[dict[str, Any]]) -> str:
    """`table (rule, rule), table (rule)` for the checks that failed."""
    rules: dict[str, list[str]] = {}
    for check in checks:
        if not check["passed"]:
            found = rules.setdefault(check["table"], [])
            found += [f["rule"] for f in check["findings"] if f["rule"] not in found]
    return ", ".join(f"{table} ({', '.join(names)})" for table, names in rules.items())
