"""One real hub for the e2e tests: dossierhub serve with its proxy on 127.0.0.1."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from dossierhub.demo import write_demo
from dossierhub.directory import read_directory
from dossierhub.home import Home
from dossierhub.hub_auth import set_password
from dossierhub.hubapi import HubAPI, read_serve_state

ROOT = Path(__file__).resolve().parents[2]
DOSSIERHUB = str(Path(sys.executable).parent / "dossierhub")
PASSWORD = "correct horse battery"


def free_ports(count: int = 3) -> int:
    """A base port with `count` free ports in a row on 127.0.0.1."""
    for base in range(18000, 19000, 10):
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


def reachable_python() -> str:
    """An environment the dossier identities can execute.

    CI clones into a folder dossier users may not reach; then the locked environment is
    installed (not editable) under /opt, where they can.
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
            "--quiet",
            "--python",
            "/usr/bin/python3.11",
        ],
        cwd=ROOT,
        env=env,
        check=True,
    )
    for folder in (Path("/opt/dossierhub-test"), target):
        os.chmod(folder, 0o755)
    return str(target / "venv" / "bin" / "python")


@dataclass
class Hub:
    home: Home
    url: str
    serve: subprocess.Popen
    log: Path

    def token(self, user: str) -> str:
        result = subprocess.run(
            [DOSSIERHUB, "--home", str(self.home.root), "token", user],
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout.strip()

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


@pytest.fixture(scope="session")
def hub() -> Iterator[Hub]:
    if os.geteuid() != 0:
        pytest.skip("the e2e tests check workspace isolation, which needs root")
    root = Path(tempfile.mkdtemp(prefix="dossierhub-e2e-", dir="/tmp"))
    os.chmod(root, 0o711)
    home = Home(root / "home")
    subprocess.run([DOSSIERHUB, "--home", str(home.root), "init"], check=True, capture_output=True)
    write_demo(home, size=2000, seed=11, log=lambda text: None)
    base = free_ports()
    (home.root / "settings.yaml").write_text(
        yaml.safe_dump(
            {
                "hub": {"port": base, "expiry_check_seconds": 5},
                "workspaces": {"python": reachable_python(), "auth_cache_seconds": 2},
            }
        )
    )
    applied = subprocess.run(
        [DOSSIERHUB, "--home", str(home.root), "apply"], capture_output=True, text=True, check=False
    )
    assert applied.returncode == 0, applied.stderr
    for person in {p for e in read_directory(home) for p in (*e.workers, *e.viewers)} | {
        "s.vreemd"
    }:
        set_password(home.hub_dir / "passwords.json", person, PASSWORD)
    log = root / "serve.log"
    with log.open("w") as handle:
        serve = subprocess.Popen(
            [DOSSIERHUB, "--home", str(home.root), "serve"], stdout=handle, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 90
    while read_serve_state(home) is None:
        assert serve.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)
    running = Hub(home, f"http://127.0.0.1:{base}/", serve, log)
    api = running.api()
    api.create_users(["s.vreemd"])  # a stranger: an account, no dossier
    api.close()
    yield running
    api = running.api()
    for name in api.users():
        if name.startswith("dossier-"):
            api.stop_server(name)
    api.close()
    serve.send_signal(signal.SIGTERM)
    serve.wait(60)
    if not os.environ.get("DOSSIERHUB_KEEP_E2E"):
        shutil.rmtree(root, ignore_errors=True)
