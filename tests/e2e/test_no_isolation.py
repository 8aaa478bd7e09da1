"""Not run as root (a laptop), serve falls back to one identity and says so once."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from dossierhub.state.home import Home
from dossierhub.workspaces.servestate import read_serve_state

from e2e_hub import free_ports, reachable_python

WARNING = "workspace isolation is off"


def as_nobody(*args: str) -> list[str]:
    return ["runuser", "-u", "nobody", "--", *args]


def test_serve_as_an_ordinary_user_warns_once() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to become another user")
    dossierhub = str(Path(reachable_python()).parent / "dossierhub")
    root = Path(tempfile.mkdtemp(prefix="dossierhub-nonroot-", dir="/tmp"))
    shutil.chown(root, "nobody", "nogroup")
    home = root / "home"
    env = {**os.environ, "HOME": str(root)}
    try:
        demo = subprocess.run(
            as_nobody(dossierhub, "--home", str(home), "demo", "--size", "500", "--no-serve"),
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=120,
        )
        assert demo.returncode == 0, demo.stderr
        log = root / "serve.log"
        with log.open("w") as handle:
            serve = subprocess.Popen(
                as_nobody(dossierhub, "--home", str(home), "serve", "--port", str(free_ports())),
                stdout=handle,
                stderr=subprocess.STDOUT,
                env=env,
            )
        try:
            deadline = time.monotonic() + 60
            while read_serve_state(Home(home)) is None:
                assert serve.poll() is None, log.read_text()[-2000:]
                assert time.monotonic() < deadline, log.read_text()[-2000:]
                time.sleep(0.2)
            text = log.read_text()
            assert text.count(WARNING) == 1
            assert "every workspace runs as this user" in text
        finally:
            # to `dossierhub serve` itself, which stops its hub, proxy and service: runuser
            # kills its child 2 s after its own SIGTERM, and left the proxy and the service
            # running after the test (found after two CI runs on one machine)
            task = Path(f"/proc/{serve.pid}/task/{serve.pid}/children")
            with contextlib.suppress(OSError):
                for child in task.read_text().split():
                    os.kill(int(child), signal.SIGTERM)
            serve.wait(60)
    finally:
        shutil.rmtree(root, ignore_errors=True)
