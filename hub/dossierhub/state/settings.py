"""HOME/settings.yaml: the installation's few operator settings (all optional)."""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from dossierhub.state.home import Home
from dossierhub.state.models import Strict
from dossierhub.state.yamlfile import load_yaml, parse_or_refuse


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
    # where workspaces run: processes on this machine, or pods (the `kubernetes` settings)
    spawner: Literal["local", "kubernetes"] = "local"
    oauth: OAuthSettings | None = None
    admins: list[str] = Field(default_factory=list)
    expiry_check_seconds: int = Field(default=600, ge=5)
    # the pages' dates before the browser's script shows them in the reader's own zone
    time_zone: str = "Europe/Amsterdam"
    # JupyterHub's database: None is the SQLite file under HOME (Home.hub_db_file); a
    # PostgreSQL server lets the hub move to another machine (issue 14)
    db_url: str | None = None
    # the database password, read at the hub's start, so settings.yaml holds no secret
    db_password_file: str | None = None

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ValueError, ZoneInfoNotFoundError):
            raise ValueError(
                f"'{value}' is not an IANA time zone such as Europe/Amsterdam or UTC"
            ) from None
        return value

    @field_validator("db_url")
    @classmethod
    def _db_url(cls, value: str | None) -> str | None:
        return None if value is None else check_db_url(value)

    @field_validator("db_password_file")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        # serve checks it from where it was started, the hub reads it from HOME/hub
        if value is not None and not value.startswith("/"):
            raise ValueError("give the file's full path, starting with /")
        return value


DB_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg")


def check_db_url(value: str) -> str:
    """A hub database URL JupyterHub can open here, with no password in it. The errors never
    repeat the URL (`secret` errors are not echoed): a mistyped one may hold a password."""
    try:
        parts = urlsplit(value)
        password = parts.password
    except ValueError:
        raise PydanticCustomError("secret", "this is not a database URL") from None
    if parts.scheme not in DB_SCHEMES:
        raise PydanticCustomError(
            "secret",
            "the hub's database must be sqlite:///<file> or postgresql://<user>@<host>/<db>, "
            "not a {scheme} URL",
            {"scheme": parts.scheme or "schemeless"},
        )
    if password is not None:
        raise PydanticCustomError(
            "secret",
            "the URL holds a password: remove it and put it in a file named by "
            "hub.db_password_file",
        )
    return value


class WorkspaceSettings(Strict):
    idle_timeout_seconds: int = Field(default=3600, ge=60)
    duckdb_memory_limit: str = "2GB"
    duckdb_threads: int = Field(default=2, ge=1)
    auth_cache_seconds: int = Field(default=5, ge=0)
    start_timeout_seconds: int = Field(default=60, ge=5)
    python: str | None = None  # the environment workspaces run in; default: dossierhub's own


_DNS_LABEL = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"


class KubernetesSettings(Strict):
    """Where and how workspaces run as pods (hub.spawner: kubernetes;
    workspaces/kubespawner.py). The hub, proxy and DNS labels are what the workspace's
    network policy lets it reach; the defaults are those of Zero to JupyterHub's chart."""

    # the API server; default: the cluster the hub runs in, else $KUBECONFIG
    api_url: str | None = Field(default=None, pattern=r"^https?://")
    namespace: str = Field(default="dossierhub", pattern=_DNS_LABEL)
    # apply's own namespace (deploy/chart apply.namespace), where it and the master key live
    # apart from the hub, which may read Secrets in its own; the hub's network policy admits
    # apply's pods from there. Default: `namespace` with "-apply", as the chart's
    apply_namespace: str | None = Field(default=None, pattern=_DNS_LABEL)
    image: str | None = Field(default=None, min_length=1)  # required with hub.spawner kubernetes
    # the image report runs' Jobs run (deploy/images, target runner); default: `image`
    runner_image: str | None = Field(default=None, min_length=1)
    # the hub's own image (deploy/images): `dossierhub k8s values` needs it
    hub_image: str | None = Field(default=None, min_length=1)
    # the read-write-many volume claim holding HOME: a pod mounts only its dossier's folders
    home_claim: str = Field(default="dossierhub-home", pattern=_DNS_LABEL)
    # what JupyterLab and the kernels' Python use beside DuckDB's memory limit
    memory_overhead: str = Field(default="1Gi", pattern=r"^\d+(Mi|Gi)$")
    # a workspace pod's /tmp (an emptyDir): past it the kubelet evicts the pod
    tmp_size: str = Field(default="1Gi", pattern=r"^\d+(Mi|Gi)$")
    hub_labels: dict[str, str] = Field(
        default_factory=lambda: {"app": "jupyterhub", "component": "hub"}
    )
    hub_port: int = Field(default=8081, ge=1, le=65535)
    proxy_labels: dict[str, str] = Field(
        default_factory=lambda: {"app": "jupyterhub", "component": "proxy"}
    )
    dns_namespace: str = Field(default="kube-system", pattern=_DNS_LABEL)
    dns_labels: dict[str, str] = Field(default_factory=lambda: {"k8s-app": "kube-dns"})
    # the control identity (uid, and the gid of the same number) of the hub's and the
    # service's pods: it holds on HOME what root holds on one machine (isolation/unixusers.py
    # control_owner); below the dossiers' pod numbers (isolation/podids.py FIRST_ID), never root
    control_uid: int = Field(default=10000, ge=1, lt=200_000)

    @field_validator("hub_labels", "proxy_labels", "dns_labels")
    @classmethod
    def _selector(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            # an empty selector matches every pod: the policy would let a workspace reach all
            raise ValueError("give at least one label, such as component: hub")
        return value

    @property
    def apply_namespace_name(self) -> str:
        """apply's namespace: `apply_namespace`, or `namespace` with "-apply"."""
        return self.apply_namespace or f"{self.namespace}-apply"

    @model_validator(mode="after")
    def _apply_apart(self) -> KubernetesSettings:
        name = self.apply_namespace_name
        if name == self.namespace:
            raise ValueError(
                f"apply_namespace is {name!r}, the hub's own namespace: apply and the master "
                "key need one of their own, where the hub can read no Secret"
            )
        if len(name) > 63:
            raise ValueError(f"apply_namespace {name!r} is longer than 63 characters: name one")
        return self


class ReportSettings(Strict):
    parallel_per_dossier: int = Field(default=2, ge=1, le=64)
    # kernels the dossierhub service starts ahead of time for a dossier after its first run
    # from the pages or the API (each used once, by that dossier only); 0 turns it off
    prestart_kernels: int = Field(default=1, ge=0, le=8)
    # where a run's notebook executes: a kernel on this machine, or a Kubernetes Job per run
    # (reports/jobs.py; the kernels started ahead of time are then off)
    backend: Literal["local", "kubernetes"] = "local"


class IsolationSettings(Strict):
    """How workspaces and report kernels are kept apart (run as root)."""

    # Unix identities are `<prefix>-<id>` (workspace) and `<prefix>r-<id>` (report runs): two
    # installations on one machine need two prefixes, since a name belongs to one HOME
    prefix: str = Field(default="dh", pattern=r"^[a-z][a-z0-9]{1,5}$")
    # "auto": bubblewrap sandboxes when it works here (said once at start when it does not);
    # "off": Unix identities only
    sandbox: Literal["auto", "off"] = "auto"


SyslogFacility = Literal[
    "auth", "authpriv", "daemon", "security", "syslog", "user",
    "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
]  # fmt: skip

_HOST_PORT = re.compile(
    r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.-]+))(?::(?P<port>\d{1,5}))?$"
)


class SyslogSettings(Strict):
    """Where the audit log's witness sends each head (docs/audit.md)."""

    # a Unix socket (a path: the machine's syslog) or host[:port] of a remote syslog (a SIEM)
    address: str = "/dev/log"
    protocol: Literal["udp", "tcp"] = "udp"  # for host:port; a socket takes what it serves
    facility: SyslogFacility = "auth"
    # the most one append waits for the witness (connecting and sending, each)
    timeout_seconds: float = Field(default=2.0, gt=0, le=30)

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        if value.startswith("/"):
            return value
        match = _HOST_PORT.match(value)
        if match is None or not 0 < int(match["port"] or 514) < 65536:
            raise ValueError(
                "give a socket path such as /dev/log, or host:port such as siem.example.org:514"
            )
        return value

    def endpoint(self) -> str | tuple[str, int]:
        """The address as SysLogHandler takes it: a path, or (host, port) (514 by default)."""
        if self.address.startswith("/"):
            return self.address
        match = _HOST_PORT.match(self.address)
        assert match is not None  # checked by the validator
        return (match["v6"] or match["host"], int(match["port"] or 514))


class AuditSettings(Strict):
    # auto: syslog when `syslog.address` is host:port or a socket that exists; none: no witness
    witness: Literal["auto", "syslog", "none"] = "auto"
    syslog: SyslogSettings = Field(default_factory=SyslogSettings)
    # where the log lives: audit/audit.jsonl under HOME, or a table in the hub's PostgreSQL
    # database (hub.db_url), shared by every pod; `dossierhub audit migrate` moves a file log
    store: Literal["file", "postgresql"] = "file"
    # a file holding only the audit keys (`dossierhub audit key`): who appends with it never
    # needs secrets/master.key (the hub and service in their pods); default: the master key
    key_file: str | None = None
    # what a workspace's execution record keeps of the code a person ran (netbridge.py): its
    # sha256 and first line, or the whole code (which may hold data: read it as such)
    executions_code: Literal["hash", "full"] = "hash"

    @field_validator("key_file")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError("give the file's full path, starting with /")
        return value


class Settings(Strict):
    hub: HubSettings = Field(default_factory=HubSettings)
    workspaces: WorkspaceSettings = Field(default_factory=WorkspaceSettings)
    reports: ReportSettings = Field(default_factory=ReportSettings)
    isolation: IsolationSettings = Field(default_factory=IsolationSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    kubernetes: KubernetesSettings = Field(default_factory=KubernetesSettings)

    @model_validator(mode="after")
    def _kubernetes_needs_an_image(self) -> Settings:
        if self.hub.spawner == "kubernetes" and self.kubernetes.image is None:
            raise ValueError(
                "hub.spawner kubernetes needs kubernetes.image: the workspace image, such as "
                "registry.example.org/dossierhub-workspace:1.0"
            )
        kube = self.kubernetes
        if self.reports.backend == "kubernetes" and (kube.runner_image or kube.image) is None:
            raise ValueError(
                "reports.backend kubernetes needs kubernetes.runner_image (or kubernetes.image): "
                "the image report runs execute in, such as "
                "registry.example.org/dossierhub-runner:1.0"
            )
        return self

    @model_validator(mode="after")
    def _audit_table_needs_postgresql(self) -> Settings:
        if self.audit.store == "postgresql" and not (self.hub.db_url or "").startswith(
            "postgresql"
        ):
            raise ValueError(
                "audit.store postgresql keeps the log in the hub's PostgreSQL database: set "
                "hub.db_url to postgresql://<user>@<host>/<db>, or use audit.store file"
            )
        return self


def load_settings(home: Home) -> Settings:
    path = home.settings_file
    if not path.exists():
        return Settings()
    return parse_or_refuse(Settings, load_yaml(path, "settings.yaml"))
