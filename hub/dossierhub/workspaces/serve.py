"""`dossierhub serve`: the proxy and JupyterHub for one HOME, on the embedded default.

serve supervises three processes: configurable-http-proxy and the dossierhub service (pages,
API, report runs), which it keeps up for as long as it runs, and the hub, which it restarts on
SIGHUP (new roles after apply) or when it dies. The
workspaces are the hub's children in their own sessions (cleanup_servers = False), so they and
their proxy routes survive a hub restart; the restarted hub resumes them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from dossierhub.isolation import sandbox
from dossierhub.isolation.unixusers import (
    IdentityClash,
    isolation_enabled,
    prepare_dossier,
    secure_home,
)
from dossierhub.state.atomic import write_atomic
from dossierhub.state.directory import read_directory
from dossierhub.state.home import Home
from dossierhub.state.settings import Settings
from dossierhub.workspaces.hubapi import HubAPI, HubUnavailable
from dossierhub.workspaces.hubconfig import HubConfigError, ports, read_db_password
from dossierhub.workspaces.provision import sync_hub
from dossierhub.workspaces.servestate import ServeState, clear_serve_state, write_serve_state
from dossierhub.workspaces.tokens import mint_tokens, read_token

Say = Callable[[str], None]


class ServeError(Exception):
    pass


def proxy_command() -> str:
    """configurable-http-proxy from the checkout's node_modules (install.sh), else PATH."""
    local = Path(sys.prefix).parent / "node_modules" / ".bin" / "configurable-http-proxy"
    if local.exists():
        return str(local)
    found = shutil.which("configurable-http-proxy")
    if found is None:
        raise ServeError(
            "configurable-http-proxy is not installed: run ./install.sh "
            "(it installs the pinned proxy with npm)"
        )
    return found


class Supervisor:
    def __init__(self, home: Home, settings: Settings, say: Say):
        self.home, self.settings, self.say = home, settings, say
        self.public, self.proxy_api, self.hub_port, self.service_port = ports(settings)
        self.proxy: subprocess.Popen | None = None
        self.service: subprocess.Popen | None = None
        self.hub: subprocess.Popen | None = None
        self.restart_requested = False
        self.stopping = False

    @property
    def hub_api_url(self) -> str:
        return f"http://127.0.0.1:{self.hub_port}/hub/api"

    @property
    def public_url(self) -> str:
        listens_everywhere = self.settings.hub.ip in ("", "0.0.0.0")  # noqa: S104
        host = "127.0.0.1" if listens_everywhere else self.settings.hub.ip
        return f"http://{host}:{self.public}/"

    def prepare(self) -> None:
        home = self.home
        try:  # said here, not as the hub's traceback at every restart
            read_db_password(self.settings)
        except HubConfigError as exc:
            raise ServeError(str(exc)) from None
        home.hub_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(home.hub_dir, 0o700)
        mint_tokens(home)
        write_atomic(home.effective_settings_file, self.settings.model_dump_json())
        write_atomic(
            home.hub_config_file,
            "# Written by `dossierhub serve` at every start; put settings in settings.yaml.\n"
            "from dossierhub.workspaces.hubconfig import load_hub_config\n\n"
            f"load_hub_config(c, {str(home.root)!r})  # noqa: F821\n",
        )
        if isolation_enabled():
            secure_home(home)
            for entry in read_directory(home):
                try:
                    prepare_dossier(home, entry.id)
                except IdentityClash as exc:
                    raise ServeError(str(exc)) from None
        else:
            self.say(
                "WARNING: workspace isolation is off: dossierhub serve is not running as "
                "root, so every workspace runs as this user and can read all of "
                f"{home.root}. Run it as root on a server."
            )
        why = sandbox.unavailable(self.settings)
        if isolation_enabled() and why is not None:
            self.say(
                f"WARNING: workspaces and report kernels run without a sandbox ({why}): "
                "each still runs as its own Unix user, but sees the whole file system that "
                "user may read, and a process it starts can outlive it. Install bubblewrap "
                "and tini (./install.sh does, as root)."
            )

    def start_proxy(self) -> None:
        token = read_token(self.home, "proxy")
        env = {**os.environ, "CONFIGPROXY_AUTH_TOKEN": token}
        hub = f"http://127.0.0.1:{self.hub_port}"
        self.proxy = subprocess.Popen(
            [
                proxy_command(),
                "--ip",
                self.settings.hub.ip,
                "--port",
                str(self.public),
                "--api-ip",
                "127.0.0.1",
                "--api-port",
                str(self.proxy_api),
                "--default-target",
                hub,
                "--error-target",
                f"{hub}/hub/error",
                "--log-level",
                "warn",
            ],
            env=env,
            cwd=self.home.hub_dir,
            start_new_session=True,
        )

    def start_service(self) -> None:
        """The pages and API; report runs it started keep running across hub restarts."""
        self.service = subprocess.Popen(
            [
                sys.executable,
                "-I",  # no import path from the caller's working folder or PYTHON* variables
                "-m",
                "dossierhub.web",
                "--home",
                str(self.home.root),
                "--hub-api",
                self.hub_api_url,
                "--port",  # the hub routes to this one (serve --port moves all four)
                str(self.service_port),
            ],
            cwd=self.home.hub_dir,
            start_new_session=True,
        )

    def start_hub(self, timeout: float = 90) -> None:
        entries = read_directory(self.home)
        jupyterhub = str(Path(sys.executable).parent / "jupyterhub")
        self.hub = subprocess.Popen(
            [jupyterhub, "-f", str(self.home.hub_config_file)],
            cwd=self.home.hub_dir,
            start_new_session=True,
        )
        token = read_token(self.home, "service")
        api = HubAPI(self.hub_api_url, token)
        try:
            deadline = time.monotonic() + timeout
            while not api.ready():
                if self.hub.poll() is not None:
                    raise ServeError(
                        f"the hub exited at start (status {self.hub.returncode}); see its log above"
                    )
                if time.monotonic() > deadline:
                    raise ServeError(f"the hub did not answer within {timeout:.0f} s")
                time.sleep(0.1)
            sync_hub(self.home, api, entries)  # audits its changes, per dossier
        finally:
            api.close()
        state = ServeState.now(self.hub_api_url, self.public_url, [e.id for e in entries])
        write_serve_state(self.home, state)

    def stop_hub(self) -> None:
        if self.hub is not None and self.hub.poll() is None:
            self.hub.terminate()
            try:
                self.hub.wait(30)
            except subprocess.TimeoutExpired:
                self.hub.kill()
                self.hub.wait()

    def run(self) -> int:
        signal.signal(signal.SIGHUP, lambda *_: setattr(self, "restart_requested", True))
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stopping", True))
        signal.signal(signal.SIGINT, lambda *_: setattr(self, "stopping", True))
        self.prepare()
        self.start_proxy()
        self.start_service()
        try:
            self.start_hub()
            self.say(
                f"dossierhub is running at {self.public_url} "
                f"(dossiers and reports: {self.public_url}services/dossierhub/)"
            )
            while not self.stopping:
                time.sleep(0.2)
                if self.service is not None and self.service.poll() is not None:
                    self.say(
                        f"the dossierhub service exited ({self.service.returncode}): restarting it"
                    )
                    self.start_service()
                if self.restart_requested or (self.hub is not None and self.hub.poll() is not None):
                    reason = "new roles" if self.restart_requested else "the hub exited"
                    self.restart_requested = False
                    self.say(f"restarting the hub ({reason}); workspaces keep running")
                    self.stop_hub()
                    self.start_hub()
            return 0
        finally:
            clear_serve_state(self.home)
            self.stop_hub()
            for process in (self.service, self.proxy):
                if process is not None and process.poll() is None:
                    process.terminate()
                    try:
                        process.wait(30)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait()


def serve(home: Home, settings: Settings, say: Say) -> int:
    if not home.master_key_file.exists():
        raise ServeError(
            f"{home.root} is not initialised: run `dossierhub init` (or `dossierhub demo`) first"
        )
    if not (home.directory_file).exists():
        raise ServeError("no dossier has been applied yet: run `dossierhub apply` first")
    try:
        return Supervisor(home, settings, say).run()
    except HubUnavailable as exc:
        raise ServeError(str(exc)) from None
