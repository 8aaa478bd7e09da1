"""A dossier's runs as the faces show them (`report list`/`show`, the pages, the API): read
through their records (records.py), with runs whose process died settled first
(recovery.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dossierhub.reports import airlock
from dossierhub.reports.records import ReleaseState, RunRecord, read_checks, release_state
from dossierhub.reports.recovery import current_record
from dossierhub.state.home import Home, RunFolder
from dossierhub.state.problems import ReportRefused

ROW_FIELDS = ("run_id", "template", "status", "user", "queued", "started", "finished")


@dataclass(frozen=True)
class RunSummary:
    """A run in a dossier's list: its record and its release state (records.release_state:
    a release.json that cannot be read still makes the run released, and the list says so
    rather than refuse the whole list; `audit verify` reports it)."""

    record: RunRecord
    release: ReleaseState

    @property
    def released(self) -> bool:
        return self.release.released

    def as_json(self) -> dict[str, Any]:
        """The record with its release, as `report list --json` prints it."""
        return {**self.record.as_json(), "released": self.release.as_json()}

    def row(self) -> dict[str, Any]:
        """A line of the runs table of the pages and the API: what the record says, and what
        the rules make of it (in_progress, succeeded, released_words), so no face decides."""
        record = self.record
        return {
            **{name: getattr(record, name) for name in ROW_FIELDS},
            "parameters": record.parameters,
            "error": record.error,
            "checks_passed": record.checks_passed,
            "checks_failed": record.checks_failed,
            "released": self.release.as_json(),
            "released_words": self.release.words(),
            "in_progress": record.in_progress,
            "succeeded": record.succeeded,
        }


@dataclass(frozen=True)
class RunDetail:
    """One run: its record, the output checks, the unchecked outputs, its release state."""

    folder: RunFolder
    record: RunRecord
    checks: list[dict[str, Any]]
    unchecked: list[dict[str, Any]]
    release: ReleaseState

    @property
    def released(self) -> bool:
        return self.release.released

    def as_json(self) -> dict[str, Any]:
        """As `report show` prints it."""
        return {
            "provenance": self.record.as_json(),
            "folder": str(self.folder.path),
            "checks": self.checks,
            "unchecked": self.unchecked,
            "released": self.release.as_json(),
        }


def list_runs(home: Home, dossier_id: str) -> list[RunSummary]:
    """Oldest first (run ids begin with their UTC start time)."""
    parent = home.runs_dir(dossier_id)
    runs = []
    for path in sorted(parent.iterdir()) if parent.is_dir() else []:
        run = home.run_folder(dossier_id, path.name)
        if run.record.exists():
            runs.append(_summary(home, run))
    return runs


def _summary(home: Home, run: RunFolder) -> RunSummary:
    return RunSummary(current_record(home, run), release_state(run))


def show_run(home: Home, dossier_id: str, run_id: str) -> RunDetail:
    """One run; ReportRefused (not_found) when there is none, (conflict) when one of its
    records is not one dossierhub wrote (an unreadable release.json is reported in its
    release state instead: the run is released all the same)."""
    run = home.run_folder(dossier_id, run_id)
    if not run.record.exists():
        raise ReportRefused(f"dossier {dossier_id} has no run '{run_id}'", reason="not_found")
    return RunDetail(
        run,
        current_record(home, run),
        read_checks(run),
        airlock.unchecked_outputs(run),
        release_state(run),
    )
