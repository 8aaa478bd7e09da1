"""The dossierhub service as deploy/chart starts it in a pod: on every address, with the api
token z2jh registered for it ($JUPYTERHUB_API_TOKEN), on a HOME `dossierhub serve` never ran
on (so no token file of its own). The real service process, no hub behind it: a request
without a login is sent to the hub's login, which needs no call to the hub."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
from helm import render

from dossierhub.state.home import Home
from dossierhub.state.init import init_home
from dossierhub.workspaces.tokens import token_file

from e2e_hub import free_ports


class HubAPIWitness(BaseHTTPRequestHandler):
    """Stands where the hub's API is and only notes what each request sends (then answers
    403, as the hub does to a code or token it does not know)."""

    seen: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        HubAPIWitness.seen.append(body.decode())
        self.send_response(403)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def start(
    home: Home, port: int, hub_api: str, *extra: str, token: str | None
) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "JUPYTERHUB_API_TOKEN"}
    if token is not None:
        env["JUPYTERHUB_API_TOKEN"] = token
    command = [sys.executable, "-I", "-m", "dossierhub.web", "--home", str(home.root)]
    command += ["--hub-api", hub_api, "--port", str(port), *extra]
    return subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)


def answering(port: int, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.1)
    return False


def chart_container() -> dict:
    deployment = next(o for o in render() if o["kind"] == "Deployment")
    return dict(deployment["spec"]["template"]["spec"]["containers"][0])


def chart_arguments() -> list[str]:
    return list(chart_container()["command"])


def test_the_chart_gives_the_token_from_z2jh_s_secret_and_in_no_argument() -> None:
    """The token reaches the service's environment from z2jh's Secret by reference: the
    rendered objects hold no value of it, and no argument carries one."""
    container = chart_container()
    (token,) = [e for e in container["env"] if e["name"] == "JUPYTERHUB_API_TOKEN"]
    assert "value" not in token
    assert token["valueFrom"] == {
        "secretKeyRef": {"name": "hub", "key": "hub.services.dossierhub.apiToken"}
    }
    assert not container.get("args")
    assert not any(
        "token" in part.lower() for part in chart_arguments() if part != "--token-from-env"
    )


def test_in_a_pod_the_service_takes_z2jh_s_token_and_every_address(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    init_home(home)
    assert not token_file(home, "service").exists()  # serve never ran here
    command = chart_arguments()
    assert command[command.index("--ip") + 1] == "0.0.0.0" and "--token-from-env" in command
    port = free_ports(2)
    hub = ThreadingHTTPServer(("127.0.0.1", port + 1), HubAPIWitness)
    threading.Thread(target=hub.serve_forever, daemon=True).start()
    hub_api = f"http://127.0.0.1:{port + 1}/hub/api"
    service = start(home, port, hub_api, "--ip", "0.0.0.0", "--token-from-env", token="z2jh-tok")
    try:
        assert answering(port), service.stderr.read() if service.poll() is not None else ""
        listening = subprocess.run(
            ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True
        ).stdout
        assert "0.0.0.0:" in listening or "*:" in listening, listening
        # no login: sent to the hub's, with no call to the hub
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
        page = client.get("/services/dossierhub/")
        assert page.status_code == 302
        login = httpx.URL(page.headers["location"])
        assert login.path == "/hub/api/oauth2/authorize"
        # back from the hub's login with a code: the service trades it for a token, proving
        # itself with its api token, z2jh's
        callback = client.get(
            "/services/dossierhub/oauth_callback",
            params={"code": "a-code", "state": login.params["state"]},
        )
        assert callback.status_code >= 400
        client.close()
        assert any("client_secret=z2jh-tok" in body for body in HubAPIWitness.seen), (
            HubAPIWitness.seen
        )
        # nowhere but in the process's environment: not its command line, HOME or its log
        assert b"z2jh-tok" not in Path(f"/proc/{service.pid}/cmdline").read_bytes()
    finally:
        service.terminate()
        _, log = service.communicate(timeout=10)
        hub.shutdown()
        hub.server_close()
    assert "dossierhub pages on" in log and "z2jh-tok" not in log
    written = [p for p in home.root.rglob("*") if p.is_file() and b"z2jh-tok" in p.read_bytes()]
    assert not written, written


def test_without_the_token_it_says_so_and_starts_nothing(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    init_home(home)
    port = free_ports(1)
    hub_api = "http://127.0.0.1:9/hub/api"
    service = start(home, port, hub_api, "--token-from-env", token=None)
    _, stderr = service.communicate(timeout=30)
    assert service.returncode == 2
    assert "$JUPYTERHUB_API_TOKEN is not set" in stderr
    assert not answering(port, timeout=0.5)
