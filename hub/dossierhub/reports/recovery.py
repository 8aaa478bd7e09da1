"""Crash recovery: a run whose process is gone without finishing it (killed, or the machine
restarted) is recorded as failed when it is next read, so no status stays `running` forever.
There is no daemon to do it: every reader of a run record goes through current_record.

A run executed as a Kubernetes Job goes on without its process; the service takes it up as
it starts, before it answers any reader (reports/resume.py), and settles here only what it
cannot take up."""

from __future__ import annotations

import contextlib
import os

from dossierhub.reports.records import RunRecord, read_record, write_record
from dossierhub.state.audit import AuditLog
from dossierhub.state.home import Home, RunFolder


def current_record(home: Home, run: RunFolder) -> RunRecord:
    """The run's record, with a run whose process died settled as failed (and audited as
    report.finished, once: only the hub side can write the record, so only it records)."""
    record = read_record(run)
    pid = record.runner_pid
    if not record.in_progress or not pid or _alive(pid):
        return record
    failed = record.abandon(pid)
    with contextlib.suppress(OSError):  # only the hub side may write; readers just see it
        settle(home, run, failed)
    return failed


def settle(home: Home, run: RunFolder, failed: RunRecord) -> None:
    """Write a run's failed record and audit it as report.finished (as execute_run would
    have): for a run whose process died (current_record) or that cannot be taken up again
    after a service restart (resume.py)."""
    write_record(run, failed)
    AuditLog(home).append(
        "report.finished",
        actor=failed.user,
        dossier=failed.dossier,
        run=failed.run_id,
        status="failed",
        error=failed.error,
    )


def runner_gone(record: RunRecord) -> bool:
    """The process that runs an in-progress run is gone, or its number is this process's
    own (a service that has just started follows no run yet: in a restarted pod it has the
    number its predecessor had, usually 1)."""
    pid = record.runner_pid
    return not pid or pid == os.getpid() or not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True
