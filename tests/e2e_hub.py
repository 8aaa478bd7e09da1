"""The e2e hub: a running `dossierhub serve` and how tests talk to it."""

from __future__ import annotations

import functools
import hashlib
import os
import pwd
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from dossierhub.state.home import Home
from dossierhub.workspaces.hubapi import HubAPI

from helpers import run_cli

ROOT = Path(__file__).resolve().parents[1]
DOSSIERHUB = str(Path(sys.executable).parent / "dossierhub")
PASSWORD = "correct horse battery"
ADMIN = "z.beheer"  # named in settings.yaml's hub.admins; a member of no dossier

# people of the demo's armoede dossier, by role, and someone of no dossier
LEAD, OTHER_LEAD, ANALYST, VIEWER, STRANGER = (
    "a.jansen",
    "e.mulder",
    "b.devries",
    "d.visser",
    "s.vreemd",
)


def free_ports(count: int = 4) -> int:
    """A base port with `count` free ports in a row on 127.0.0.1, tried in a random order:
    two test sessions on one machine (helpers, a CI clone) asking at once would otherwise
    both get the first free one and race for it until serve binds."""
    bases = list(range(18000, 19000, 10))
    random.shuffle(bases)
    for base in bases:
        if all(_free(port) for port in range(base, base + count)):
            return base
    raise RuntimeError("no free ports")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@functools.cache
def reachable_python() -> str:
    """An environment the dossier identities can execute.

    CI clones into a folder dossier users may not reach; then the locked environment is
    installed (not editable) under /opt, where they can. Once per session: the answer does not
    change, and each call probed as `nobody` (a Python start importing JupyterHub) and, on
    CI, built the project's wheel and ran `npm ci` again.
    """
    probe = [
        "runuser",
        "-u",
        "nobody",
        "--",
        sys.executable,
        "-c",
        "import dossier_kernel, dossier_lab, jupyterhub",
    ]
    if subprocess.run(probe, capture_output=True, check=False).returncode == 0:
        return sys.executable
    target = Path("/opt/dossierhub-test") / hashlib.sha256(str(ROOT).encode()).hexdigest()[:12]
    env = {
        **os.environ,
        "UV_PROJECT_ENVIRONMENT": str(target / "venv"),
        "UV_PYTHON_DOWNLOADS": "never",
    }
    uv = [shutil.which("python3") or "python3", "-m", "uv"]
    subprocess.run(
        [
            *uv,
            "sync",
            "--frozen",
            "--no-dev",
            "--no-editable",
            "--compile-bytecode",  # as install.sh: the dossier users cannot write __pycache__
            "--quiet",
            "--python",
            "/usr/bin/python3.11",
        ],
        cwd=ROOT,
        env=env,
        check=True,
    )
    for lock in ("package.json", "package-lock.json"):  # the proxy, beside the environment
        shutil.copy(ROOT / lock, target / lock)
    subprocess.run(
        ["npm", "ci", "--silent", "--no-audit", "--no-fund"],
        cwd=target,
        check=True,
        capture_output=True,
    )
    for folder in (Path("/opt/dossierhub-test"), target):
        os.chmod(folder, 0o755)
    return str(target / "venv" / "bin" / "python")


# one in-process CLI call at a time: tests mint tokens from several threads at once
_IN_PROCESS = threading.Lock()


@dataclass
class Hub:
    home: Home
    url: str
    serve: subprocess.Popen
    log: Path

    def token(self, user: str) -> str:
        """A new hub token for `user` from `dossierhub token`, run in this process: the same
        command and audit record, without a Python start per token (tests mint some forty)."""
        with _IN_PROCESS:  # click's runner swaps sys.stdout for the whole process
            result = run_cli(self.home.root, "token", user)
        assert result.exit_code == 0, result.stderr
        return result.stdout.strip().splitlines()[-1]

    @property
    def service(self) -> str:
        return f"{self.url}services/dossierhub/"

    def service_api(self, user: str) -> httpx.Client:
        """An HTTP client for the dossierhub API, as `user` (with their own hub token)."""
        return httpx.Client(
            base_url=f"{self.service}api/",
            headers={"Authorization": f"token {self.token(user)}"},
            timeout=60,
        )

    def api(self) -> HubAPI:
        return HubAPI.for_home(self.home)

    def apply(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [DOSSIERHUB, "--home", str(self.home.root), "apply"],
            capture_output=True,
            text=True,
            check=False,
            timeout=180,
        )

    def manifest(self, dossier_id: str) -> dict:
        return yaml.safe_load((self.home.dossiers_dir / f"{dossier_id}.yaml").read_text())

    def write_manifest(self, dossier_id: str, data: dict) -> None:
        (self.home.dossiers_dir / f"{dossier_id}.yaml").write_text(yaml.safe_dump(data))

    def reset_lab_layouts(self, server: str, token: str) -> None:
        """Forget the JupyterLab layouts a running workspace keeps (they are its server's, shared
        by the team): a browser opening it then sees only what it opens, not the notebooks an
        earlier test of the session left open."""
        base = f"{self.url}user/{server}/lab/api/workspaces"
        headers = {"Authorization": f"token {token}"}
        listed = httpx.get(base, headers=headers, timeout=30)
        assert listed.status_code == 200, listed.text
        for space in listed.json().get("workspaces", {}).get("ids", []):
            gone = httpx.delete(f"{base}/{space}", headers=headers, timeout=30)
            assert gone.status_code in (204, 404), gone.text

    def start(self, server: str, token: str, timeout: float = 60) -> httpx.Response:
        headers = {"Authorization": f"token {token}"}
        response = httpx.post(
            f"{self.url}hub/api/users/{server}/server", headers=headers, timeout=timeout
        )
        if response.status_code in (201, 202):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                model = httpx.get(f"{self.url}hub/api/users/{server}", headers=headers).json()
                if model.get("servers", {}).get("", {}).get("ready"):
                    break
                time.sleep(0.2)
        return response

    def ensure_running(self, server: str, token: str, timeout: float = 120) -> None:
        """The workspace running and ready, whatever an earlier test left: the hub answers
        400 to a start while it runs already (then wait for ready) or is still stopping
        (then start it again once it stopped)."""
        headers = {"Authorization": f"token {token}"}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = self.start(server, token, timeout)
            if response.status_code in (201, 202):
                return
            assert response.status_code == 400, response.text
            model = httpx.get(f"{self.url}hub/api/users/{server}", headers=headers).json()
            if model.get("servers", {}).get("", {}).get("ready"):
                return
            time.sleep(0.5)
        raise AssertionError(f"{server} did not come up within {timeout} s")


def release_identities(home: Home) -> None:
    """Remove the Unix users this HOME made, so the next test session's HOME may use the
    names (a kept HOME would otherwise own them: serve refuses to share a name)."""
    names = [e.pw_name for e in pwd.getpwall() if e.pw_dir.startswith(f"{home.root}/")]
    for name in names:
        subprocess.run(["pkill", "-KILL", "-u", name], check=False)
        subprocess.run(["userdel", name], capture_output=True, check=False)
    for name in names:  # a group outlives its user while another user is a member
        subprocess.run(["groupdel", name], capture_output=True, check=False)
