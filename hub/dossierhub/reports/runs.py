"""Parameterised report runs: papermill on a kernel running as the dossier's report identity,
truthful status, output checks, and a four-eyes release (docs/reports.md).

reports/<id>/<run-id>/ holds the executed notebook, report.html (what viewers read: the checked
tables and charts only, airlock.py), review.html (every output, marked), outputs.json (the
outputs' ids), published/ tables and charts, checks.json and provenance.json. While a run is
in progress its folder is root's alone
(papermill writes the notebook there, from this process); the kernel writes only its scratch
folder (kernelpool.py), from which the published tables are copied through no-follow
descriptors (safefs.py). A finished run belongs to root with the workspace's group, read-only.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from dossier_kernel.provenance import ExtractProvenance
from dossierhub.data.extracts import current_provenance
from dossierhub.isolation.safefs import UnsafeFile, opened_dir, read_regular, write_new
from dossierhub.isolation.unixusers import identities, isolation_enabled
from dossierhub.reports import airlock
from dossierhub.reports.checks import run_checks
from dossierhub.reports.differencing import differencing_checks, is_differencing, release_lock
from dossierhub.reports.kernelpool import (
    KernelPool,
    ReadyKernel,
    new_scratch,
    start_kernel,
    stop_kernel,
)
from dossierhub.state.atomic import write_json
from dossierhub.state.audit import AuditLog
from dossierhub.state.directory import read_directory
from dossierhub.state.home import Home
from dossierhub.state.problems import RefusedError, ReportRefused
from dossierhub.state.roles import Denied, may_release, may_run
from dossierhub.state.settings import load_settings
from dossierhub.state.templates import Template, TemplateError, coerce, load_template
from dossierhub.state.yamlfile import read_yaml_mapping


@dataclass
class RunOutcome:
    run_id: str
    status: str
    folder: Path
    error: str | None


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def runs_dir(home: Home, dossier_id: str) -> Path:
    return home.reports_dir / dossier_id


# ---------------------------------------------------------------- run


def prepare_run(
    home: Home, dossier_id: str, template_name: str, user: str, raw_params: dict[str, str]
) -> tuple[Template, dict[str, Any]]:
    """Every refusal happens here, before any kernel starts."""
    entry = next((e for e in read_directory(home) if e.id == dossier_id), None)
    if entry is None:
        raise ReportRefused(f"there is no applied dossier '{dossier_id}'", reason="not_found")
    denied = may_run(entry, user)
    if denied is not None:
        raise ReportRefused(denied.why, reason=denied.reason)
    try:
        manifest = read_yaml_mapping(
            home.dossiers_dir / f"{dossier_id}.yaml", f"dossiers/{dossier_id}.yaml"
        )
    except RefusedError as exc:
        raise ReportRefused(f"{exc} (ask the admin to fix it)", reason="conflict") from None
    allowed = manifest.get("templates") or []
    if template_name not in allowed:
        message = (
            f"template '{template_name}' is not allowed for dossier "
            f"{dossier_id}; its manifest lists: {', '.join(allowed) or 'none'}"
        )
        raise ReportRefused(message, fields={"template": message})
    provenance = current_provenance(home.extract_dir(dossier_id))
    if provenance is None:
        raise ReportRefused(
            f"dossier {dossier_id} has no extracts: run `dossierhub apply`", reason="conflict"
        )
    try:
        template = load_template(home, template_name)
        missing = [v for v in template.views if v not in provenance.views]
        if missing:
            raise TemplateError(
                f"template '{template_name}' needs the view(s) "
                f"{', '.join(missing)}, which dossier {dossier_id} lacks"
            )
        values = coerce(template, raw_params, sorted(provenance.views))
    except TemplateError as exc:
        raise ReportRefused(str(exc), fields=exc.fields) from None
    return template, values


@dataclass
class PendingRun:
    """A run that passed every check and is queued: its folder and provenance exist."""

    home: Home
    dossier_id: str
    run_id: str
    folder: Path
    template: Template
    values: dict[str, Any]
    user: str
    provenance: dict[str, Any]
    extracts: ExtractProvenance | None
    started: bool = False  # papermill writes report.ipynb in the run folder from then on


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


def start_run(
    home: Home, dossier_id: str, template_name: str, user: str, raw_params: dict[str, str]
) -> PendingRun:
    """Refuse or queue: after this returns, the run has an id, a folder and a `queued`
    provenance. The caller records the decision (decisions.decide, as report.run)."""
    template, values = prepare_run(home, dossier_id, template_name, user, raw_params)
    run_id = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S-") + secrets.token_hex(3)
    folder = runs_dir(home, dossier_id) / run_id
    _make_dirs(home, dossier_id, folder)
    extracts = current_provenance(home.extract_dir(dossier_id))
    provenance: dict[str, Any] = {
        "run_id": run_id,
        "dossier": dossier_id,
        "template": template.name,
        "template_origin": template.origin,
        "template_sha256": template.sha256,
        "parameters": values,
        "user": user,
        "queued": _now(),
        "started": None,
        "finished": None,
        "status": "queued",
        "error": None,
        "extracts": {v: e.sha256 for v, e in extracts.views.items()} if extracts else {},
        "extracts_generation": extracts.generation if extracts else None,
        "runner_pid": os.getpid(),
    }
    _write_json(folder / "provenance.json", provenance)
    return PendingRun(
        home, dossier_id, run_id, folder, template, values, user, provenance, extracts
    )


def execute_run(
    pending: PendingRun, *, timeout: float | None = None, pool: KernelPool | None = None
) -> RunOutcome:
    """Wait for a slot in the dossier's queue, execute, check, render, lock down, audit.

    papermill runs in this process, through its API, on a Dossier kernel running as the
    dossier's identity over its extracts only: one started ahead of time when `pool` has one
    for this dossier, else one started now (inside the slot, so the queue bounds kernels too).
    """
    home, dossier_id, folder = pending.home, pending.dossier_id, pending.folder
    template, values, provenance = pending.template, pending.values, pending.provenance
    generation = pending.extracts.generation if pending.extracts else None
    ready = pool.take(dossier_id, generation) if pool is not None else None
    scratch = ready.scratch if ready is not None else new_scratch(home, dossier_id)
    limit = timeout or template.timeout_seconds
    # papermill, polars and nbconvert take two seconds to import: do it while the kernel starts
    warm = threading.Thread(target=_import_renderer, daemon=True)
    warm.start()
    try:
        with run_slot(home, dossier_id):
            provenance.update(status="running", started=_now())
            _write_json(folder / "provenance.json", provenance)
            pending.started = True
            if ready is None:
                manager = start_kernel(home, dossier_id, scratch, warm=False)
                ready = ReadyKernel(dossier_id, manager, scratch, generation)
            status, error = _execute_on(ready, template, values, limit, folder)
            provenance["executed"] = _now()  # the kernel is gone: the slot is free again
        outputs = ["report.ipynb"] if (folder / "report.ipynb").exists() else []
        outputs += _collect(scratch, folder)
        checks = (
            run_checks(home, dossier_id, folder, pending.extracts) if status == "succeeded" else []
        )
        if status == "succeeded":
            checks += differencing_checks(home, dossier_id, folder)
        if outputs and outputs[0] == "report.ipynb":
            checks += _assemble(home, folder, provenance, checks, status)
    except Exception as exc:  # whatever broke, the run ends with a truthful status
        status, error, outputs, checks = "failed", f"{type(exc).__name__}: {exc}"[:500], [], []
    provenance.update(
        status=status,
        error=error,
        finished=_now(),
        outputs=_hashes(folder),
        checks_passed=all(c["passed"] for c in checks) if checks else status == "succeeded",
    )
    _write_json(folder / "checks.json", checks)
    _write_json(folder / "provenance.json", provenance)
    _lock_down(home, folder, dossier_id)
    shutil.rmtree(scratch, ignore_errors=True)  # fd-based: follows no link the kernel made
    AuditLog(home).append(
        "report.finished",
        actor=pending.user,
        dossier=dossier_id,
        run=pending.run_id,
        status=status,
        error=error,
        checks_passed=provenance["checks_passed"],
        outputs=outputs,
    )
    return RunOutcome(pending.run_id, status, folder, error)


def review_page(home: Home, dossier_id: str, run_id: str) -> Path | None:
    """The run's review.html, drawn the first time someone of the team opens it (most runs are
    never reviewed: drawing every notebook with its code would add a third to a run started
    on a warm kernel). Drawn from the files the run recorded, which are checked against their
    hashes first; None while the run has no notebook or is not finished."""
    folder = runs_dir(home, dossier_id) / run_id
    page = folder / "review.html"
    if page.exists():
        return page
    provenance = _read_provenance(home, folder / "provenance.json")
    if provenance["status"] in ("queued", "running") or not (folder / "report.ipynb").exists():
        return None
    if _hashes(folder) != provenance.get("outputs"):
        raise ReportRefused(
            f"run {run_id}'s files differ from what the run recorded: no review drawn",
            reason="conflict",
        )
    checks = (
        json.loads((folder / "checks.json").read_text())
        if (folder / "checks.json").exists()
        else []
    )
    with FileLock(str(home.locks_dir / f"review-{dossier_id}-{run_id}.lock")):
        if not page.exists():
            ctx = airlock.context_for(home, dossier_id, folder, checks)
            airlock.render_review(home, folder, provenance, ctx)
            _lock_down(home, folder, dossier_id)
    return page


def progress(pending: PendingRun) -> tuple[int, int] | None:
    """(code cells done, code cells) of a running run, from the notebook papermill saves
    after every cell; None before the first save."""
    if not pending.started:
        return None
    output = pending.folder / "report.ipynb"
    try:
        cells = json.loads(output.read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError):
        return None
    code = [c for c in cells if c.get("cell_type") == "code"]
    done = [c for c in code if c.get("metadata", {}).get("papermill", {}).get("end_time")]
    return len(done), len(code)


@contextlib.contextmanager
def run_slot(home: Home, dossier_id: str) -> Iterator[int]:
    """The per-dossier run queue: at most `reports.parallel_per_dossier` runs at once.

    One lock file per slot; a run waits (status `queued`) until it holds one. The locks are
    released by the kernel when a process dies, so a killed run never blocks the queue.
    """
    slots = load_settings(home).reports.parallel_per_dossier
    folder = home.locks_dir / "runs" / dossier_id
    folder.mkdir(parents=True, exist_ok=True)
    while True:
        for slot in range(slots):
            lock = FileLock(str(folder / f"slot-{slot}.lock"))
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue
            try:
                yield slot
            finally:
                lock.release()
            return
        time.sleep(0.2)


def _import_renderer() -> None:
    """What a run needs after the kernel is up (papermill, the checks' polars, nbconvert),
    imported while the kernel starts: in a fresh `report run` process that overlaps about
    two seconds of imports with the kernel's own start-up."""
    import papermill  # noqa: F401
    import polars  # noqa: F401

    airlock.warm_up()


def _make_dirs(home: Home, dossier_id: str, folder: Path) -> None:
    parent = runs_dir(home, dossier_id)
    parent.mkdir(parents=True, exist_ok=True)
    folder.mkdir(mode=0o700)  # root's alone until the run is finished and locked down
    ids = identities(home, dossier_id) if isolation_enabled() else None
    if ids is not None:
        os.chown(parent, 0, ids.workspace.gid)
        os.chmod(parent, 0o750)  # noqa: S103 - the workspace's group reads finished runs


def _execute_on(
    ready: ReadyKernel, template: Template, values: dict[str, Any], limit: float, folder: Path
) -> tuple[str, str | None]:
    """papermill's API on a started kernel, used once. The template's time limit covers the
    whole run: a watchdog kills the kernel when it is up. The verdict comes from papermill's
    exception, never from the notebook's metadata (which marks cells "completed" after a
    dead kernel)."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    expired = threading.Event()

    def kill() -> None:
        expired.set()
        process = getattr(ready.manager.provisioner, "process", None)
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)  # nbclient then reports a dead kernel

    watchdog = threading.Timer(limit, kill)
    watchdog.daemon = True
    watchdog.start()
    try:
        papermill.execute_notebook(
            str(template.path),
            str(folder / "report.ipynb"),  # root's folder: nothing the kernel can redirect
            parameters=values,
            kernel_name="dossier",
            language="python",  # the Dossier kernel's, whatever the notebook was saved with
            km=ready.manager,
            progress_bar=False,
        )
        return "succeeded", None
    except PapermillExecutionError as exc:
        return "failed", f"{exc.ename}: {exc.evalue}"[:500]
    except Exception as exc:  # a dead kernel or the time limit: recorded, never raised
        if expired.is_set():
            return "failed", f"time limit of {limit:.0f} s exceeded"
        return "failed", f"{type(exc).__name__}: {exc}"[:500]
    finally:
        watchdog.cancel()
        stop_kernel(ready.manager)


PUBLISHED = re.compile(
    r"[a-z][a-z0-9_]{0,62}(\.parquet|\.contributions\.parquet|\.meta\.json|\.chart\.json)"
)
PUBLISHED_FILES = 300  # publish() writes up to three files a table, publish_chart() one
PUBLISHED_BYTES = 64 * 1024 * 1024  # per file; the checks refuse far smaller tables


def _collect(scratch: Path, folder: Path) -> list[str]:
    """Copy the tables publish() wrote from the scratch folder (the report identity's) into
    the run folder (root's): names as publish() makes them, plain files only, read through
    descriptors that follow no link. Anything else there fails the run (UnsafeFile)."""
    if not (scratch / "published").exists() and not (scratch / "published").is_symlink():
        return []
    copied = []
    destination = folder / "published"
    destination.mkdir(mode=0o700)
    with (
        opened_dir(scratch) as scratch_fd,
        opened_dir(Path("published"), dir_fd=scratch_fd) as source,
        opened_dir(destination) as target,
    ):
        names = sorted(os.listdir(source))
        if len(names) > PUBLISHED_FILES:
            raise UnsafeFile(f"published/ holds {len(names)} files (at most {PUBLISHED_FILES})")
        for name in names:
            if not PUBLISHED.fullmatch(name):
                raise UnsafeFile(f"published/{name}: not a file publish() writes")
            write_new(target, name, read_regular(source, name, PUBLISHED_BYTES))
            copied.append(f"published/{name}")
    return copied


def _assemble(
    home: Home,
    folder: Path,
    provenance: dict[str, Any],
    checks: list[dict[str, Any]],
    status: str,
) -> list[dict[str, Any]]:
    """The outputs' index for every run with a notebook; for a succeeded run also the charts'
    checks and the preview of what viewers will read (report.html). Returns the charts'
    check results. (review.html is drawn when first opened: review_page.)"""
    airlock.write_outputs_index(folder)
    if status != "succeeded":
        return []
    ctx = airlock.context_for(home, provenance["dossier"], folder, checks)
    charts = airlock.chart_checks(ctx.artefacts, checks)
    ctx.checks.update({c["table"]: c for c in charts})
    airlock.render_viewer(home, folder, provenance, ctx)
    return charts


def _hashes(folder: Path) -> dict[str, str]:
    hashes = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name not in (
            "provenance.json",
            "checks.json",
            "release.json",
            "review.html",  # drawn when first opened, from the files hashed here
        ):
            hashes[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


def _lock_down(home: Home, folder: Path, dossier_id: str) -> None:
    """Root's, readable by the workspace's group. (Only root ever wrote in `folder`.)"""
    ids = identities(home, dossier_id) if isolation_enabled() else None
    for path in [folder, *folder.rglob("*")]:
        if ids is not None:
            os.chown(path, 0, ids.workspace.gid, follow_symlinks=False)
        os.chmod(path, 0o750 if path.is_dir() else 0o640)


def _write_json(path: Path, data: Any) -> None:
    write_json(path, data, indent=2)


# ---------------------------------------------------------------- list, show, release


def _read_provenance(home: Home, path: Path) -> dict[str, Any]:
    """A run's provenance; a run whose process is gone without finishing it (killed, or the
    machine restarted) is recorded as failed here, so no status stays `running` forever."""
    provenance = json.loads(path.read_text())
    pid = provenance.get("runner_pid")
    if provenance.get("status") in ("queued", "running") and pid and not _alive(pid):
        provenance.update(
            status="failed",
            finished=_now(),
            error=f"the process running it (pid {pid}) ended before the run finished",
            checks_passed=False,
        )
        with contextlib.suppress(OSError):  # only the hub side may write; readers just see it
            _write_json(path, provenance)
            AuditLog(home).append(
                "report.finished",
                actor=provenance.get("user"),
                dossier=provenance.get("dossier"),
                run=provenance.get("run_id"),
                status="failed",
                error=provenance["error"],
            )
    return provenance


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def list_runs(home: Home, dossier_id: str) -> list[dict[str, Any]]:
    folder = runs_dir(home, dossier_id)
    runs = []
    for path in sorted(folder.glob("*/provenance.json")) if folder.exists() else []:
        provenance = _read_provenance(home, path)
        release = path.parent / "release.json"
        provenance["released"] = json.loads(release.read_text()) if release.exists() else None
        runs.append(provenance)
    return runs


def show_run(home: Home, dossier_id: str, run_id: str) -> dict[str, Any]:
    folder = runs_dir(home, dossier_id) / run_id
    if not (folder / "provenance.json").exists():
        raise ReportRefused(f"dossier {dossier_id} has no run '{run_id}'", reason="not_found")
    provenance = _read_provenance(home, folder / "provenance.json")
    checks_path = folder / "checks.json"
    release = folder / "release.json"
    return {
        "provenance": provenance,
        "folder": str(folder),
        "checks": json.loads(checks_path.read_text()) if checks_path.exists() else [],
        "unchecked": airlock.unchecked_outputs(folder),
        "released": json.loads(release.read_text()) if release.exists() else None,
    }


def release_denied(
    user: str, role: str | None, dossier_id: str, run: dict[str, Any]
) -> Denied | None:
    """Whether `user` (with `role` in the dossier) may release `run` (as show_run gives it):
    the four-eyes rule (roles.may_release) on this run's facts."""
    return may_release(
        user,
        role,
        dossier_id=dossier_id,
        run_id=run["provenance"]["run_id"],
        started_by=run["provenance"]["user"],
        status=run["provenance"]["status"],
        released_by=run["released"]["by"] if run["released"] is not None else None,
    )


def release_run(
    home: Home,
    dossier_id: str,
    run_id: str,
    user: str,
    justification: str | None,
    include: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Four eyes: a lead who did not start the run; checks passed or a justification.
    The caller records the decision (decisions.decide, as report.release).

    `include` maps unchecked outputs (ids from outputs.json) the lead chooses to show viewers
    to a justification for each; every other unchecked output stays withheld."""
    run = show_run(home, dossier_id, run_id)
    provenance = run["provenance"]
    entry = next((e for e in read_directory(home) if e.id == dossier_id), None)
    denied = release_denied(user, entry.role_of(user) if entry else None, dossier_id, run)
    if denied is not None:
        raise ReportRefused(denied.why, reason=denied.reason)
    folder = Path(run["folder"])
    if _hashes(folder) != provenance.get("outputs"):
        raise ReportRefused(
            f"run {run_id}'s files differ from what the run recorded: not released",
            reason="conflict",
        )
    with release_lock(home, dossier_id):  # differencing sees every release before this one
        if (folder / "release.json").exists():  # released by another lead meanwhile
            raise ReportRefused(f"run {run_id} was already released", reason="conflict")
        # re-computed: another run may have been released since this one finished
        differencing = differencing_checks(home, dossier_id, folder)
        checks = [c for c in run["checks"] if not is_differencing(c)] + differencing
        failed = list(dict.fromkeys(c["table"] for c in checks if not c["passed"]))
        if failed and not (justification and justification.strip()):
            message = (
                f"the output checks failed for {_failed_rules(checks)}: release "
                "only with a written justification"
            )
            raise ReportRefused(message, fields={"justification": message})
        included = _included(folder, include or {})
        record: dict[str, Any] = {
            "by": user,
            "at": _now(),
            "justification": justification or None,
            "failed_checks": failed,
            "differencing": differencing,
            "included": included,
        }
        # the released report: the checked artefacts, the included outputs, who released it
        ctx = airlock.context_for(home, dossier_id, folder, checks)
        airlock.render_viewer(home, folder, provenance, ctx, record)
        record["report_sha256"] = hashlib.sha256((folder / "report.html").read_bytes()).hexdigest()
        record["audit_head"] = AuditLog(home).head()  # audit verify: the log must still hold it
        _write_json(folder / "release.json", record)
    _lock_down(home, folder, dossier_id)
    return record


def _included(folder: Path, include: dict[str, str]) -> list[dict[str, str]]:
    """The unchecked outputs the releasing lead shows viewers, each with its justification
    and the hash of the output as reviewed; refused, naming the output, when an id is not an
    unchecked output of this run or its justification is empty."""
    unchecked = {o["id"]: o for o in airlock.unchecked_outputs(folder)}
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
