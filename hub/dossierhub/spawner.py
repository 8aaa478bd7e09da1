"""DossierSpawner: one JupyterLab per dossier, run as the dossier's own Unix identity.

The hub user `dossier-<id>` is the workspace; people reach it through their dossier role.
Nobody has a personal server.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import yaml
from jupyterhub.spawner import LocalProcessSpawner
from tornado import web
from traitlets import Integer, Unicode

from .audit import AuditLog
from .home import Home
from .hub_auth import WORKSPACE_PREFIX
from .unixusers import (
    ensure_unix_user,
    ensure_workspace_dir,
    isolation_enabled,
    preexec_as_dossier,
    secure_extracts,
    unix_name,
)


class DossierSpawner(LocalProcessSpawner):
    dossierhub_home = Unicode(help="The installation's HOME folder.").tag(config=True)
    workspace_python = Unicode(
        help="Python of the environment workspaces run in (absolute; executable by the "
        "dossier identities)."
    ).tag(config=True)
    duckdb_memory_limit = Unicode(
        "2GB", help="DuckDB memory limit of the Dossier kernel, unless the manifest sets one."
    ).tag(config=True)
    duckdb_threads = Integer(
        2, help="DuckDB threads of the Dossier kernel, unless the manifest sets them."
    ).tag(config=True)
    auth_cache_seconds = Integer(
        5,
        help="How long a workspace trusts the hub's answer about a person (seconds): the "
        "most a removed member keeps access for new requests.",
    ).tag(config=True)

    @property
    def dossier_id(self) -> str:
        name = self.user.name
        if not name.startswith(WORKSPACE_PREFIX):
            raise web.HTTPError(
                403,
                "People have no personal servers here: open a dossier workspace from "
                "the home page.",
            )
        return name[len(WORKSPACE_PREFIX) :]

    @property
    def home(self) -> Home:
        return Home(Path(self.dossierhub_home))

    def _manifest(self) -> dict:
        path = self.home.dossiers_dir / f"{self.dossier_id}.yaml"
        try:
            return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except OSError:
            raise web.HTTPError(404, f"Dossier {self.dossier_id} no longer exists.") from None

    async def start(self):  # type: ignore[no-untyped-def]
        manifest = self._manifest()
        expires = manifest.get("expires")
        if isinstance(expires, str):
            expires = dt.date.fromisoformat(expires)
        if isinstance(expires, dt.date) and dt.date.today() > expires:
            raise web.HTTPError(
                403,
                f"Dossier {self.dossier_id} expired on {expires.isoformat()}: its workspace "
                "cannot be started. Its reports stay readable; ask the admin to extend it.",
            )
        catalog = self.home.extract_dir(self.dossier_id) / "catalog.duckdb"
        if not catalog.exists():
            raise web.HTTPError(
                409,
                f"Dossier {self.dossier_id} has no data yet: ask the admin to run "
                "`dossierhub apply`.",
            )
        ids = ensure_unix_user(self.home, self.dossier_id) if isolation_enabled() else None
        workdir = ensure_workspace_dir(self.home, self.dossier_id, ids)
        if ids is not None:
            secure_extracts(self.home.extract_dir(self.dossier_id), ids[1])
        self.notebook_dir = str(workdir)
        limits = manifest.get("limits") or {}
        self._dossier_env = {
            "DOSSIER_ID": self.dossier_id,
            "DOSSIER_CATALOG": str(catalog),
            "DOSSIER_DUCKDB_MEMORY_LIMIT": str(limits.get("memory") or self.duckdb_memory_limit),
            "DOSSIER_DUCKDB_THREADS": str(limits.get("threads") or self.duckdb_threads),
        }
        # a new dict: the configured one is shared by every spawner
        self.popen_kwargs = {**self.popen_kwargs, "cwd": str(workdir)}
        bin_dir = Path(self.workspace_python).parent
        self.cmd = [str(bin_dir / "jupyterhub-singleuser")]
        started = await super().start()
        AuditLog(self.home).append(
            "workspace.start", actor=self._requested_by(), dossier=self.dossier_id
        )
        return started

    def _requested_by(self) -> str:
        """The person whose request started the workspace (the hub sets `handler` on a
        spawn); a service or the API otherwise."""
        handler = getattr(self, "handler", None)
        person = getattr(handler, "current_user", None) if handler is not None else None
        return getattr(person, "name", None) or "hub"

    def get_args(self) -> list[str]:
        args = super().get_args()
        return [
            *args,
            "--ServerApp.default_url=/lab",
            "--MappingKernelManager.default_kernel_name=dossier",
            f"--HubOAuth.cache_max_age={self.auth_cache_seconds}",
        ]

    def make_preexec_fn(self, name: str):  # type: ignore[no-untyped-def]
        """Become the dossier's identity and start in its workspace folder.

        Not JupyterHub's set_user_setuid: that starts in the account's home directory, and a
        `dh-<id>` account may predate this installation's HOME.
        """
        if not isolation_enabled():
            return None
        return preexec_as_dossier(self.dossier_id, self.home.workspaces_dir / self.dossier_id)

    _dossier_env: dict[str, str] | None = None

    def get_env(self) -> dict:
        env = super().get_env()
        env.update(self._dossier_env or {})
        return env

    def user_env(self, env: dict) -> dict:
        workdir = str(self.home.workspaces_dir / self.dossier_id)
        env["USER"] = (
            unix_name(self.dossier_id) if isolation_enabled() else os.environ.get("USER", "")
        )
        env["HOME"] = workdir
        env["SHELL"] = "/bin/bash"
        env["PATH"] = f"{Path(self.workspace_python).parent}:/usr/local/bin:/usr/bin:/bin"
        return env
