"""HOME/settings.yaml: the installation's few operator settings (all optional)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .home import Home
from .models import Strict
from .policy import parse_or_refuse
from .yamlfile import load_yaml


class OAuthSettings(Strict):
    """OIDC login (Entra ID or any generic provider) through oauthenticator."""

    client_id: str
    client_secret_file: str = Field(description="file holding the client secret, mode 0600")
    callback_url: str
    tenant_id: str | None = None  # Entra ID
    authorize_url: str | None = None  # generic
    token_url: str | None = None
    userdata_url: str | None = None
    username_claim: str = "preferred_username"
    strip_domain: bool = True  # a.jansen@amsterdam.nl -> a.jansen, as manifests name people
    scope: list[str] = Field(default_factory=lambda: ["openid", "profile", "email"])


class HubSettings(Strict):
    ip: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    authenticator: Literal["local", "generic-oauth", "azuread"] = "local"
    oauth: OAuthSettings | None = None
    admins: list[str] = Field(default_factory=list)
    expiry_check_seconds: int = Field(default=600, ge=5)


class WorkspaceSettings(Strict):
    idle_timeout_seconds: int = Field(default=3600, ge=60)
    duckdb_memory_limit: str = "2GB"
    duckdb_threads: int = Field(default=2, ge=1)
    auth_cache_seconds: int = Field(default=5, ge=0)
    start_timeout_seconds: int = Field(default=60, ge=5)
    python: str | None = None  # the environment workspaces run in; default: dossierhub's own


class ReportSettings(Strict):
    parallel_per_dossier: int = Field(default=2, ge=1, le=64)
    # kernels the dossierhub service starts ahead of time for a dossier after its first run
    # from the pages or the API (each used once, by that dossier only); 0 turns it off
    prestart_kernels: int = Field(default=1, ge=0, le=8)


class IsolationSettings(Strict):
    """How workspaces and report kernels are kept apart (run as root)."""

    # Unix identities are `<prefix>-<id>` (workspace) and `<prefix>r-<id>` (report runs): two
    # installations on one machine need two prefixes, since a name belongs to one HOME
    prefix: str = Field(default="dh", pattern=r"^[a-z][a-z0-9]{1,5}$")
    # "auto": bubblewrap sandboxes when it works here (said once at start when it does not);
    # "off": Unix identities only
    sandbox: Literal["auto", "off"] = "auto"


class Settings(Strict):
    hub: HubSettings = Field(default_factory=HubSettings)
    workspaces: WorkspaceSettings = Field(default_factory=WorkspaceSettings)
    reports: ReportSettings = Field(default_factory=ReportSettings)
    isolation: IsolationSettings = Field(default_factory=IsolationSettings)


def load_settings(home: Home) -> Settings:
    path = home.root / "settings.yaml"
    if not path.exists():
        return Settings()
    return parse_or_refuse(Settings, load_yaml(path, "settings.yaml"))
