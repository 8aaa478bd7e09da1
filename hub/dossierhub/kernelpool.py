"""Dossier kernels started ahead of time for report runs.

Each kernel runs as its dossier's identity over that dossier's extracts, with its own staging
folder; a run takes one, uses it once and shuts it down, and a fresh one is started for the
next run. Kernels are never shared between dossiers nor reused between runs.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from jupyter_client.blocking import BlockingKernelClient
from jupyter_client.manager import KernelManager
from traitlets import Any, DottedObjectName, List, Unicode

from .home import Home
from .settings import load_settings
from .unixusers import isolation_enabled, preexec_as_dossier, unix_ids


class DossierKernelManager(KernelManager):
    """A Dossier kernel launched as the dossier's identity from the workspace environment."""

    workspace_python = Unicode(help="Python of the environment the kernel runs in.")
    dossier_ids = Any(None, allow_none=True, help="(uid, gid) of the dossier; None: no isolation.")
    handed_out = List(help="Clients given out, closed by stop_kernel.")
    # nbclient needs an asynchronous client: with a blocking one it waits for output in a
    # blocking poll and never notices that the kernel died (or was killed at the time limit)
    client_class = DottedObjectName("jupyter_client.asynchronous.AsyncKernelClient")

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        cmd = super().format_kernel_cmd(extra_arguments)
        if cmd and cmd[0] == sys.executable and self.workspace_python:
            cmd[0] = self.workspace_python
        return cmd

    def client(self, **kwargs: object):  # type: ignore[no-untyped-def]
        """Every client handed out is remembered, so `stop_kernel` can close its sockets
        (nbclient leaves those of a kernel it was given, rather than started, open)."""
        made = super().client(**kwargs)
        self.handed_out.append(made)
        return made

    def write_connection_file(self, **kwargs: object) -> None:
        super().write_connection_file(**kwargs)
        if (
            self.dossier_ids is not None
        ):  # the kernel, as the dossier, must read its own connection file
            os.chown(self.connection_file, *self.dossier_ids)


def run_environment(home: Home, dossier_id: str, staging: Path) -> dict[str, str]:
    """What a report run's kernel sees: its dossier, its limits, where publish() writes."""
    settings = load_settings(home)
    python = Path(settings.workspaces.python or sys.executable)
    return {
        "PATH": f"{python.parent}:/usr/bin:/bin",
        "HOME": str(staging),
        "DOSSIER_ID": dossier_id,
        "DOSSIER_CATALOG": str(home.extract_dir(dossier_id) / "catalog.duckdb"),
        "DOSSIER_DUCKDB_MEMORY_LIMIT": settings.workspaces.duckdb_memory_limit,
        "DOSSIER_DUCKDB_THREADS": str(settings.workspaces.duckdb_threads),
        "DOSSIERHUB_RUN_DIR": str(staging),
        "MPLBACKEND": "Agg",
        "LANG": "C.UTF-8",
    }


def new_staging(home: Home, dossier_id: str) -> Path:
    parent = home.reports_dir / dossier_id
    parent.mkdir(parents=True, exist_ok=True)
    staging = parent / f".staging-{secrets.token_hex(6)}"
    staging.mkdir()
    ids = unix_ids(dossier_id) if isolation_enabled() else None
    if ids is not None:
        os.chown(staging, *ids)
        os.chmod(staging, 0o700)
    return staging


IPC_PATH_LIMIT = 107
WARM_UP = "import polars, matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot"


def start_kernel(
    home: Home, dossier_id: str, staging: Path, timeout: float = 60, warm: bool = True
) -> DossierKernelManager:
    settings = load_settings(home)
    ids = unix_ids(dossier_id) if isolation_enabled() else None
    km = DossierKernelManager(
        kernel_name="dossier",
        dossier_ids=ids,
        workspace_python=settings.workspaces.python or sys.executable,
    )
    km.connection_file = str(staging / "kernel.json")
    # Unix sockets in the run's own folder, not TCP ports: many runs starting at once cannot
    # race for the same port, and no other local user can reach the kernel. (A HOME so deep
    # that the socket path would pass the 107-byte limit of Unix sockets keeps TCP.)
    sockets = str(staging / "kernel")
    if len(sockets.encode()) + len("-65535") <= IPC_PATH_LIMIT:
        km.transport = "ipc"
        km.ip = sockets
    with (staging / "kernel.log").open("ab") as log:  # the kernel's own chatter, not ours
        km.start_kernel(
            env=run_environment(home, dossier_id, staging),
            cwd=str(staging),
            preexec_fn=preexec_as_dossier(dossier_id, staging) if ids else None,
            stdout=log,
            stderr=log,
        )
    client = BlockingKernelClient(
        **km.get_connection_info(session=True), connection_file=km.connection_file, parent=km
    )
    client.start_channels()
    try:
        client.wait_for_ready(timeout=timeout)
        if warm:
            # what nearly every report imports, loaded while nobody waits; no data is read
            client.execute_interactive(WARM_UP, timeout=timeout)
    finally:
        client.stop_channels()
    return km


@dataclass
class ReadyKernel:
    dossier_id: str
    manager: DossierKernelManager
    staging: Path
    generation: str | None = None  # the extracts it was started over


class KernelPool:
    """Up to `per_dossier` started kernels per dossier. `take` hands one out for one run;
    the owner (a long-running service, or a benchmark) refills with `fill`, typically in the
    background right after a take."""

    def __init__(self, home: Home, per_dossier: int = 1):
        self.home = home
        self.per_dossier = per_dossier
        self._ready: dict[str, list[ReadyKernel]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def fill(self, dossier_id: str) -> None:
        while True:
            with self._lock:
                if self._closed or len(self._ready.get(dossier_id, [])) >= self.per_dossier:
                    return
            staging = new_staging(self.home, dossier_id)
            generation = _generation(self.home, dossier_id)
            manager = start_kernel(self.home, dossier_id, staging)
            kernel = ReadyKernel(dossier_id, manager, staging, generation)
            with self._lock:
                if not self._closed:
                    self._ready.setdefault(dossier_id, []).append(kernel)
                    continue
            stop_kernel(kernel.manager)
            return

    def take(self, dossier_id: str, generation: str | None = None) -> ReadyKernel | None:
        """A kernel over the dossier's current extracts (`generation`), or None; kernels
        started over older extracts are stopped, never used."""
        with self._lock:
            ready = self._ready.get(dossier_id) or []
            stale = [k for k in ready if generation is not None and k.generation != generation]
            fresh = [k for k in ready if k not in stale]
            self._ready[dossier_id] = fresh[1:]
        for kernel in stale:
            _discard(kernel)
        return fresh[0] if fresh else None

    def prune(self, current: dict[str, str | None]) -> None:
        """Stop the kernels of dossiers that are gone or whose extracts were rebuilt
        (`current`: dossier id -> extracts generation)."""
        with self._lock:
            stale = [
                k
                for ready in self._ready.values()
                for k in ready
                if k.dossier_id not in current or current[k.dossier_id] != k.generation
            ]
            for ready in self._ready.values():
                ready[:] = [k for k in ready if k not in stale]
        for kernel in stale:
            _discard(kernel)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            kernels = [k for ready in self._ready.values() for k in ready]
            self._ready.clear()
        for kernel in kernels:
            _discard(kernel)


def _discard(kernel: ReadyKernel) -> None:
    stop_kernel(kernel.manager)
    shutil.rmtree(kernel.staging, ignore_errors=True)


def _generation(home: Home, dossier_id: str) -> str | None:
    from .extracts import current_provenance

    provenance = current_provenance(home.extract_dir(dossier_id))
    return provenance.get("generation") if provenance else None


def stop_kernel(manager: DossierKernelManager) -> None:
    """Shut the kernel down and release its sockets now, not at garbage collection."""
    for client in manager.handed_out:
        client.stop_channels()
    manager.shutdown_kernel(now=True)
    manager.context.destroy(linger=0)
