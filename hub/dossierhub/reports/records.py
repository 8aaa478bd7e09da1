"""The records of a report run's folder, each read and written here only: the run record
(provenance.json) with its states, the output checks (checks.json) and the release
(release.json). Files are replaced atomically (state/atomic.py), so a reader sees the old
record or the new, never a torn one.

A run moves through its states one way only:

    queued -> running -> succeeded
       |         \\-----> failed
       \\-------------->  failed   (it broke before its kernel started, or its process died)

`succeeded` and `failed` are final. Each move is a method of RunRecord that refuses any
other (ImpossibleTransition), so no code path can, say, mark a failed run succeeded or start
a finished one again. The JSON shape is what earlier versions wrote: fields a newer version
added are optional, and keys this version does not know are kept as they are.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from dossierhub.state.atomic import write_json
from dossierhub.state.home import RunFolder
from dossierhub.state.problems import ReportRefused

M = TypeVar("M", bound=BaseModel)

RunStatus = Literal["queued", "running", "succeeded", "failed"]
IN_PROGRESS: tuple[RunStatus, ...] = ("queued", "running")
FINISHED: tuple[RunStatus, ...] = ("succeeded", "failed")

NEXT: dict[RunStatus, tuple[RunStatus, ...]] = {
    "queued": ("running", "failed"),
    "running": ("succeeded", "failed"),
    "succeeded": (),
    "failed": (),
}
"""The states a run in each state may move to; nothing leaves a finished run."""


def is_in_progress(status: RunStatus) -> bool:
    """Queued or running: not finished yet (the pages poll it, the panel shows progress)."""
    return status in IN_PROGRESS


def is_success(status: RunStatus) -> bool:
    """The run ended and its notebook ran to the end: its tables are checked and it may be
    released (every other status may not)."""
    return status == "succeeded"


class ImpossibleTransition(RuntimeError):
    """A run asked to move to a state it cannot reach from its own (a bug, never user input)."""


def now() -> str:
    """A record's time stamp: UTC, to the millisecond, as ISO 8601 text."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


class RunRecord(BaseModel):
    """provenance.json: which template with which parameters, by whom, on which extracts
    (their hashes and generation), when, and how it ended. Frozen: a transition returns the
    next record, which the caller writes (write_record)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    run_id: str
    dossier: str
    template: str
    user: str
    status: RunStatus
    template_origin: str | None = None
    template_sha256: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    queued: str | None = None
    started: str | None = None
    executed: str | None = None  # the kernel is gone: the dossier's run slot is free again
    finished: str | None = None
    error: str | None = None
    extracts: dict[str, str] = Field(default_factory=dict)  # view -> sha256 of its Parquet
    extracts_generation: str | None = None
    runner_pid: int | None = None  # the process that runs it: gone unfinished = failed
    outputs: dict[str, str] | None = None  # file -> sha256, from the end of the run
    checks_passed: bool | None = None

    @property
    def in_progress(self) -> bool:
        return is_in_progress(self.status)

    @property
    def succeeded(self) -> bool:
        return is_success(self.status)

    @property
    def checks_failed(self) -> bool:
        """Succeeded, but an output check failed: released only with a justification
        (needs_justification, of which `checks_passed` is the negation). The faces mark it
        "succeeded · checks failed" rather than a plain success."""
        return self.succeeded and self.checks_passed is False

    def start(self) -> RunRecord:
        """queued -> running: the run holds a slot of its dossier's queue."""
        return self._move("running", started=now())

    def kernel_done(self) -> RunRecord:
        """Still running, the kernel stopped: what follows (collect, check, render) needs none."""
        if self.status != "running":
            raise ImpossibleTransition(
                f"run {self.run_id} of dossier {self.dossier} is {self.status}, not running: "
                "its kernel cannot have finished"
            )
        return self.model_copy(update={"executed": now()})

    def finish(
        self,
        status: RunStatus,
        error: str | None,
        outputs: dict[str, str],
        checks_passed: bool,
    ) -> RunRecord:
        """The end of a run: running -> succeeded or failed, or queued -> failed when it broke
        before its kernel started; `outputs` are the hashes of the folder's files."""
        return self._move(
            status, error=error, finished=now(), outputs=outputs, checks_passed=checks_passed
        )

    def abandon(self, pid: int) -> RunRecord:
        """queued or running -> failed: the process `pid` running it ended before it did."""
        return self.lost(f"the process running it (pid {pid}) ended before the run finished")

    def lost(self, why: str) -> RunRecord:
        """queued or running -> failed: the run cannot be followed to its end, for `why`."""
        return self._move("failed", finished=now(), error=why, checks_passed=False)

    def taken_up(self, pid: int) -> RunRecord:
        """Still running, now followed by the process `pid` (a service that took it up after
        the one that started it stopped: reports/resume.py)."""
        if self.status != "running":
            raise ImpossibleTransition(
                f"run {self.run_id} of dossier {self.dossier} is {self.status}, not running: "
                "there is nothing to take up"
            )
        return self.model_copy(update={"runner_pid": pid})

    def _move(self, status: RunStatus, **changes: Any) -> RunRecord:
        if status not in NEXT[self.status]:
            raise ImpossibleTransition(
                f"run {self.run_id} of dossier {self.dossier} is {self.status}; it cannot "
                f"become {status}"
            )
        return self.model_copy(update={"status": status, **changes})

    def as_json(self) -> dict[str, Any]:
        """The record as provenance.json holds it (and `report show` and the API show it)."""
        return self.model_dump(mode="json")


def queued_record(
    run_id: str,
    dossier: str,
    template: str,
    user: str,
    *,
    template_origin: str,
    template_sha256: str,
    parameters: dict[str, Any],
    extracts: dict[str, str],
    extracts_generation: str | None,
    runner_pid: int,
) -> RunRecord:
    """A new run's record: queued now, nothing started yet."""
    return RunRecord(
        run_id=run_id,
        dossier=dossier,
        template=template,
        user=user,
        status="queued",
        template_origin=template_origin,
        template_sha256=template_sha256,
        parameters=parameters,
        queued=now(),
        extracts=extracts,
        extracts_generation=extracts_generation,
        runner_pid=runner_pid,
    )


def read_record(run: RunFolder) -> RunRecord:
    """The run's record as written; ReportRefused (conflict), naming the file, when it is not
    one dossierhub wrote. (recovery.current_record also settles a run whose process died.)"""
    return _parse(RunRecord, run.record, run)


def write_record(run: RunFolder, record: RunRecord) -> None:
    write_json(run.record, record.as_json(), indent=2)


# ---------------------------------------------------------------- checks.json


class CheckFinding(BaseModel):
    """One finding on a table or chart: which rule, which column and rows (never the values),
    what a reviewer reads, and whether it blocks (`fail`: a justification is needed) or is
    only shown (`review`). Findings of the hub's own checks (differencing, charts) were
    written without a severity: they fail."""

    model_config = ConfigDict(extra="allow", frozen=True)

    rule: str
    column: str | None = None
    message: str
    rows: list[int] = Field(default_factory=list)
    severity: Literal["fail", "review"] = "fail"


class CheckEntry(BaseModel):
    """One entry of checks.json: a table's (or, with kind "chart", a chart's) verdict and its
    findings, from reports/checks.py, differencing.py or airlock.chart_checks."""

    model_config = ConfigDict(extra="allow", frozen=True)

    table: str
    passed: bool
    findings: list[CheckFinding] = Field(default_factory=list)
    kind: Literal["table", "chart"] | None = None

    def as_json(self) -> dict[str, Any]:
        """The entry as checks.json holds it (and the API's `checks` field shows it): the keys
        it was made or read with, so files of earlier versions keep their shape."""
        return self.model_dump(mode="json", exclude_unset=True)


def check_entry(
    table: str, passed: bool, findings: list[dict[str, Any]], kind: str | None = None
) -> dict[str, Any]:
    """A checks.json entry, made through the model (so every writer writes the same shape)."""
    entry: dict[str, Any] = {"table": table, "passed": passed, "findings": findings}
    if kind is not None:
        entry["kind"] = kind
    return CheckEntry.model_validate(entry).as_json()


_CHECKS = TypeAdapter(list[CheckEntry])


def read_check_entries(run: RunFolder) -> list[CheckEntry]:
    """The output checks' results, one entry per table or chart (none before the run
    finished); ReportRefused (conflict), naming the file, when it is not what was written."""
    if not run.checks.exists():
        return []
    try:
        return _CHECKS.validate_json(run.checks.read_bytes())
    except ValidationError as exc:
        raise malformed(exc, run.checks, run) from None


def read_checks(run: RunFolder) -> list[dict[str, Any]]:
    """read_check_entries as JSON objects (what the API's `checks` field and release read)."""
    return [entry.as_json() for entry in read_check_entries(run)]


def write_checks(run: RunFolder, checks: list[dict[str, Any]]) -> None:
    """Checked through the model before it is written: a writer's slip fails here, loudly,
    not later as a 409 on every read."""
    entries = _CHECKS.validate_python(checks)
    write_json(run.checks, [entry.as_json() for entry in entries], indent=2)


def needs_justification(checks: list[dict[str, Any]]) -> bool:
    """The release rule on output checks: any check that failed means a release needs a
    written justification (and the run's record says its checks did not pass). Decided here
    only: release_run refuses with it, the pages ask for the field with it, the record's
    `checks_passed` is its negation."""
    return any(not c["passed"] for c in checks)


# ---------------------------------------------------------------- release.json


class Release(BaseModel):
    """release.json: who released the run, when, why despite failed checks, which unchecked
    outputs they included, and the audit head it was released under (audit verify)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    by: str
    at: str | None = None
    justification: str | None = None
    failed_checks: list[str] = Field(default_factory=list)
    differencing: list[dict[str, Any]] = Field(default_factory=list)
    included: list[dict[str, str]] = Field(default_factory=list)
    report_sha256: str | None = None
    audit_head: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_unset=True)


def is_released(run: RunFolder) -> bool:
    """What releases a run: its release.json is there, readable or not. One meaning for every
    face and rule (viewers read it, differencing compares with it, a second release and a
    rollback below it are refused); an unreadable one is reported, never ignored, and
    `audit verify` names it."""
    return run.release.exists()


@dataclass(frozen=True)
class ReleaseState:
    """Whether a run is released and what its release record says. `unreadable` is the
    problem with a release.json that is not a record dossierhub wrote: the run is released
    all the same (is_released), and the faces say so rather than fail."""

    release: Release | None = None
    unreadable: str | None = None

    @property
    def released(self) -> bool:
        return self.release is not None or self.unreadable is not None

    def words(self) -> str | None:
        """How every face says it: None while unreleased."""
        if self.release is not None:
            return f"released by {self.release.by}"
        if self.unreadable is not None:
            return f"released (record unreadable: {self.unreadable})"
        return None

    def as_json(self) -> dict[str, Any] | None:
        """The `released` field of `report list/show --json` and the API: the record, or
        {"unreadable": why}; None while unreleased."""
        if self.unreadable is not None:
            return {"unreadable": self.unreadable}
        return self.release.as_json() if self.release is not None else None


def release_state(run: RunFolder) -> ReleaseState:
    """The run's release as ReleaseState: never refuses."""
    if not is_released(run):
        return ReleaseState()
    try:
        return ReleaseState(_parse(Release, run.release, run))
    except ReportRefused as exc:
        return ReleaseState(unreadable=str(exc))
    except (OSError, UnicodeDecodeError) as exc:
        return ReleaseState(unreadable=f"{_where(run, run.release.name)}: {exc}")


def read_release(run: RunFolder) -> Release | None:
    """The run's release, None while it is not released; ReportRefused (conflict) when its
    release.json is not one dossierhub wrote (release_state tells rather than refuses)."""
    if not is_released(run):
        return None
    return _parse(Release, run.release, run)


def write_release(run: RunFolder, release: Release) -> None:
    write_json(run.release, release.as_json(), indent=2)


def _parse(model: type[M], path: Path, run: RunFolder) -> M:
    try:
        return model.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        raise malformed(exc, path, run) from None


def malformed(exc: ValidationError, path: Path, run: RunFolder) -> ReportRefused:
    """A file that does not validate is refused (409), naming the file and the first field that
    is wrong (a file that is not JSON at all fails validation too)."""
    problem = exc.errors()[0]
    at = ".".join(str(p) for p in problem["loc"]) or "the file"
    return ReportRefused(
        f"{_where(run, path.name)} is not a record dossierhub wrote ({at}: {problem['msg']})",
        reason="conflict",
    )


def _where(run: RunFolder, name: str) -> str:
    return f"reports/{run.path.parent.name}/{run.run_id}/{name}"
