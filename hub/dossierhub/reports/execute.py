"""Executing a run's notebook: papermill's API on a Dossier kernel running as the dossier's
report identity over its extracts only, one kernel per run, a watchdog for the template's
time limit, and the per-dossier queue of run slots.

papermill's trap (STYLE.md): a dead kernel or a timeout leaves cells marked "completed" in the
output notebook, so the verdict comes from papermill's exception, never from the notebook.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from dossierhub.reports import airlock
from dossierhub.reports.kernelpool import (
    KernelPool,
    ReadyKernel,
    new_scratch,
    start_kernel,
    stop_kernel,
)
from dossierhub.reports.records import RunStatus, write_record
from dossierhub.reports.requests import PendingRun
from dossierhub.state.home import Home, RunFolder
from dossierhub.state.settings import load_settings
from dossierhub.state.templates import Template


def execute(
    pending: PendingRun, pool: KernelPool | None, limit: float
) -> tuple[Path, RunStatus, str | None]:
    """Wait for a slot in the dossier's queue, then run the notebook on a kernel taken from
    `pool` (started ahead of time for this dossier and extracts) or started now, inside the
    slot, so the queue bounds kernels too; with `reports.backend: kubernetes`, as a Job
    (jobs.py) in the slot. Marks the record running, then (kernel gone) executed. Returns
    the kernel's scratch folder and the verdict."""
    home, dossier_id = pending.home, pending.dossier_id
    work: Callable[[], tuple[RunStatus, str | None]]
    if load_settings(home).reports.backend == "kubernetes":
        from dossierhub.reports.jobs import JobRefused, prepare_job, run_job

        try:
            job = prepare_job(home, dossier_id)
        except (JobRefused, OSError) as exc:
            return home.scratch_parent(dossier_id) / "none", "failed", str(exc)[:500]
        scratch = job.scratch
        template, values = pending.template.path, pending.values
        work = partial(run_job, home, dossier_id, pending.run, template, values, job, limit)
    else:
        generation = pending.extracts.generation if pending.extracts else None
        ready = pool.take(dossier_id, generation) if pool is not None else None
        scratch = ready.scratch if ready is not None else new_scratch(home, dossier_id)

        def work() -> tuple[RunStatus, str | None]:
            kernel = ready
            if kernel is None:
                manager = start_kernel(home, dossier_id, scratch, warm=False)
                kernel = ReadyKernel(dossier_id, manager, scratch, generation)
            return run_notebook(kernel, pending.template, pending.values, limit, pending.run)

    # papermill, polars and nbconvert take two seconds to import: do it while the kernel starts
    threading.Thread(target=_import_renderer, daemon=True).start()
    try:
        with run_slot(home, dossier_id):
            pending.record = pending.record.start()
            write_record(pending.run, pending.record)
            pending.started = True
            status, error = work()
            pending.record = pending.record.kernel_done()  # the slot is free again
    except Exception as exc:  # whatever broke, the run ends with a truthful status
        return scratch, "failed", f"{type(exc).__name__}: {exc}"[:500]
    return scratch, status, error


def run_notebook(
    ready: ReadyKernel, template: Template, values: dict[str, Any], limit: float, run: RunFolder
) -> tuple[RunStatus, str | None]:
    """papermill's API on a started kernel, used once. The template's time limit covers the
    whole run: a watchdog kills the kernel when it is up."""
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
            str(run.notebook),  # root's folder: nothing the kernel can redirect
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


def progress(pending: PendingRun) -> tuple[int, int] | None:
    """(code cells done, code cells) of a running run, from the notebook papermill saves
    after every cell; None before the first save."""
    if not pending.started:
        return None
    try:
        cells = json.loads(pending.run.notebook.read_text(encoding="utf-8"))["cells"]
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
    home.run_slot_file(dossier_id, 0).parent.mkdir(parents=True, exist_ok=True)
    while True:
        for slot in range(slots):
            lock = FileLock(str(home.run_slot_file(dossier_id, slot)))
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
