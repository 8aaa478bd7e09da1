"""Report runs a stopped service left in progress, taken up by the next one
(`reports.backend: kubernetes`; docs/operating-on-kubernetes.md).

A run executed as a Job goes on in the cluster when the service that started it stops (its
pod rolled, evicted or killed): that service records nothing (jobs.HandedOver). The next
service, as it starts and before it answers anyone, looks at every run recorded in progress
whose process is gone (recovery.runner_gone) and:

- a `running` run whose Job is still there (its label dossierhub.io/run): takes it up. The
  record names the new service as its runner, and a worker then waits for the Job's verdict,
  deletes it, collects, checks, draws and records as if it had started the run
  (jobs.resume_job, runs.finish_run);
- a `running` run whose Job is gone: failed, saying so (its outcome is nowhere to be read);
- a `queued` run (it waited for a slot of its dossier, no Job made yet): failed, saying the
  service stopped before the run started.

One service collects a run: the Deployment has one replica and the Recreate strategy, so a
new service starts once the old one is gone, and a stopping service hands its Jobs over
rather than collect them. Runs of the local backend are not taken up: their kernel ended
with their process, and current_record settles them when next read.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from dossier_kernel.provenance import ExtractProvenance, ProvenanceError, read_provenance
from dossierhub.data.extracts import current_provenance
from dossierhub.data.generations import kept_generation
from dossierhub.reports.jobs import FoundJob, find_job, resume_job
from dossierhub.reports.records import RunRecord, read_record, write_record
from dossierhub.reports.recovery import runner_gone, settle
from dossierhub.reports.requests import PendingRun
from dossierhub.reports.runs import RunOutcome, finish_run
from dossierhub.state.home import Home, RunFolder
from dossierhub.state.problems import ReportRefused
from dossierhub.state.templates import Template

log = logging.getLogger("dossierhub.reports.resume")

NOT_STARTED = (
    "the service stopped before the run started (it waited for a slot of its dossier); "
    "start it again"
)
JOB_GONE = (
    "the service following the run stopped, and the run's Job was gone when the next one "
    "started: its outcome cannot be read; start it again"
)


@dataclass
class TakenUp:
    """A run whose Job this service now follows: finish it with `finish_taken_up`."""

    pending: PendingRun
    job: FoundJob


def take_up_runs(home: Home) -> list[TakenUp]:
    """Every run left in progress by a service that stopped: taken up (returned, its record
    naming this process) or settled as failed with the reason. Call it once, as the service
    starts, before it answers a request or starts a run of its own."""
    taken: list[TakenUp] = []
    for run in _runs_in_progress(home):
        try:
            found = _take_up(home, run)
        except Exception as exc:  # the API server down, RBAC missing: the service starts all
            # the same; the run stays as it is for the next start (or a reader settles it)
            log.error("run %s of dossier %s not taken up: %s", run.run_id, _dossier(run), exc)
            continue
        if found is not None:
            taken.append(found)
    return taken


def finish_taken_up(taken: TakenUp) -> RunOutcome:
    """A taken-up run to its end: its Job's verdict, the Job deleted, the notebook collected,
    then checks, drawing, record and audit as for any run."""
    pending = taken.pending
    try:
        status, error = resume_job(pending.home, pending.run, taken.job)
    except Exception as exc:  # never left `running` under a live service (HandedOver passes)
        status, error = "failed", f"the run could not be taken up: {exc}"[:500]
    pending.record = pending.record.kernel_done()
    return finish_run(pending, taken.job.scratch, status, error)


def _take_up(home: Home, run: RunFolder) -> TakenUp | None:
    record = read_record(run)
    if not record.in_progress or not runner_gone(record):
        return None
    if record.status == "queued":
        settle(home, run, record.lost(NOT_STARTED))
        return None
    job = find_job(home, record.dossier, record.run_id)
    if job is None:
        settle(home, run, record.lost(JOB_GONE))
        return None
    record = record.taken_up(os.getpid())
    write_record(run, record)
    log.info("run %s of dossier %s taken up: Job %s", record.run_id, record.dossier, job.name)
    return TakenUp(_pending(home, run, record), job)


def _pending(home: Home, run: RunFolder, record: RunRecord) -> PendingRun:
    """The run as execute_run holds it, rebuilt from its record: the template is not read
    again (its Job has it; the record names it), the extracts are the generation it read."""
    template = Template(
        name=record.template,
        path=Path(record.template),
        origin=record.template_origin or "",
        parameters=(),
        sha256=record.template_sha256 or "",
    )
    return PendingRun(
        home,
        record.dossier,
        run,
        template,
        dict(record.parameters),
        record.user,
        record,
        _extracts(home, record),
        started=True,
    )


def _extracts(home: Home, record: RunRecord) -> ExtractProvenance | None:
    """The provenance of the extracts the run read (apply keeps the generation before the
    current one), else the current one, as the run's checks judge it (checks.run_rules)."""
    base = home.extract_dir(record.dossier)
    generation = record.extracts_generation
    kept = kept_generation(base, generation) if generation else None
    try:
        return read_provenance(kept) if kept is not None else current_provenance(base)
    except ProvenanceError as exc:
        log.warning("run %s: its extracts' provenance cannot be read: %s", record.run_id, exc)
        return None


def _runs_in_progress(home: Home) -> list[RunFolder]:
    """Every run folder whose record says queued or running (read again in _take_up)."""
    found = []
    for folder in sorted(home.reports_dir.glob("*/*/")):
        run = RunFolder(folder)
        try:
            if run.record.is_file() and read_record(run).in_progress:
                found.append(run)
        except (OSError, ReportRefused) as exc:
            log.warning("%s: its record cannot be read: %s", folder, exc)
    return found


def _dossier(run: RunFolder) -> str:
    return run.path.parent.name
