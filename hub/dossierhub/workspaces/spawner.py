"""DossierSpawner: one JupyterLab per dossier, run as the dossier's own Unix identity, in a
bubblewrap sandbox when the machine has one (sandbox.py).

The hub user `dossier-<id>` is the workspace; people reach it through their dossier role.
Nobody has a personal server. What the workspace prints goes to logs/<id>/workspace.log.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from jupyterhub.spawner import LocalProcessSpawner
from tornado import web
from traitlets import Integer, Unicode

from dossierhub.isolation import sandbox
from dossierhub.isolation.environment import DossierEnvironment, dossier_environment
from dossierhub.isolation.unixusers import (
    DossierIdentities,
    IdentityClash,
    ensure_workspace_dir,
    isolation_enabled,
    preexec_as,
    prepare_dossier,
)
from dossierhub.state.decisions import reason_of_status
from dossierhub.state.home import Home
from dossierhub.state.logs import open_log
from dossierhub.state.models import Dossier
from dossierhub.state.settings import load_settings
from dossierhub.workspaces import netbridge
from dossierhub.workspaces.netbridge import start_time as _start_time
from dossierhub.workspaces.startchecks import (
    WorkspaceRefused,
    dossier_of,
    start_decision,
    start_failed,
    startable_dossier,
)
from dossierhub.workspaces.workspacechores import write_start_here


def server_command(python: str) -> list[str]:
    """The workspace server: jupyterhub-singleuser made undumpable in its own process
    (dossier_lab/undumpable.py: its kernels cannot read, trace or rewrite it); `-I` so that
    nothing a dossier can write is on its import path."""
    return [python, "-I", "-m", "dossier_lab.undumpable"]


def server_args(auth_cache_seconds: int, *, ipc: bool, folder: Path) -> list[str]:
    """What every workspace's jupyterhub-singleuser is started with, here and in a pod
    (kubespawner.py); `folder` is the workspace folder."""
    return [
        "--ServerApp.default_url=/lab",
        "--MappingKernelManager.default_kernel_name=dossier",
        # the launcher offers only the Dossier kernel: a plain Python 3 one has no db, %%sql
        "--KernelSpecManager.allowed_kernelspecs=dossier",
        f"--HubOAuth.cache_max_age={auth_cache_seconds}",
        *(["--KernelManager.transport=ipc"] if ipc else []),
        # No terminals: the relay records code a person sends a kernel, and keystrokes in a
        # shell are no code to record; `!command` in a cell does the same, recorded. No
        # language-server websockets either (none is installed: nothing is lost).
        "--ServerApp.terminals_enabled=False",
        "--ServerApp.jpserver_extensions=jupyter_lsp=False",
        # what the server keeps, in the folder as before but not under Jupyter's data folder,
        # which is read-only now (isolation/environment.py): the collaboration's file ids,
        # the key and database of trusted notebooks
        f"--BaseFileIdManager.db_path={folder / '.jupyter_fileid.db'}",
        f"--NotebookNotary.secret_file={folder / '.jupyter_notebook_secret'}",
        f"--NotebookNotary.db_file={folder / '.jupyter_nbsignatures.db'}",
    ]


class DossierSpawner(LocalProcessSpawner):
    dossierhub_home = Unicode(help="The installation's HOME folder.").tag(config=True)
    workspace_python = Unicode(
        help="Python of the environment workspaces run in (absolute; executable by the "
        "dossier identities)."
    ).tag(config=True)
    auth_cache_seconds = Integer(
        5,
        help="How long a workspace trusts the hub's answer about a person (seconds): the "
        "most a removed member keeps access for new requests.",
    ).tag(config=True)

    @property
    def dossier_id(self) -> str:
        return dossier_of(self.user.name)

    @property
    def home(self) -> Home:
        return Home(Path(self.dossierhub_home))

    async def start(self) -> tuple[str, int]:
        """Decide (audited as workspace.start, refusals too), then start. The hub has
        already checked the person's role (their group's role on this workspace); what it
        refuses itself is recorded by decisions.hub_request_logger."""
        decision = start_decision(self.home, self.user.name, getattr(self, "handler", None))
        self._stages = ()
        self._stage(10, "Checking the dossier: your role, its expiry date and its data")
        try:
            dossier, ids = self._startable()
        except web.HTTPError as exc:
            decision.refused_for(reason_of_status(exc.status_code), exc.get_message() or "")
            raise
        # the hub mints this server's API token at every start: recorded with the decision
        scopes = self.server_token_scopes
        decision.allow(server_token=scopes if isinstance(scopes, list) else "as configured")
        try:
            return await self._start(dossier, ids)
        except web.HTTPError:
            raise
        except Exception as exc:
            where = f"logs/{self.dossier_id}/workspace.log and the hub's log"
            raise start_failed(self.log, self.dossier_id, exc, where) from None

    # What the start page shows while the workspace starts (progress below): the steps of
    # this start, a new tuple per start (a class-level list would be every spawner's)
    _stages: tuple[dict[str, Any], ...] = ()

    def _stage(self, percent: int, message: str) -> None:
        self._stages = (*self._stages, {"progress": percent, "message": message})

    async def progress(self) -> Any:
        """JupyterHub's start page shows these events as they come (an async generator; the
        hub stops reading when the start ends)."""
        sent = 0
        while True:
            while sent < len(self._stages):  # a step added while one was being read counts
                yield self._stages[sent]
                sent += 1
            if self.pending != "spawn":
                return
            await asyncio.sleep(0.1)

    def _startable(self) -> tuple[Dossier, DossierIdentities | None]:
        """The dossier and its identities; HTTPError when the workspace may
        not start (startchecks.py: not a dossier's, gone, expired, no data; here: an
        identity clash)."""
        dossier = startable_dossier(self.home, self.dossier_id)
        try:
            ids = prepare_dossier(self.home, self.dossier_id) if isolation_enabled() else None
        except IdentityClash as exc:
            # the sentence may name a folder under HOME: the hub's log has it, the page not
            self.log.error("workspace %s: %s", self.dossier_id, exc)
            raise WorkspaceRefused(
                409,
                self.dossier_id,
                "identity",
                f"The Unix identity of dossier {self.dossier_id} is not in order: ask the "
                "admin (the hub's log says what clashes).",
            ) from None
        return dossier, ids

    async def _start(self, dossier: Dossier, ids: DossierIdentities | None) -> tuple[str, int]:
        self._ids = ids
        # prepare_dossier made it, as the workspace's; without isolation it is made here
        workdir = (
            ensure_workspace_dir(self.home, self.dossier_id, None)
            if ids is None
            else self.home.workspace_dir(self.dossier_id)
        )
        self.notebook_dir = str(workdir)
        settings = load_settings(self.home)
        program = server_command(self.workspace_python)
        self._sandboxed = ids is not None and sandbox.unavailable(settings) is None
        self._environment = dossier_environment(
            self.home,
            dossier,
            settings,
            kind="workspace",
            folder=workdir,
            python=self.workspace_python,
            sandboxed=self._sandboxed,
        )
        made = self._environment
        if ids is not None and self._sandboxed:
            self.cmd = [
                *sandbox.prefix(
                    ids.workspace,
                    ro=[*sandbox.environment_paths(self.workspace_python), *made.read_only],
                    rw=made.writable,
                    empty=made.empty,
                    chdir=made.workdir,
                    network=False,  # its own: netbridge.py joins the proxy and the hub's API
                    init=True,
                    hostname=made.hostname,
                ),
                *program,
            ]
        else:
            self.cmd = program
        self._stage(30, "Refreshing the Start here notebook in the workspace folder")
        await self._start_here(dossier)
        self._stage(50, "Starting JupyterLab as the dossier's own identity, without network")
        log = open_log(self.home, self.dossier_id, "workspace")
        # a new dict: the configured one is shared by every spawner
        self.popen_kwargs: dict[str, Any] = {
            **self.popen_kwargs,
            "cwd": "/" if self._sandboxed else str(workdir),
            "stdout": log,
            "stderr": log,
        }
        try:
            started = await super().start()
        finally:
            os.close(log)
        if self._sandboxed:
            # stop, cull and a restarted hub signal tini, the sandbox's first process
            self.pid = await self._sandbox_pid()
        self._started_at = _start_time(self.pid)
        if self._sandboxed and self._started_at is not None:
            self._start_bridge(self._started_at)
            self._stage(80, "Waiting for JupyterLab to answer")
            await self._answering(started)
        return started

    async def _start_here(self, dossier: Dossier) -> None:
        """The "Start here" notebook, written as the workspace (never by root: the folder is
        the workspace's). Without it the workspace still works: a failure is logged only."""
        try:
            done = await asyncio.to_thread(write_start_here, self.home, dossier)
        except OSError as exc:
            self.log.warning("workspace %s: no Start here notebook: %s", self.dossier_id, exc)
            return
        self.log.info("workspace %s: Start here notebook %s", self.dossier_id, done)

    def _start_bridge(self, started_at: str) -> None:
        """The sandbox's only ways in and out (netbridge.py): its own process, in its own
        session, so that it outlives a hub restart as the workspace does, and ends with it.
        It records who runs what in the workspace's kernels (site packages: its readers)."""
        log = open_log(self.home, self.dossier_id, "workspace")
        code = load_settings(self.home).audit.executions_code
        try:
            subprocess.Popen(
                [
                    sys.executable,
                    "-I",  # no import path from anywhere a dossier can write
                    "-m",
                    netbridge.__name__,
                    f"--pid={self.pid}",
                    f"--started={started_at}",
                    f"--port={self.port}",
                    f"--hub={urlparse(self.hub.api_url).port}",
                    f"--home={self.home.root}",
                    f"--dossier={self.dossier_id}",
                    f"--hub-api={self.hub.api_url}",
                    f"--code={code}",
                    f"--auth-cache-seconds={self.auth_cache_seconds}",
                ],
                cwd="/",
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        finally:
            os.close(log)

    async def _answering(self, address: tuple[str, int]) -> None:
        """Return once the server answers HTTP through its bridge (or its process ended), so
        the hub's first look finds it up: its own backoff would add up to a second or two."""
        request = f"GET {self.server.base_url}api HTTP/1.0\r\n\r\n".encode()
        deadline = asyncio.get_running_loop().time() + self.http_timeout
        while self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(OSError, asyncio.TimeoutError):
                reader, writer = await asyncio.wait_for(asyncio.open_connection(*address), 1)
                try:
                    writer.write(request)
                    if (await asyncio.wait_for(reader.read(8), 2)).startswith(b"HTTP/"):
                        return
                finally:
                    writer.close()
            if asyncio.get_running_loop().time() > deadline:
                return  # the hub's own wait says what went wrong
            await asyncio.sleep(0.05)

    async def _sandbox_pid(self, timeout: float = 30) -> int:
        """The PID (outside) of the sandbox's first process: bubblewrap's only child."""
        assert self.proc is not None
        deadline = asyncio.get_running_loop().time() + timeout
        while self.proc.poll() is None and asyncio.get_running_loop().time() < deadline:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
            with contextlib.suppress(OSError):
                found = children.read_text().split()
                if found:
                    return int(found[0])
            await asyncio.sleep(0.01)
        raise WorkspaceRefused(
            500,
            self.dossier_id,
            "failed",
            f"The workspace of dossier {self.dossier_id} could not be sandboxed; the "
            f"reason is in logs/{self.dossier_id}/workspace.log.",
        )

    # The PID a restarted hub signals is checked against the start time recorded with it: a
    # workspace that ended while the hub was down may have left its PID to another process.
    _started_at: str | None = None

    def get_state(self) -> dict:
        state = super().get_state()
        if self._started_at:
            state["started_at"] = self._started_at
        return state

    def load_state(self, state: dict) -> None:
        super().load_state(state)
        self._started_at = state.get("started_at")

    def clear_state(self) -> None:
        super().clear_state()
        self._started_at = None

    async def stop(self, now: bool = False) -> None:
        """SIGTERM, `term_timeout` seconds' grace (hubconfig: 5), then SIGKILL. Not
        JupyterHub's SIGINT first: without a terminal on its stdin the server never installs
        JupyterHub's SIGINT handler, so SIGINT broke its event loop with a KeyboardInterrupt,
        skipping its shutdown, and the process waited out JupyterHub's 30 s for SIGINT and
        30 s for SIGTERM (60 s measured with a notebook open). The server's own shutdown on
        SIGTERM can hang on a kernel busy in a cell; SIGKILL reaches tini, the sandbox's
        first process, and with it every process of the workspace's PID namespace (the
        collaboration rooms have saved the notebooks already)."""
        if not now and await self.poll() is None:
            await self._signal(signal.SIGTERM)
            await self.wait_for_death(self.term_timeout)
        if await self.poll() is None:
            await self._signal(signal.SIGKILL)
            await self.wait_for_death(self.kill_timeout)
        if await self.poll() is None:
            self.log.warning("The workspace of dossier %s did not end", self.dossier_id)

    async def _signal(self, sig: int) -> bool:
        if self._started_at is not None and _start_time(self.pid) != self._started_at:
            return False  # ours is gone; that PID is someone else's now
        return await super()._signal(sig)

    def get_args(self) -> list[str]:
        args = server_args(
            self.auth_cache_seconds,
            ipc=self._sandboxed,
            folder=self.home.workspace_dir(self.dossier_id),
        )
        return [*super().get_args(), *args]

    def make_preexec_fn(self, name: str) -> Callable[[], None] | None:
        """Become the dossier's identity and start in its workspace folder.

        Not JupyterHub's set_user_setuid: that starts in the account's home directory. Only
        used without a sandbox.
        """
        if self._ids is None or self._sandboxed:  # setpriv drops to it inside the sandbox
            return None
        return preexec_as(self._ids.workspace, self.home.workspace_dir(self.dossier_id))

    _environment: DossierEnvironment | None = None
    _ids: DossierIdentities | None = None
    _sandboxed = False

    def get_env(self) -> dict:
        env = super().get_env()
        env.update(self._environment.env if self._environment else {})
        return env

    def user_env(self, env: dict) -> dict:
        # HOME, SHELL and PATH come with the dossier's environment (get_env, after this)
        env["USER"] = self._ids.workspace.name if self._ids else os.environ.get("USER", "")
        return env
