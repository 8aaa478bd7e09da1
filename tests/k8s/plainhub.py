"""A plain JupyterHub 6.1.1 (dummy login, SQLite, its own proxy on 127.0.0.1) for the stand-in.

With `kubeconfig` it spawns with plain KubeSpawner (pods on the stand-in, standin.py), without
it with JupyterHub's local-process spawner, the same single-user environment: the bench
compares the two. A service token with admin rights drives it through the REST API.

    hub = PlainHub(folder, kubeconfig=standin.kubeconfig)
    hub.start()                    # seconds until the hub's API answers
    hub.start_server("alice")      # seconds from the request to the server answering via the proxy
    hub.stop_server("alice"); hub.stop()
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from dossierhub.workspaces.serve import proxy_command

VENV_BIN = Path(sys.executable).parent
TOKEN = "standin-plain-hub-service-token-0123456789"  # a throwaway test hub's
POD_UID, POD_GID, POD_FS_GROUP = 61081, 61081, 61082


def free_base(count: int = 3) -> int:
    """`count` free ports in a row on 127.0.0.1 (the e2e helpers' range is 18000-19000)."""
    import socket

    for base in range(19100, 19900, 10):
        with socket.socket() as a, socket.socket() as b, socket.socket() as c:
            try:
                for sock, port in ((a, base), (b, base + 1), (c, base + 2)):
                    sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return base
    raise RuntimeError("no free ports in 19100-19900")


class PlainHub:
    def __init__(self, folder: Path, kubeconfig: Path | None = None) -> None:
        self.folder = folder
        self.kubeconfig = kubeconfig
        self.base = free_base()
        self.url = f"http://127.0.0.1:{self.base}/"
        self.hub_port = self.base + 2  # its API, where pods report (register it as egress)
        self.process: subprocess.Popen[bytes] | None = None
        self.headers = {"Authorization": f"token {TOKEN}"}
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "jupyterhub_config.py").write_text(self._config())

    def _config(self) -> str:
        base = self.base
        common = f"""
c.JupyterHub.bind_url = "http://127.0.0.1:{base}/"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{self.hub_port}"
c.JupyterHub.hub_connect_url = "http://127.0.0.1:{self.hub_port}"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{base + 1}"
c.ConfigurableHTTPProxy.command = [{proxy_command()!r}]
c.JupyterHub.db_url = "sqlite:///{self.folder / "jupyterhub.sqlite"}"
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.services = [{{"name": "driver", "api_token": {TOKEN!r}}}]
c.JupyterHub.load_roles = [{{"name": "driver", "scopes": ["admin:users", "admin:servers",
    "access:servers"], "services": ["driver"]}}]
c.Spawner.cmd = [{str(VENV_BIN / "jupyterhub-singleuser")!r}]
c.Spawner.start_timeout = 60
c.Spawner.http_timeout = 60
"""
        if self.kubeconfig is None:
            return (
                common
                + f"""
c.JupyterHub.spawner_class = "simple"
c.Spawner.args = ["--allow-root"]
c.SimpleLocalProcessSpawner.home_dir_template = {str(self.folder / "{username}")!r}
"""
            )
        # pods keep running while the hub restarts: a restarted hub must find them again
        return (
            common
            + f"""
c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
c.JupyterHub.cleanup_servers = False
c.KubeSpawner.image = "standin/singleuser:1"
c.KubeSpawner.uid = {POD_UID}
c.KubeSpawner.gid = {POD_GID}
c.KubeSpawner.fs_gid = {POD_FS_GROUP}
c.KubeSpawner.allow_privilege_escalation = False
c.KubeSpawner.container_security_context = {{
    "runAsNonRoot": True,
    "capabilities": {{"drop": ["ALL"]}},
    "seccompProfile": {{"type": "RuntimeDefault"}},
}}
c.KubeSpawner.automount_service_account_token = False
"""
        )

    def start(self) -> float:
        """Starts the hub; seconds until its API answers."""
        env = {**os.environ}
        if self.kubeconfig is not None:
            env["KUBECONFIG"] = str(self.kubeconfig)
        started = time.perf_counter()
        with (self.folder / "hub.log").open("ab") as output:
            self.process = subprocess.Popen(
                [str(VENV_BIN / "jupyterhub"), "-f", str(self.folder / "jupyterhub_config.py")],
                cwd=self.folder,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        deadline = started + 60
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the hub exited: {self.log()[-3000:]}")
            try:
                if httpx.get(f"{self.url}hub/api/", timeout=5).status_code == 200:
                    return time.perf_counter() - started
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"the hub did not answer within 60 s: {self.log()[-3000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)
        self.process = None

    def log(self) -> str:
        return (self.folder / "hub.log").read_text(errors="replace")

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(
            method, f"{self.url}hub/api/{path}", headers=self.headers, timeout=60, **kwargs
        )

    def start_server(self, user: str, timeout: float = 60) -> float:
        """Asks for `user`'s server; seconds until it answers through the proxy."""
        self.api("POST", "users", json={"usernames": [user]})
        started = time.perf_counter()
        response = self.api("POST", f"users/{user}/server")
        if response.status_code not in (201, 202):
            raise RuntimeError(f"{user}: {response.status_code} {response.text[:300]}")
        deadline = started + timeout
        while time.perf_counter() < deadline:
            if self.server_answers(user):
                return time.perf_counter() - started
            time.sleep(0.05)
        raise RuntimeError(f"{user}'s server not ready in {timeout} s: {self.log()[-3000:]}")

    def server_answers(self, user: str) -> bool:
        try:
            response = httpx.get(
                f"{self.url}user/{user}/api/status", headers=self.headers, timeout=10
            )
        except httpx.TransportError:
            return False
        return response.status_code == 200

    def stop_server(self, user: str, timeout: float = 60) -> float:
        """Stops `user`'s server; seconds until the hub reports it stopped."""
        started = time.perf_counter()
        response = self.api("DELETE", f"users/{user}/server")
        if response.status_code not in (202, 204):
            raise RuntimeError(f"{user}: {response.status_code} {response.text[:300]}")
        while self.api("GET", f"users/{user}").json().get("servers"):
            if time.perf_counter() > started + timeout:
                raise RuntimeError(f"{user}'s server did not stop in {timeout} s")
            time.sleep(0.05)
        return time.perf_counter() - started
