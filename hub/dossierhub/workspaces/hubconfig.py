"""JupyterHub configuration as a pure function of HOME's state (as The Littlest JupyterHub
does it): `make_config` builds a traitlets Config from plain inputs and starts nothing, so it
is unit-tested by comparing values. `load_hub_config` gathers the inputs for a real hub."""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from sqlalchemy.engine import make_url
from traitlets.config import Config

from dossierhub.isolation.environment import workspace_python
from dossierhub.state import database
from dossierhub.state.audit import set_channel
from dossierhub.state.decisions import hub_request_logger
from dossierhub.state.directory import WORKSPACE_PREFIX, DossierEntry, read_directory
from dossierhub.state.home import Home
from dossierhub.state.roles import may_open_workspace
from dossierhub.state.settings import Settings, load_settings
from dossierhub.workspaces.hub_auth import refuse_workspace_accounts
from dossierhub.workspaces.tokens import read_token

if TYPE_CHECKING:
    from jupyterhub.user import User

TEMPLATES = Path(__file__).parent / "templates"
SERVICE = "dossierhub"
SERVICE_URL = f"/services/{SERVICE}/"  # the dossierhub pages, everyone's home


@dataclass(frozen=True)
class HubInputs:
    home: Path
    settings: Settings
    dossiers: tuple[DossierEntry, ...]
    proxy_token: str
    service_token: str
    workspace_python: str
    oauth_client_secret: str = ""
    db_password: str = field(default="", repr=False)


class HubConfigError(Exception):
    """The hub cannot be configured from HOME's settings (a missing secret file)."""


class SecretURL(str):
    """A database URL with its password in it, as JupyterHub needs it (its alembic step opens
    the database from the URL alone, so SQLAlchemy's connect_args would not reach it), that
    shows with *** for the password wherever the Config holding it is printed. JupyterHub
    redacts the password itself when it logs the URL."""

    def __repr__(self) -> str:
        return repr(make_url(str(self)).render_as_string(hide_password=True))


def ports(settings: Settings) -> tuple[int, int, int, int]:
    """Public proxy port, proxy API port, hub port, dossierhub service port: four in a row
    from `hub.port` (all but the first on 127.0.0.1)."""
    port = settings.hub.port
    return port, port + 1, port + 2, port + 3


def make_config(inputs: HubInputs) -> Config:
    c = Config()
    settings, home = inputs.settings, inputs.home
    public, proxy_api, hub_port, _ = ports(settings)
    c.JupyterHub.bind_url = f"http://{settings.hub.ip}:{public}/"
    c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{hub_port}"
    c.JupyterHub.db_url = db_url(settings, home, inputs.db_password)
    c.JupyterHub.cookie_secret_file = str(Home(home).cookie_secret_file)
    c.JupyterHub.pid_file = str(Home(home).hub_pid_file)
    # dossierhub serve runs the proxy; it outlives hub restarts, and so do the workspaces
    c.ConfigurableHTTPProxy.should_start = False
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{proxy_api}"
    c.ConfigurableHTTPProxy.auth_token = inputs.proxy_token
    c.JupyterHub.cleanup_servers = False
    c.JupyterHub.allow_named_servers = False
    # one home: after login and at / a person lands on the dossierhub pages (the hub's own
    # /hub/home is only a pointer there, templates/home.html)
    c.JupyterHub.default_url = SERVICE_URL
    # page.html (the one navigation bar, shared with the service) and the hub pages it changes
    c.JupyterHub.template_paths = [str(TEMPLATES)]
    c.JupyterHub.template_vars = {
        # the person looking (the start pages pass the workspace's account as `user`)
        "dossierhub_person": _person,
        "dossierhub_workspaces": workspaces_for(home),
        # the start, not-running and error pages (templates/): what happened, whom to ask
        "dossierhub_dossier": dossier_facts_for(home, tuple(settings.hub.admins)),
    }
    c.JupyterHub.tornado_settings = {
        # the hub's request log, which also audits the hub's own refusals of a workspace
        "log_function": hub_request_logger(Home(home)),
        # the role already decides who may open a workspace or the pages; JupyterHub's
        # "Authorize access" page would only teach people to click through security dialogs
        "oauth_no_confirm_list": no_confirm_clients(inputs.dossiers),
    }

    _spawner(c, inputs)
    c.Spawner.start_timeout = settings.workspaces.start_timeout_seconds
    c.Spawner.http_timeout = settings.workspaces.start_timeout_seconds
    c.Spawner.default_url = "/lab"
    # the workspace's own token (readable by every kernel in it) may only report activity
    # and let the server check who is knocking; it cannot list people or start anything
    c.Spawner.server_token_scopes = ["users:activity!user", "access:servers!server"]

    _authenticator(c, inputs)
    c.JupyterHub.load_groups = {
        group: {"users": list(people)}
        for entry in inputs.dossiers
        for group, people in ((entry.group, entry.workers), (entry.viewer_group, entry.viewers))
    }
    c.JupyterHub.load_roles = roles(inputs.dossiers)
    c.JupyterHub.services = services(inputs)
    return c


def _spawner(c: Config, inputs: HubInputs) -> None:
    """hub.spawner: local processes (spawner.py) or pods (kubespawner.py), each given HOME,
    the workspace Python and the auth cache; the DuckDB limits come with the dossier's
    environment (environment.py), not from here."""
    settings = inputs.settings
    if settings.hub.spawner == "local":
        c.JupyterHub.spawner_class = "dossierhub.workspaces.spawner.DossierSpawner"
        section = c.DossierSpawner
        # a stop (a person, the culler, expiry, apply) waits this long for the server's own
        # shutdown before SIGKILL (spawner.py stop); JupyterHub's 30 s held a busy kernel's
        # workspace for a minute (a pod's grace is KubeSpawner's delete_grace_period)
        c.Spawner.term_timeout = 5
    else:
        c.JupyterHub.spawner_class = "dossierhub.workspaces.kubespawner.DossierKubeSpawner"
        section = c.DossierKubeSpawner
        kube = settings.kubernetes
        section.kubernetes = kube.model_dump()
        c.KubeSpawner.namespace = kube.namespace
        c.KubeSpawner.image = kube.image
        if kube.api_url is not None:
            c.KubeSpawner.k8s_api_host = kube.api_url
        # no Kubernetes API credentials in a workspace, and no variables naming every
        # service of the namespace
        c.KubeSpawner.automount_service_account_token = False
        c.KubeSpawner.service_account = None
        c.KubeSpawner.extra_pod_config = {"enableServiceLinks": False}
        c.KubeSpawner.storage_pvc_ensure = False  # HOME's claim is the only storage
    section.dossierhub_home = str(inputs.home)
    section.workspace_python = inputs.workspace_python
    section.auth_cache_seconds = settings.workspaces.auth_cache_seconds


def db_url(settings: Settings, home: Path, password: str = "") -> str:
    """The hub's database: the SQLite file under HOME unless `hub.db_url` names another.
    A plain postgresql:// URL gets SQLAlchemy's psycopg (3) driver, the one installed; the
    password (from `hub.db_password_file`) goes in quoted, into a `SecretURL`."""
    url = settings.hub.db_url
    if url is None:
        return f"sqlite:///{Home(home).hub_db_file}"
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if not password:
        return url
    scheme, rest = url.split("://", 1)
    authority, slash, tail = rest.partition("/")
    user, _, place = authority.rpartition("@")
    return SecretURL(f"{scheme}://{user}:{quote(password, safe='')}@{place}{slash}{tail}")


def read_db_password(settings: Settings) -> str:
    """The database password from `hub.db_password_file` ("" without one), by the one rule
    in state/database.py; its error as a HubConfigError for serve and `k8s values`."""
    try:
        return database.read_db_password(settings)
    except database.DatabaseSettingsError as exc:
        raise HubConfigError(str(exc)) from None


def no_confirm_clients(dossiers: tuple[DossierEntry, ...]) -> set[str]:
    """The OAuth clients JupyterHub lets through without its confirm page: every dossier's
    workspace (`jupyterhub-user-<name>`, as JupyterHub names a user's default server) and the
    dossierhub service (`service-<name>`). Replaces the hub's own list, which holds only the
    services marked `oauth_no_confirm`, so the service is named here too."""
    workspaces = {f"jupyterhub-user-{quote(entry.hub_user)}" for entry in dossiers}
    return {*workspaces, f"service-{SERVICE}"}


def roles(dossiers: tuple[DossierEntry, ...]) -> list[dict]:
    """Default deny: one role per dossier lets its leads and analysts open, start and stop
    that one workspace; viewers and everyone else get nothing of it."""
    per_dossier = [
        {
            "name": f"{entry.hub_user}-team",
            "description": f"Open, start and stop the workspace of dossier {entry.id}",
            "scopes": [
                f"access:servers!user={entry.hub_user}",
                f"servers!user={entry.hub_user}",
                f"read:users:name!user={entry.hub_user}",
            ],
            "groups": [entry.group],
        }
        for entry in dossiers
    ]
    return [
        *per_dossier,
        {
            "name": "user",
            "description": "Every person: their own account, and the dossierhub pages (which "
            "show each person only the dossiers they are a member of)",
            "scopes": ["self", f"access:services!service={SERVICE}"],
        },
        {
            "name": "dossierhub-provisioner",
            "description": "dossierhub apply and serve: users, groups, servers and tokens",
            "scopes": [
                "admin:users",
                "admin:groups",
                "admin:servers",
                "tokens",
                "list:users",
                "read:users",
                "read:groups",
            ],
            "services": [SERVICE],
        },
        {
            "name": "dossierhub-expiry",
            "description": "Stop the workspaces of expired dossiers",
            "scopes": ["list:users", "read:users", "admin:servers"],
            "services": ["dossierhub-expiry"],
        },
        {
            "name": "idle-culler",
            "description": "Stop idle workspaces",
            "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
            "services": ["idle-culler"],
        },
    ]


def services(inputs: HubInputs) -> list[dict]:
    python = sys.executable
    settings = inputs.settings
    service_port = ports(settings)[3]
    return [
        {
            # run by `dossierhub serve` beside the proxy, so it outlives hub restarts
            "name": SERVICE,
            "api_token": inputs.service_token,
            "url": f"http://127.0.0.1:{service_port}",
            "oauth_no_confirm": True,
            "display": True,
        },
        {
            "name": "idle-culler",
            "cwd": str(Home(inputs.home).hub_dir),
            "command": [
                python,
                "-I",
                "-m",
                "jupyterhub_idle_culler",
                f"--timeout={settings.workspaces.idle_timeout_seconds}",
                f"--cull-every={max(60, settings.workspaces.idle_timeout_seconds // 6)}",
            ],
        },
        {
            "name": "dossierhub-expiry",
            "cwd": str(Home(inputs.home).hub_dir),
            "command": [
                python,
                "-I",
                "-m",
                "dossierhub.workspaces.expiry",
                "--home",
                str(inputs.home),
                "--every",
                str(settings.hub.expiry_check_seconds),
            ],
        },
    ]


def _authenticator(c: Config, inputs: HubInputs) -> None:
    hub = inputs.settings.hub
    c.Authenticator.admin_users = set(hub.admins)
    # workspace accounts never log in, whatever the identity provider says (not through
    # blocked_users: JupyterHub strips blocked users' roles and would orphan their servers)
    c.Authenticator.post_auth_hook = refuse_workspace_accounts
    if hub.authenticator == "local":
        c.JupyterHub.authenticator_class = (
            "dossierhub.workspaces.hub_auth.LocalPasswordAuthenticator"
        )
        c.LocalPasswordAuthenticator.passwords_file = str(Home(inputs.home).passwords_file)
        return
    from dossierhub.workspaces.hub_auth import oauth_username

    oauth = hub.oauth
    if oauth is None:
        raise ValueError(f"settings.yaml: hub.authenticator {hub.authenticator} needs hub.oauth")
    cls = (
        "GenericOAuthenticator" if hub.authenticator == "generic-oauth" else "AzureAdOAuthenticator"
    )
    module = "generic" if hub.authenticator == "generic-oauth" else "azuread"
    c.JupyterHub.authenticator_class = f"oauthenticator.{module}.{cls}"
    section = getattr(c, cls)
    section.client_id = oauth.client_id
    section.client_secret = inputs.oauth_client_secret
    section.oauth_callback_url = oauth.callback_url
    section.scope = list(oauth.scope)
    section.username_claim = oauth_username(oauth.username_claim, oauth.strip_domain)
    section.allow_all = True  # what a person may open is decided by dossier roles
    if hub.authenticator == "azuread":
        section.tenant_id = oauth.tenant_id
    else:
        section.authorize_url = oauth.authorize_url
        section.token_url = oauth.token_url
        section.userdata_url = oauth.userdata_url


def _person(user: User | None) -> User | None:
    return user


def workspaces_for(home: Path) -> Callable[[User | None], list[dict]]:
    """Template variable: the dossiers of the person looking at a hub page (the not-yours
    page picks among them; the hub's home is only a pointer to the dossierhub pages)."""

    def listing(user: User | None) -> list[dict]:
        rows: list[dict] = []
        if user is None:  # pages before login render templates too
            return rows
        for entry in read_directory(Home(home)):
            role = entry.role_of(user.name)
            if role is None:
                continue
            rows.append(
                {
                    "id": entry.id,
                    "title": entry.title,
                    "purpose": entry.purpose,
                    "expires": entry.expires,
                    "expired": entry.expired(),
                    "role": role,
                    "can_open": may_open_workspace(entry, user.name) is None,
                    "hub_user": entry.hub_user,
                }
            )
        return rows

    return listing


def dossier_facts_for(
    home: Path, admins: tuple[str, ...]
) -> Callable[[User | None], Callable[[str], dict | None]]:
    """Template variable: `dossierhub_dossier(name)` on the hub's own pages gives the facts
    of the dossier `name` (its id or its workspace's hub user, `dossier-<id>`) for the
    person looking, or None when they are not its member: a stranger learns nothing of a
    dossier, not even that it exists (as on the dossierhub pages)."""

    def for_person(user: User | None) -> Callable[[str], dict | None]:
        def facts(name: str) -> dict | None:
            dossier_id = str(name).removeprefix(WORKSPACE_PREFIX)
            entry = next((e for e in read_directory(Home(home)) if e.id == dossier_id), None)
            role = entry.role_of(user.name) if entry is not None and user is not None else None
            if entry is None or user is None or role is None:
                return None
            return dossier_facts(entry, user.name, role, admins)

        return facts

    return for_person


def dossier_facts(
    entry: DossierEntry, person: str, role: str, admins: tuple[str, ...]
) -> dict[str, object]:
    """What the hub's pages say about one dossier to one of its members (a pure function)."""
    expires = dt.date.fromisoformat(entry.expires)
    return {
        "id": entry.id,
        "title": entry.title,
        "role": role,
        "expired": entry.expired(),
        "expires": f"{expires.day} {expires:%b %Y}",  # 31 Dec 2025: no reading of ISO dates
        "can_open": may_open_workspace(entry, person) is None,
        "page": f"/services/{SERVICE}/dossiers/{quote(entry.id)}",
        # who may extend it: the admin edits the manifest; the rest of the team asks its
        # leads, who ask the admin (as the dossier page says it, portal.py)
        "ask_to_extend": _ask(admins)
        if person in entry.leads or not entry.leads
        else " or ".join(entry.leads),
        "ask_admin": _ask(admins),
    }


def _ask(admins: tuple[str, ...]) -> str:
    return f"an admin ({', '.join(admins)})" if admins else "an admin"


def load_hub_config(c: Config, home_dir: str) -> None:
    """Called from HOME/hub/jupyterhub_config.py, written by `dossierhub serve`."""
    set_channel("hub")  # the spawner's records (workspace.start) come from the hub
    home = Home(Path(home_dir))
    effective = home.effective_settings_file
    # serve writes the settings it runs with (settings.yaml plus its command-line overrides)
    settings = (
        Settings.model_validate_json(effective.read_text())
        if effective.exists()
        else load_settings(home)
    )
    secret = ""
    if settings.hub.oauth is not None:
        secret = Path(settings.hub.oauth.client_secret_file).read_text().strip()
    inputs = HubInputs(
        home=home.root,
        settings=settings,
        dossiers=tuple(read_directory(home)),
        proxy_token=read_token(home, "proxy"),
        service_token=read_token(home, "service"),
        workspace_python=workspace_python(settings),
        oauth_client_secret=secret,
        db_password=read_db_password(settings),
    )
    c.merge(make_config(inputs))
