"""`dossierhub serve --port N` moves the whole installation: the proxy, the hub and the
dossierhub service (pages and API) answer through port N, not settings.yaml's."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import yaml

from dossierhub.state.home import Home
from dossierhub.workspaces.servestate import read_serve_state

from e2e_hub import DOSSIERHUB, free_ports


def test_serve_port_moves_the_service_too() -> None:
    root = Path(tempfile.mkdtemp(prefix="dossierhub-port-"))
    home = Home(root / "home")
    for step in ("init", "apply"):  # an installation without dossiers: no Unix users to make
        command = [DOSSIERHUB, "--home", str(home.root), step]
        subprocess.run(command, check=True, capture_output=True)
    configured = free_ports()
    held = [socket.create_server(("127.0.0.1", configured + i)) for i in range(4)]
    chosen = free_ports()  # another four: settings.yaml's are held for the moment
    for sock in held:
        sock.close()
    (home.settings_file).write_text(yaml.safe_dump({"hub": {"port": configured}}))
    log = root / "serve.log"
    with log.open("w") as handle:
        serve = subprocess.Popen(
            [DOSSIERHUB, "--home", str(home.root), "serve", "--port", str(chosen)],
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        while read_serve_state(home) is None:
            assert serve.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        url = f"http://127.0.0.1:{chosen}/services/dossierhub/api/openapi.json"
        answer = httpx.get(url, timeout=30)
        for _ in range(50):  # the service may still be starting behind the proxy
            if answer.status_code == 200:
                break
            time.sleep(0.2)
            answer = httpx.get(url, timeout=30)
        assert answer.status_code == 200, (answer.status_code, log.read_text()[-3000:])
        assert answer.json()["openapi"].startswith("3.")
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(60)
        shutil.rmtree(root, ignore_errors=True)
