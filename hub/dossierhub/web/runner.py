"""Report runs started from the pages and the API: executed in worker threads of the service,
with kernels started ahead of time for the dossiers that run reports.

The service owns the KernelPool: after a dossier's run it starts `reports.prestart_kernels`
kernels for that dossier's next runs (each used once, never shared between dossiers). A pooled
kernel started over extracts that apply has since rebuilt is stopped, never used.

With `reports.backend: kubernetes` a run's Job outlives the service: a stopping service hands
its Jobs over (`close`), and the next one takes them up as it starts (`take_up`,
reports/resume.py).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dossier_kernel.provenance import ProvenanceError
from dossierhub.data.extracts import current_provenance
from dossierhub.reports.execute import progress
from dossierhub.reports.jobs import HandedOver, handed_over_when
from dossierhub.reports.kernelpool import KernelPool
from dossierhub.reports.requests import PendingRun
from dossierhub.reports.resume import TakenUp, finish_taken_up, take_up_runs
from dossierhub.reports.runs import execute_run
from dossierhub.state.directory import read_directory
from dossierhub.state.home import Home

log = logging.getLogger("dossierhub.web")


class Runner:
    def __init__(self, home: Home, prestart: int, workers: int = 32):
        self.home = home
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="run")
        self.pool = KernelPool(home, per_dossier=prestart) if prestart > 0 else None
        self._running: dict[tuple[str, str], PendingRun] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()  # set by close(): Jobs followed here handed over

    def submit(self, pending: PendingRun) -> None:
        with self._lock:
            self._running[(pending.dossier_id, pending.run_id)] = pending
        self.executor.submit(self._execute, pending)

    def take_up(self) -> int:
        """The runs a stopped service left with their Jobs running, followed to their end in
        worker threads (the others settled: resume.take_up_runs). Before the first request:
        until then no reader settles a taken-up run as abandoned. Returns how many."""
        taken = take_up_runs(self.home)
        for one in taken:
            with self._lock:
                self._running[(one.pending.dossier_id, one.pending.run_id)] = one.pending
            self.executor.submit(self._finish_taken_up, one)
        return len(taken)

    def _execute(self, pending: PendingRun) -> None:
        with self._following(pending):
            outcome = execute_run(pending, pool=self.pool)
            log.info("run %s/%s %s", pending.dossier_id, pending.run_id, outcome.status)
        if self.pool is not None:
            try:
                self.pool.fill(pending.dossier_id)
            except Exception:  # a kernel that will not start only costs the next run speed
                log.exception("could not start a kernel ahead of time for %s", pending.dossier_id)

    def _finish_taken_up(self, taken: TakenUp) -> None:
        pending = taken.pending
        with self._following(pending):
            outcome = finish_taken_up(taken)
            log.info("run %s/%s (taken up) %s", pending.dossier_id, pending.run_id, outcome.status)

    @contextlib.contextmanager
    def _following(self, pending: PendingRun) -> Iterator[None]:
        """A run this service follows, listed for its progress until it ends here or is
        handed over to the next service (its Job left running)."""
        try:
            with handed_over_when(self._stopping):
                yield
        except HandedOver:  # the service stops; the next one takes the run's Job up
            log.info("run %s/%s left to the next service", pending.dossier_id, pending.run_id)
        except Exception:  # execute_run records failures itself; this is a last resort
            log.exception("run %s/%s could not be recorded", pending.dossier_id, pending.run_id)
        finally:
            with self._lock:
                self._running.pop((pending.dossier_id, pending.run_id), None)

    def progress(self, dossier_id: str, run_id: str) -> dict[str, Any] | None:
        with self._lock:
            pending = self._running.get((dossier_id, run_id))
        found = progress(pending) if pending is not None else None
        if found is None:
            return None
        done, total = found
        return {"cells_done": done, "cells_total": total}

    def prune(self) -> None:
        """Periodically: stop pooled kernels of removed dossiers or rebuilt extracts."""
        if self.pool is None:
            return
        current: dict[str, str | None] = {}
        for entry in read_directory(self.home):
            try:
                provenance = current_provenance(self.home.extract_dir(entry.id))
            except ProvenanceError as exc:
                # its runs are refused (409) until apply mends it; left out of `current`, its
                # kernels are stopped (their generation cannot be checked), the others pruned
                log.warning("kernels started ahead for %s stopped: %s", entry.id, exc)
                continue
            if provenance is not None and not entry.expired():
                current[entry.id] = provenance.generation
        self.pool.prune(current)

    def close(self) -> None:
        """The service stops: runs executed here (local kernels) run to their end, runs
        executed as Jobs are left running for the next service (jobs.handed_over_when)."""
        self._stopping.set()
        if self.pool is not None:
            self.pool.close()
        self.executor.shutdown(wait=False, cancel_futures=False)
