"""A run's pages, drawn by this process from the run's own files (airlock.py says what each
shows): report.html when the run ends (a preview of what viewers will read) and review.html
when someone of the team first opens it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from filelock import FileLock

from dossierhub.reports import airlock
from dossierhub.reports.collect import file_hashes, lock_down
from dossierhub.reports.records import RunRecord, RunStatus, is_success, read_checks
from dossierhub.reports.recovery import current_record
from dossierhub.state.home import Home, RunFolder
from dossierhub.state.problems import ReportRefused


def assemble(
    home: Home,
    run: RunFolder,
    record: RunRecord,
    checks: list[dict[str, Any]],
    status: RunStatus,
) -> list[dict[str, Any]]:
    """The outputs' index for every run with a notebook; for a succeeded run also the charts'
    checks and the preview of what viewers will read (report.html). Returns the charts'
    check results. (review.html is drawn when first opened: review_page.)"""
    if not run.notebook.exists():
        return []
    airlock.write_outputs_index(run)
    if not is_success(status):
        return []
    ctx = airlock.context_for(home, record.dossier, run, checks)
    charts = airlock.chart_checks(ctx.artefacts, checks)
    ctx.checks.update({c["table"]: c for c in charts})
    airlock.render_viewer(home, run, record, ctx)
    return charts


def review_page(home: Home, dossier_id: str, run_id: str) -> Path | None:
    """The run's review.html, drawn the first time someone of the team opens it (most runs are
    never reviewed: drawing every notebook with its code would add a third to a run started
    on a warm kernel). Drawn from the files the run recorded, which are checked against their
    hashes first; None while the run has no notebook or is not finished."""
    run = home.run_folder(dossier_id, run_id)
    if run.review_html.exists():
        return run.review_html
    record = current_record(home, run)
    if record.in_progress or not run.notebook.exists():
        return None
    if file_hashes(run) != record.outputs:
        raise ReportRefused(
            f"run {run_id}'s files differ from what the run recorded: no review drawn",
            reason="conflict",
        )
    with FileLock(str(home.review_lock_file(dossier_id, run_id))):
        if not run.review_html.exists():
            ctx = airlock.context_for(home, dossier_id, run, read_checks(run))
            airlock.render_review(home, run, record, ctx)
            lock_down(home, run, dossier_id)
    return run.review_html
