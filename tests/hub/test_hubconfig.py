"""The JupyterHub configuration is a pure function of HOME's state: tested without a hub."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PrefixLoader
from jupyterhub._data import DATA_FILES_PATH
from jupyterhub.app import JupyterHub
from oauthenticator.azuread import AzureAdOAuthenticator
from oauthenticator.generic import GenericOAuthenticator
from traitlets.config import Config

from dossierhub.state.directory import DossierEntry
from dossierhub.state.settings import Settings
from dossierhub.workspaces.hubconfig import HubInputs, make_config

from helpers import run_cli

HOME = Path("/srv/dossierhub")
ARMOEDE = DossierEntry(
    "armoede",
    "Poverty",
    "Why",
    "art. 6",
    "2099-01-01",
    ("a.jansen",),
    ("b.devries",),
    ("d.visser",),
)
OLD = DossierEntry("oud", "Old", "Why", "art. 6", "2020-01-01", ("x.y",), (), ())


def config(**settings: object) -> Config:
    inputs = HubInputs(
        HOME,
        Settings.model_validate(settings),
        (ARMOEDE, OLD),
        "proxy-secret",
        "service-secret",
        "/opt/env/bin/python",
        "oauth-secret",
    )
    return make_config(inputs)


def test_embedded_default() -> None:
    c = config()
    assert c.JupyterHub.bind_url == "http://127.0.0.1:8000/"
    assert c.JupyterHub.hub_bind_url == "http://127.0.0.1:8002"
    assert c.ConfigurableHTTPProxy.api_url == "http://127.0.0.1:8001"
    assert c.ConfigurableHTTPProxy.should_start is False
    assert c.JupyterHub.cleanup_servers is False
    assert c.JupyterHub.db_url == "sqlite:////srv/dossierhub/hub/jupyterhub.sqlite"
    assert c.JupyterHub.spawner_class == "dossierhub.workspaces.spawner.DossierSpawner"
    assert c.DossierSpawner.workspace_python == "/opt/env/bin/python"
    assert c.Spawner.term_timeout == 5  # then SIGKILL: a busy kernel holds no stop for long
    assert (
        c.JupyterHub.authenticator_class
        == "dossierhub.workspaces.hub_auth.LocalPasswordAuthenticator"
    )
    assert c.LocalPasswordAuthenticator.passwords_file == "/srv/dossierhub/hub/passwords.json"
    assert c.Spawner.server_token_scopes == ["users:activity!user", "access:servers!server"]


def test_ports_and_address_from_settings() -> None:
    c = config(hub={"ip": "0.0.0.0", "port": 9000})
    assert c.JupyterHub.bind_url == "http://0.0.0.0:9000/"
    assert c.ConfigurableHTTPProxy.api_url == "http://127.0.0.1:9001"
    assert c.JupyterHub.hub_bind_url == "http://127.0.0.1:9002"


def test_roles_let_leads_and_analysts_reach_only_their_workspace() -> None:
    roles = {r["name"]: r for r in config().JupyterHub.load_roles}
    team = roles["dossier-armoede-team"]
    assert team["groups"] == ["dossier-armoede"]
    assert sorted(team["scopes"]) == sorted(
        [
            "access:servers!user=dossier-armoede",
            "servers!user=dossier-armoede",
            "read:users:name!user=dossier-armoede",
        ]
    )
    groups = config().JupyterHub.load_groups
    assert groups["dossier-armoede"] == {"users": ["a.jansen", "b.devries"]}
    assert groups["dossier-armoede-viewers"] == {"users": ["d.visser"]}
    assert roles["dossierhub-provisioner"]["services"] == ["dossierhub"]
    assert roles["idle-culler"]["scopes"] == [
        "list:users",
        "read:users:activity",
        "read:servers",
        "delete:servers",
    ]


def test_services_cull_idle_and_expired_workspaces() -> None:
    services = {
        s["name"]: s
        for s in config(
            workspaces={"idle_timeout_seconds": 900}, hub={"expiry_check_seconds": 300}
        ).JupyterHub.services
    }
    assert services["dossierhub"]["api_token"] == "service-secret"
    assert "--timeout=900" in services["idle-culler"]["command"]
    assert services["dossierhub-expiry"]["command"][-2:] == ["--every", "300"]


def test_workspaces_and_the_service_skip_the_authorize_page() -> None:
    # JupyterHub names a user's default server's OAuth client jupyterhub-user-<name> and a
    # service's service-<name>; these replace its own list, so the service must be in it
    no_confirm = config().JupyterHub.tornado_settings["oauth_no_confirm_list"]
    assert no_confirm == {
        "jupyterhub-user-dossier-armoede",
        "jupyterhub-user-dossier-oud",
        "service-dossierhub",
    }


def test_jupyterhub_accepts_the_config() -> None:
    app = JupyterHub(config=config())
    assert app.bind_url == "http://127.0.0.1:8000/"
    assert [r["name"] for r in app.load_roles][:2] == ["dossier-armoede-team", "dossier-oud-team"]
    assert app.cleanup_servers is False


OAUTH = {
    "client_id": "dossierhub",
    "client_secret_file": "/srv/secret",
    "callback_url": "https://hub.example/hub/oauth_callback",
}


def test_generic_oidc() -> None:
    c = config(
        hub={
            "authenticator": "generic-oauth",
            "oauth": {
                **OAUTH,
                "authorize_url": "https://idp.example/authorize",
                "token_url": "https://idp.example/token",
                "userdata_url": "https://idp.example/userinfo",
                "username_claim": "email",
            },
        }
    )
    assert c.JupyterHub.authenticator_class == "oauthenticator.generic.GenericOAuthenticator"
    authenticator = GenericOAuthenticator(config=c)
    assert authenticator.client_secret == "oauth-secret"
    assert authenticator.token_url == "https://idp.example/token"
    assert authenticator.allow_all is True
    assert authenticator.username_claim({"email": "A.Jansen@Amsterdam.nl"}) == "a.jansen"


def test_entra_id_oidc() -> None:
    c = config(
        hub={
            "authenticator": "azuread",
            "oauth": {**OAUTH, "tenant_id": "tenant-1", "strip_domain": False},
        }
    )
    authenticator = AzureAdOAuthenticator(config=c)
    assert authenticator.tenant_id == "tenant-1"
    assert authenticator.username_claim({"preferred_username": "a.jansen@x.nl"}) == "a.jansen@x.nl"


def test_oauth_without_its_settings_is_refused() -> None:
    with pytest.raises(ValueError, match=r"needs hub\.oauth"):
        config(hub={"authenticator": "azuread"})


def test_bad_settings_file_is_refused(home: Path) -> None:
    (home / "settings.yaml").write_text("hub:\n  port: lots\n  colour: blue\n")
    result = run_cli(home, "serve")
    assert result.exit_code == 1
    assert "settings.yaml, line 2, hub.port" in result.stderr
    assert "settings.yaml, line 3, hub.colour: unknown key 'colour'" in result.stderr


def test_passwords_are_stored_hashed(home: Path) -> None:
    result = run_cli(home, "passwd", "a.jansen", "--password-stdin", input="s3cret-enough\n")
    assert result.exit_code == 0
    stored = (home / "hub" / "passwords.json").read_text()
    assert "s3cret-enough" not in stored and "scrypt$" in stored
    assert (home / "hub" / "passwords.json").stat().st_mode & 0o777 == 0o600
    refused = run_cli(home, "passwd", "dossier-armoede", "--password-stdin", input="x" * 9)
    assert refused.exit_code == 1 and "never log in" in refused.stderr
    short = run_cli(home, "passwd", "a.jansen", "--password-stdin", input="short\n")
    assert short.exit_code == 1 and "too short" in short.stderr


def hub_templates() -> Environment:
    """The hub's own template loader as JupyterHub 6.1 builds it from `template_paths`
    (app.py init_tornado_settings): the originals also under the "templates/" prefix."""
    original = str(Path(DATA_FILES_PATH) / "templates")
    paths = [*config().JupyterHub.template_paths, original]
    prefixed = PrefixLoader({"templates": FileSystemLoader([original])}, "/")
    return Environment(loader=ChoiceLoader([prefixed, FileSystemLoader(paths)]), autoescape=True)


def test_people_land_on_the_dossiers_page_not_the_hub_home() -> None:
    c = config()
    assert c.JupyterHub.default_url == "/services/dossierhub/"  # after login and at /
    html = hub_templates().get_template("home.html").render(**hub_page(admin=False))
    assert '<meta http-equiv="refresh" content="0; url=/services/dossierhub/">' in html
    assert "Open workspace" not in html and "Details and reports" not in html


def test_the_bar_names_the_person_looking_on_a_workspace_s_start_pages() -> None:
    """JupyterHub's spawn-pending and not-running pages pass the workspace's account as
    `user`; the bar must still name (and give the tools of) the person looking."""
    looking = hub_page(admin=True)
    workspace = SimpleNamespace(name="dossier-armoede", admin=False)
    person = config().JupyterHub.template_vars["dossierhub_person"](looking["user"])
    nav = hub_templates().from_string('{% include "dh_nav.html" %}')
    html = nav.render(**{**looking, "user": workspace, "dossierhub_person": person})
    assert ">z.beheer</span>" in html and "dossier-armoede" not in html
    assert 'id="nav-hub-users"' in html  # the admin's tools, not the workspace account's


def hub_page(admin: bool) -> dict:
    """What JupyterHub's BaseHandler.template_namespace gives a page (the parts ours use)."""
    return {
        "base_url": "/hub/",
        "prefix": "/",
        "user": SimpleNamespace(
            name="z.beheer",
            admin=admin,
            json_escaped_name="z.beheer",
            spawner=SimpleNamespace(options_form=None),
        ),
        "logout_url": "/hub/logout",
        "static_url": lambda path, include_version=True: f"/hub/static/{path}",
        "services": [SimpleNamespace(name="dossierhub", href="/services/dossierhub/")],
        "parsed_scopes": set(),
        "xsrf_token": "x",
    }


@pytest.mark.parametrize("admin", [False, True])
def test_the_hubs_pages_get_the_one_bar_and_the_landmarks(admin: bool) -> None:
    html = hub_templates().get_template("token.html").render(**hub_page(admin))
    assert html.count('<main id="main" tabindex="-1">') == 1 and html.count("</main>") == 1
    assert html.count("<h1") == 1
    assert html.index('id="skip-link"') < html.index("<nav") < html.index("<main")
    assert 'aria-label="dossierhub"' in html
    assert 'href="/services/dossierhub/">Dossiers</a>' in html
    assert ('id="nav-token" href="/hub/token" aria-current="page"' in html) is admin
    assert ('id="nav-services"' in html) is admin
    assert ('id="nav-admin"' in html) is admin
    assert ">Home</a>" not in html  # JupyterHub's own links are gone


def test_the_hub_users_page_closes_its_landmark_before_its_footer() -> None:
    html = hub_templates().get_template("admin.html").render(**hub_page(True), api_page_limit=50)
    assert html.count("<main") == 1 and html.count("<h1") == 1
    assert html.index("</main>") < html.index("version_footer")
    assert 'id="nav-hub-users" href="/hub/admin" aria-current="page"' in html
