"""Dossier kernels for report runs, and kernels started ahead of time.

Each kernel runs as its dossier's report identity (`<prefix>r-<id>`, never the workspace's),
in a bubblewrap sandbox when the machine has one (sandbox.py), over that dossier's extracts,
with a scratch folder of its own under scratch/<id>/ that the workspace identity cannot enter:
its connection file, its sockets and what publish() writes live there. A run takes one
kernel, uses it once and shuts it down, and a fresh one is started for the next run. Kernels
are never shared between dossiers nor reused between runs.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from jupyter_client.blocking import BlockingKernelClient
from jupyter_client.client import KernelClient
from jupyter_client.manager import KernelManager
from traitlets import Any, DottedObjectName, List, Unicode

from dossierhub.isolation import sandbox
from dossierhub.isolation.environment import dossier_environment, workspace_python
from dossierhub.isolation.safefs import UnsafeFile, opened_dir, remove_tree
from dossierhub.isolation.unixusers import (
    Identity,
    IdentityClash,
    ensure_scratch_parent,
    identities,
    isolation_enabled,
    preexec_as,
    prepare_dossier,
    with_extracts_group,
)
from dossierhub.state.home import Home
from dossierhub.state.logs import open_log
from dossierhub.state.models import read_dossier
from dossierhub.state.settings import load_settings


class UnisolatedKernel(RuntimeError):
    """A report kernel would run without the dossier's report identity where that is never
    allowed (on Kubernetes, in the service's non-root pod)."""


class DossierKernelManager(KernelManager):
    """A Dossier kernel launched as the dossier's report identity from the workspace
    environment, in its sandbox when it has one."""

    workspace_python = Unicode(help="Python of the environment the kernel runs in.")
    identity = Any(None, allow_none=True, help="The report Identity; None: no isolation.")
    sandbox_prefix: List[str] = List(help="The sandbox command the kernel runs under; empty: none.")
    handed_out: List[KernelClient] = List(help="Clients given out, closed by stop_kernel.")
    pinned: List[int] = List(help="Descriptors of the kernel's socket files (_pin_sockets).")
    pin_folder = Unicode("", help="Root's folder of links to those descriptors.")
    # nbclient needs an asynchronous client: with a blocking one it waits for output in a
    # blocking poll and never notices that the kernel died (or was killed at the time limit)
    client_class = DottedObjectName("jupyter_client.asynchronous.AsyncKernelClient")

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        cmd = super().format_kernel_cmd(extra_arguments)
        if cmd and cmd[0] == sys.executable and self.workspace_python:
            cmd[0] = self.workspace_python
        # -I: no import path from the working folder, the environment or a user site
        return [*self.sandbox_prefix, cmd[0], "-I", *cmd[1:]]

    def client(  # type: ignore[override]  # client_class's kind (async), typed as Blocking
        self, **kwargs: object
    ) -> KernelClient:
        """Every client handed out is remembered, so `stop_kernel` can close its sockets
        (nbclient leaves those of a kernel it was given, rather than started, open)."""
        made = super().client(**kwargs)
        self.handed_out.append(made)
        return made

    def write_connection_file(self, **kwargs: object) -> None:
        # written while the scratch folder is still root's; only then is it handed over
        super().write_connection_file(**kwargs)
        if self.identity is not None:
            scratch = os.path.dirname(self.connection_file)
            for path in (self.connection_file, scratch):
                os.chown(path, self.identity.uid, self.identity.gid, follow_symlinks=False)


def new_scratch(home: Home, dossier_id: str) -> Path:
    """A fresh run folder under scratch/<id>/, root's until its kernel's connection file is
    written (then the report identity's, mode 0700)."""
    ids = prepare_dossier(home, dossier_id) if isolation_enabled() else None
    parent = ensure_scratch_parent(home, dossier_id, ids)
    scratch = parent / secrets.token_hex(4)
    scratch.mkdir(mode=0o700)
    return scratch


IPC_PATH_LIMIT = 107
WARM_UP = "import polars, matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot"


def start_kernel(
    home: Home, dossier_id: str, scratch: Path, timeout: float = 60, warm: bool = True
) -> DossierKernelManager:
    settings = load_settings(home)
    if settings.hub.spawner == "kubernetes" and not isolation_enabled():
        # the service's pod (deploy/chart): not root, so a kernel here would run as the
        # service, with its hub token and every dossier's files in reach
        raise UnisolatedKernel(
            f"report kernels of dossier {dossier_id} cannot run in this process: it is not "
            "root, so it cannot give them the dossier's report identity. On Kubernetes report "
            "runs are Jobs: set reports.backend: kubernetes in settings.yaml"
        )
    python = workspace_python(settings)
    ids = identities(home, dossier_id) if isolation_enabled() else None  # new_scratch made them
    if isolation_enabled() and ids is None:
        raise IdentityClash(f"dossier {dossier_id} has no report identity of this installation")
    if ids is not None:  # on pods the extracts' group is the pod's number, not a Unix group
        ids = with_extracts_group(home, dossier_id, ids)
    identity: Identity | None = ids.report if ids else None
    km = DossierKernelManager(kernel_name="dossier", identity=identity, workspace_python=python)
    km.connection_file = str(scratch / "kernel.json")
    # Unix sockets in the run's own folder, not TCP ports: many runs starting at once cannot
    # race for the same port, no other local process can reach the kernel (on TCP anyone may
    # subscribe to its output), and the sandbox can do without a network. Without a sandbox,
    # a HOME so deep that the socket path would pass the 107-byte limit keeps TCP.
    sandboxed = identity is not None and sandbox.unavailable(settings) is None
    # the dossier's limits, as its workspace gets them (environment.py)
    made = dossier_environment(
        home,
        read_dossier(home, dossier_id),
        settings,
        kind="report",
        folder=scratch,
        python=python,
        sandboxed=sandboxed,
    )
    sockets = str(scratch / "kernel")
    if len(sockets.encode()) + len("-65535") <= IPC_PATH_LIMIT:
        km.transport = "ipc"
        km.ip = sockets
    elif sandboxed:
        raise RuntimeError(
            f"HOME is too deep for a report kernel's sockets ({sockets} is over "
            f"{IPC_PATH_LIMIT - 6} bytes): move HOME to a shorter path"
        )
    preexec = None
    if identity is not None and sandboxed:
        km.sandbox_prefix = sandbox.prefix(
            identity,
            ro=[*sandbox.environment_paths(python), *made.read_only],
            rw=made.writable,
            chdir=made.workdir,
            network=False,
            die_with_parent=True,
            hostname=made.hostname,
        )
    elif identity is not None:
        preexec = preexec_as(identity, scratch)
    log = open_log(home, dossier_id, "reports")  # the kernel's own chatter, not ours
    try:
        km.start_kernel(
            env=made.env,
            cwd="/",
            preexec_fn=preexec,
            stdout=log,
            stderr=log,
            # in a sandbox its parent is bubblewrap's first process, not us: no parent PID
            # for it to watch (--die-with-parent ties it to us instead)
            independent=bool(km.sandbox_prefix),
        )
    finally:
        os.close(log)
    if km.transport == "ipc" and identity is not None:
        try:
            _pin_sockets(km, scratch, identity.uid, timeout)
        except BaseException:
            stop_kernel(km)
            raise
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
    scratch: Path
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
            scratch = new_scratch(self.home, dossier_id)
            generation = _generation(self.home, dossier_id)
            manager = start_kernel(self.home, dossier_id, scratch)
            kernel = ReadyKernel(dossier_id, manager, scratch, generation)
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
    remove_tree(os.fspath(kernel.scratch))  # the kernel's own: any depth, no link followed


def _generation(home: Home, dossier_id: str) -> str | None:
    from dossierhub.data.extracts import current_provenance

    provenance = current_provenance(home.extract_dir(dossier_id))
    return provenance.generation if provenance else None


def stop_kernel(manager: DossierKernelManager) -> None:
    """Shut the kernel down and release its sockets now, not at garbage collection."""
    for client in manager.handed_out:
        client.stop_channels()
    manager.shutdown_kernel(now=True)
    manager.context.destroy(linger=0)
    for fd in manager.pinned:
        os.close(fd)
    manager.pinned.clear()
    if manager.pin_folder:
        shutil.rmtree(manager.pin_folder, ignore_errors=True)


def _pin_sockets(km: DossierKernelManager, scratch: Path, uid: int, timeout: float) -> None:
    """Connect only to the socket files the kernel bound, never through a name in its folder:
    it could replace `kernel-<port>` with a link to any socket of the machine, which root's
    client would then follow. Each file is held open (O_PATH, no link followed, a socket of
    the report identity) and reached through a root-only folder of links to those
    descriptors (/proc/<our pid>/fd/<n>)."""
    ports = [km.shell_port, km.iopub_port, km.stdin_port, km.control_port, km.hb_port]
    deadline = time.monotonic() + timeout
    with opened_dir(scratch) as folder:
        for port in ports:
            name = f"kernel-{port}"
            while True:
                try:
                    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
                    break
                except FileNotFoundError:
                    if time.monotonic() > deadline or not km.is_alive():
                        raise RuntimeError("the kernel did not open its sockets") from None
                    time.sleep(0.02)
            km.pinned.append(fd)
            info = os.fstat(fd)
            if not stat.S_ISSOCK(info.st_mode) or info.st_uid != uid:
                raise UnsafeFile(f"{name}: not a socket of the report identity")
    links = Path(tempfile.mkdtemp(prefix=".", dir=scratch.parent))  # root's, 0700
    km.pin_folder = str(links)
    for port, fd in zip(ports, km.pinned, strict=True):
        os.symlink(f"/proc/{os.getpid()}/fd/{fd}", links / f"kernel-{port}")
    km.ip = str(links / "kernel")  # what our clients connect to from now on
