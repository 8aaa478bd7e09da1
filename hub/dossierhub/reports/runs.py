"""Parameterised report runs, start to end: refused or queued (requests.py), executed on a
kernel running as the dossier's report identity (execute.py), its published tables collected
(collect.py), checked (checks.py, differencing.py), drawn (render.py), and recorded with a
truthful status (records.py); docs/reports.md.

reports/<id>/<run-id>/ (state/home.py RunFolder) holds the executed notebook, report.html (what
viewers read: the checked tables and charts only, airlock.py), review.html (every output,
marked), outputs.json (the outputs' ids), published/ tables and charts, checks.json and the
run record. While a run is in progress its folder is root's alone; the kernel writes only its
scratch folder (kernelpool.py). A finished run belongs to root with the workspace's group,
read-only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dossierhub.isolation.unixusers import remove_scratch
from dossierhub.reports.checks import run_checks
from dossierhub.reports.collect import collect_published, file_hashes, lock_down
from dossierhub.reports.differencing import differencing_checks
from dossierhub.reports.execute import execute
from dossierhub.reports.kernelpool import KernelPool
from dossierhub.reports.records import (
    RunStatus,
    is_success,
    needs_justification,
    write_checks,
    write_record,
)
from dossierhub.reports.render import assemble
from dossierhub.reports.requests import PendingRun, start_run
from dossierhub.state.audit import AuditLog
from dossierhub.state.home import Home


@dataclass
class RunOutcome:
    run_id: str
    status: RunStatus
    folder: Path
    error: str | None

    @property
    def succeeded(self) -> bool:
        return is_success(self.status)


def run_report(
    home: Home,
    dossier_id: str,
    template_name: str,
    user: str,
    raw_params: dict[str, str],
    *,
    timeout: float | None = None,
    pool: KernelPool | None = None,
) -> RunOutcome:
    """One run, start to end (what `report run` does): decided and audited as report.run."""
    from dossierhub.state.decisions import decide, run_facts  # decisions builds on this module

    pending = decide(
        home,
        "report.run",
        user,
        dossier_id,
        lambda: start_run(home, dossier_id, template_name, user, raw_params),
        run_facts,
        template=template_name,
    )
    return execute_run(pending, timeout=timeout, pool=pool)


def execute_run(
    pending: PendingRun, *, timeout: float | None = None, pool: KernelPool | None = None
) -> RunOutcome:
    """A queued run, to its end: execute (in a slot of the dossier's queue), collect, check,
    draw, record, lock down, audit. Whatever breaks, the run ends with a truthful status."""
    run = pending.run
    limit = timeout or pending.template.timeout_seconds
    scratch, status, error = execute(pending, pool, limit)
    try:
        outputs = [run.notebook.name] if run.notebook.exists() else []
        outputs += collect_published(scratch, run)
        checks = _check(pending) if is_success(status) else []
        checks += assemble(pending.home, run, pending.record, checks, status)
    except Exception as exc:
        status, error, outputs, checks = "failed", f"{type(exc).__name__}: {exc}"[:500], [], []
    _record_end(pending, status, error, checks)
    remove_scratch(scratch)  # fd-based: follows no link the kernel made
    AuditLog(pending.home).append(
        "report.finished",
        actor=pending.user,
        dossier=pending.dossier_id,
        run=pending.run_id,
        status=status,
        error=error,
        checks_passed=pending.record.checks_passed,
        outputs=outputs,
    )
    return RunOutcome(pending.run_id, status, run.path, error)


def _check(pending: PendingRun) -> list[dict[str, Any]]:
    """The output checks of a succeeded run's tables, and differencing against releases."""
    home, dossier_id, run = pending.home, pending.dossier_id, pending.run
    return run_checks(home, dossier_id, run, pending.extracts) + differencing_checks(
        home, dossier_id, run
    )


def _record_end(
    pending: PendingRun, status: RunStatus, error: str | None, checks: list[dict[str, Any]]
) -> None:
    """The run's final record and checks, then its folder locked down."""
    run = pending.run
    passed = is_success(status) and not needs_justification(checks)
    pending.record = pending.record.finish(status, error, file_hashes(run), passed)
    write_checks(run, checks)
    write_record(run, pending.record)
    lock_down(pending.home, run, pending.dossier_id)
