"""Attacks from inside a real workspace: the session's hub (tests/conftest.py), the armoede
workspace started by its lead, code run in its Dossier kernels through the hub's proxy, and
report runs through the dossierhub service's API, as a team member would start them."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from e2e_hub import Hub
from kernelclient import execute

DOSSIER = "armoede"
SERVER = f"dossier-{DOSSIER}"
LEAD = "a.jansen"
ANALYST = "b.devries"


# Kernel-side code: where an attacker inside the workspace looks. HOME itself is not
# listable, so the documented layout is tried by name, with the dossier's own subfolders.
ATTACKER_WALK = """
import os, stat, sys

def roots(home, dossier):
    names = ['', 'dossiers', 'secrets', 'extracts', 'workspaces', 'hub', 'templates', 'reports',
             'audit', 'raw', 'logs', 'scratch', 'runs', 'run', 'tmp', 'state', 'var',
             'extracts/.locks', 'extracts/.spill']
    try:
        names += os.listdir(home)
    except OSError:
        pass
    found = []
    for name in names:
        found += [os.path.join(home, name), os.path.join(home, name, dossier)]
    found += [os.getcwd(), os.path.expanduser('~')]
    return list(dict.fromkeys(os.path.normpath(p) for p in found))

ENVIRONMENT = {os.path.realpath(p) for p in (sys.prefix, os.path.dirname(sys.prefix))}
BULKY = {'.git', 'node_modules', '.venv', 'site-packages'}

def walk(home, dossier, temp=False):
    # every directory reachable from the roots (links not followed), each once
    seen = set()
    extra = ['/tmp', '/var/tmp', '/dev/shm'] if temp else []
    for root in [*roots(home, dossier), *extra]:
        depth0 = root.rstrip('/').count('/')
        for folder, dirs, files in os.walk(root, onerror=lambda error: None):
            real = os.path.realpath(folder)
            if real in seen or real in ENVIRONMENT:
                dirs[:] = []
                continue
            seen.add(real)
            if root in extra:  # shared temporary folders: skip checkouts and environments
                if folder.count('/') - depth0 >= 3 or 'pyvenv.cfg' in files:
                    dirs[:] = []
                dirs[:] = [d for d in dirs if d not in BULKY]
            yield folder, dirs, files

def read_regular(path, limit=64 << 20):
    # the content of a regular file this identity can read (never blocks on a FIFO)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            return None
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b''.join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)
"""


@dataclass
class Workspace:
    """The armoede workspace, opened by its lead."""

    hub: Hub
    token: str
    attacker_walk = ATTACKER_WALK

    @property
    def folder(self) -> Path:
        return self.hub.home.workspaces_dir / DOSSIER

    @property
    def uid(self) -> int:
        return self.folder.stat().st_uid

    def status(self) -> int:
        return httpx.get(
            f"{self.hub.url}user/{SERVER}/api/status",
            headers={"Authorization": f"token {self.token}"},
            timeout=30,
        ).status_code

    def ensure_running(self, limit: float = 90) -> None:
        deadline = time.monotonic() + limit
        while self.status() != 200:
            assert time.monotonic() < deadline, "the armoede workspace did not start"
            response = self.hub.start(SERVER, self.token)
            if response.status_code not in (201, 202, 400):  # 400: it is starting already
                time.sleep(1)
            time.sleep(0.5)

    def stop(self) -> None:
        api = self.hub.api()
        try:
            api.stop_server(SERVER)
        finally:
            api.close()

    def kernel_ids(self) -> set[str]:
        response = httpx.get(
            f"{self.hub.url}user/{SERVER}/api/kernels",
            headers={"Authorization": f"token {self.token}"},
            timeout=30,
        )
        response.raise_for_status()
        return {k["id"] for k in response.json()}

    def run(self, code: str, timeout: float = 120) -> str:
        """Run `code` in a new Dossier kernel of the workspace; its stdout."""
        result = execute(self.hub.url, SERVER, self.token, code, timeout=timeout)
        assert result.error is None, "\n".join(result.error.get("traceback", [])) + str(
            result.error
        )
        return result.stdout


@pytest.fixture(scope="session")
def lead_workspace(hub: Hub) -> Workspace:
    return Workspace(hub, hub.token(LEAD))


@pytest.fixture(scope="module", autouse=True)
def leave_workspace_as_found(hub: Hub) -> Iterator[None]:
    """The e2e tests that follow expect the armoede workspace as they would find it: stopped
    after a module that started it."""
    api = hub.api()
    running = api.server_running(SERVER)
    api.close()
    yield
    if not running:
        api = hub.api()
        try:
            api.stop_server(SERVER)
        finally:
            api.close()


@pytest.fixture
def workspace(lead_workspace: Workspace) -> Workspace:
    """The armoede workspace, running."""
    lead_workspace.ensure_running()
    return lead_workspace


@dataclass
class Reports:
    """Report runs through the dossierhub service's API, as the dossier's analyst."""

    hub: Hub
    client: httpx.Client

    def run(self, template: str, parameters: dict, limit: float = 180) -> dict:
        """Start a run and wait for its end; its provenance (status, error, run_id)."""
        response = self.client.post(
            f"dossiers/{DOSSIER}/runs", json={"template": template, "parameters": parameters}
        )
        assert response.status_code == 202, response.text
        run_id = response.json()["run_id"]
        deadline = time.monotonic() + limit
        while True:
            detail = self.client.get(f"dossiers/{DOSSIER}/runs/{run_id}").json()
            provenance = detail.get("provenance", {})
            if provenance.get("status") in ("succeeded", "failed"):
                return provenance
            assert time.monotonic() < deadline, f"run {run_id} did not end: {detail}"
            time.sleep(0.3)

    def folder(self, run_id: str) -> Path:
        return self.hub.home.reports_dir / DOSSIER / run_id


@pytest.fixture(scope="session")
def reports(hub: Hub) -> Iterator[Reports]:
    client = hub.service_api(ANALYST)
    yield Reports(hub, client)
    client.close()


# ------------------------------------------------------------------ the machine, seen as root


class Host:
    """Processes and waiting, from outside every workspace (the tests run as root)."""

    @staticmethod
    def processes() -> dict[int, tuple[int, int, str]]:
        """pid -> (parent pid, uid, command line) of every process on the machine."""
        found = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/status") as handle:
                    fields = dict(
                        line.split(":", 1) for line in handle.read().splitlines() if ":" in line
                    )
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                continue
            found[int(entry)] = (int(fields["PPid"]), int(fields["Uid"].split()[0]), cmdline)
        return found

    def kill_marked(self, marker: str) -> None:
        """End the processes a test started (found by the marker in their command line)."""
        for pid, (_, _, cmdline) in self.processes().items():
            if marker in cmdline and pid != os.getpid():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def kernel_processes(self) -> set[int]:
        """Jupyter kernels on the machine: processes started with `-f <connection>.json`."""
        kernels = set()
        for pid, (_, _, cmdline) in self.processes().items():
            words = cmdline.split()
            if any(a == "-f" and b.endswith(".json") for a, b in itertools.pairwise(words)):
                kernels.add(pid)
        return kernels

    @staticmethod
    def wait_for(condition: Callable[[], object], limit: float, pause: float = 0.3) -> bool:
        deadline = time.monotonic() + limit
        while not condition():
            if time.monotonic() > deadline:
                return False
            time.sleep(pause)
        return True

    @staticmethod
    def cpu_time(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            return -1
        return int(fields[11]) + int(fields[12])  # utime + stime

    def connection_files(self, pids: set[int]) -> set[str]:
        """The `-f` arguments of these kernel processes."""
        files = set()
        for pid, (_, _, cmdline) in self.processes().items():
            words = cmdline.split()
            if pid in pids:
                files.update(b for a, b in itertools.pairwise(words) if a == "-f")
        return files

    def wait_for_new_kernel(self, before: set[int], limit: float = 40) -> set[int]:
        """After a run the service starts a kernel ahead of time for the dossier's next run:
        wait for a new kernel process, then until it has warmed up (its CPU time stands).
        The new kernel processes."""
        deadline = time.monotonic() + limit
        if not self.wait_for(lambda: self.kernel_processes() - before, limit):
            return set()
        new = sorted(self.kernel_processes() - before)
        used = [self.cpu_time(pid) for pid in new]
        while time.monotonic() < deadline:
            time.sleep(1)
            now = [self.cpu_time(pid) for pid in new]
            if now == used:
                break
            used = now
        time.sleep(1)  # warmed up; the service files it as ready
        return set(new)


@pytest.fixture(scope="session")
def host() -> Host:
    return Host()
