"""`dossierhub k8s values`: values the Zero to JupyterHub chart accepts (checked against the
keys and types it documents, tests/deploy/z2jh_schema.py), that turn off what fights the
per-dossier spawner, hold no secret, and whose hub config really configures a hub."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from traitlets.config import Config
from z2jh_schema import Z2JH_VALUES

from dossierhub.state.home import Home
from dossierhub.state.init import init_home
from dossierhub.state.settings import Settings, load_settings
from dossierhub.workspaces.hubconfig import HubConfigError
from dossierhub.workspaces.k8svalues import ValuesError, z2jh_values
from dossierhub.workspaces.tokens import mint_tokens, token_file

from helpers import run_cli

WORKSPACE = "registry.example.org/dossierhub-workspace:1.4"
HUB = "registry.example.org/dossierhub-hub:1.4"
AUDIT_KEYS = "/run/secrets/dossierhub-audit/audit.keys"  # `dossierhub audit key --out`
SETTINGS: dict[str, dict[str, Any]] = {
    "postgres + Entra ID": {
        "hub": {
            "spawner": "kubernetes",
            "authenticator": "azuread",
            "db_url": "postgresql://hub@pg.example.org/hub",
            "db_password_file": "/run/secrets/db-password",
            "oauth": {
                "client_id": "dossierhub",
                "client_secret_file": "/run/secrets/oidc",
                "callback_url": "https://hub.example.org/hub/oauth_callback",
                "tenant_id": "tenant",
            },
        },
        "kubernetes": {"image": WORKSPACE, "hub_image": HUB},
        "audit": {"key_file": AUDIT_KEYS},
    },
    "sqlite + local passwords": {
        "hub": {"spawner": "kubernetes"},
        "workspaces": {"idle_timeout_seconds": 900},
        "kubernetes": {
            "image": "registry.example.org:5000/ws:2.0@sha256:" + "a" * 64,
            "hub_image": HUB,
            "home_claim": "city-home",
        },
        "audit": {"key_file": AUDIT_KEYS},
    },
}


def check_against_chart(values: dict[str, Any]) -> None:
    errors = sorted(jsonschema.Draft7Validator(Z2JH_VALUES).iter_errors(values), key=str)
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


@pytest.mark.parametrize("name", SETTINGS)
def test_the_values_fit_the_chart(name: str) -> None:
    check_against_chart(z2jh_values(Settings.model_validate(SETTINGS[name])))


def test_the_chart_facts_refuse_a_misspelt_key() -> None:
    """The fixture is closed where the chart is: a key the chart does not know fails."""
    values = z2jh_values(Settings.model_validate(SETTINGS["postgres + Entra ID"]))
    values["singleuser"]["cloudMetadata"]["blockWithIPTables"] = False
    with pytest.raises(AssertionError, match="blockWithIPTables"):
        check_against_chart(values)


def test_no_chart_default_fights_the_per_dossier_spawner() -> None:
    values = z2jh_values(Settings.model_validate(SETTINGS["sqlite + local passwords"]))
    user = values["singleuser"]
    # the spawner sets each dossier's own uid/gid and mounts only its folders of HOME
    assert (user["uid"], user["fsGid"], user["storage"]["type"]) == (None, None, "none")
    # the NET_ADMIN init container breaks the restricted Pod Security Standard
    assert user["cloudMetadata"]["blockWithIptables"] is False
    # policies add up, and the chart's singleuser policy always lets a pod out to the
    # proxy's public port: it is off, the spawner's per-dossier policy is the whole wall
    # (tests/hub/test_kubespawner_attacks.py shows what a workspace reaches)
    assert user["networkPolicy"] == {"enabled": False}
    assert user["image"] == {
        "name": "registry.example.org:5000/ws",
        "tag": "2.0@sha256:" + "a" * 64,
    }
    hub = values["hub"]
    assert hub["image"] == {"name": "registry.example.org/dossierhub-hub", "tag": "1.4"}
    assert hub["db"] == {"type": "sqlite-pvc"}
    assert hub["networkPolicy"]["egressAllowRules"]["nonPrivateIPs"] is False  # no login abroad
    assert {"name": "dossierhub-home", "persistentVolumeClaim": {"claimName": "city-home"}} in (
        hub["extraVolumes"]
    )
    assert values["cull"] == {"enabled": False}  # dossierhub's own culler instead
    # the service is registered without a token: the chart makes one and keeps it in a Secret
    assert hub["services"]["dossierhub"] == {
        "url": "http://dossierhub:8003",
        "oauth_no_confirm": True,
        "display": True,
    }


def test_secret_files_come_from_secrets_mounted_where_settings_name_them() -> None:
    values = z2jh_values(Settings.model_validate(SETTINGS["postgres + Entra ID"]))
    hub = values["hub"]
    assert hub["db"] == {"type": "postgres", "url": "postgresql://hub@pg.example.org/hub"}
    mounts = {m["mountPath"]: m for m in hub["extraVolumeMounts"]}
    volumes = {v["name"]: v for v in hub["extraVolumes"]}
    for path, secret, key in [
        ("/run/secrets/db-password", "dossierhub-db", "password"),
        ("/run/secrets/oidc", "dossierhub-oauth", "client-secret"),
        # the audit keys alone: the hub records its decisions without the master key
        (AUDIT_KEYS, "dossierhub-audit-key", "audit.keys"),
    ]:
        assert mounts[path] == {"name": secret, "mountPath": path, "subPath": key, "readOnly": True}
        # root's, without a group (no fsGroup): read by the hub's uid through "other"
        assert volumes[secret]["secret"] == {"secretName": secret, "defaultMode": 0o444}
    for context in (hub["podSecurityContext"], hub["containerSecurityContext"]):
        assert (context["runAsUser"], context["runAsGroup"]) == (10000, 10000)
        assert context["runAsNonRoot"] is True
    # the chart's fsGroup 1000 taken out (null drops it), over HOME as on every pod of ours
    assert "fsGroup" in hub["podSecurityContext"] and hub["podSecurityContext"]["fsGroup"] is None
    assert hub["containerSecurityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert hub["containerSecurityContext"]["allowPrivilegeEscalation"] is False
    # Entra ID is on the internet: the hub may reach it
    assert hub["networkPolicy"]["egressAllowRules"]["nonPrivateIPs"] is True


def test_values_without_the_audit_keys_are_refused() -> None:
    """On a cluster the master key is apply's alone: a hub without the audit keys could
    record no decision, so it would start no workspace."""
    settings = copy.deepcopy(SETTINGS["sqlite + local passwords"])
    del settings["audit"]
    with pytest.raises(ValuesError, match=r"audit\.key_file is needed on Kubernetes"):
        z2jh_values(Settings.model_validate(settings))


def kubernetes_home(tmp_path: Path) -> tuple[Home, dict[str, str]]:
    """A HOME configured for Kubernetes whose secrets all exist, and those secrets' values."""
    home = Home(tmp_path / "home")
    init_home(home)
    mint_tokens(home)
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "db-password").write_text("pg-Secret-4711\n")
    (secrets_dir / "oidc").write_text("oidc-Secret-0815\n")
    settings = copy.deepcopy(SETTINGS["postgres + Entra ID"])
    settings["hub"] |= {
        "db_password_file": str(secrets_dir / "db-password"),
        "oauth": settings["hub"]["oauth"] | {"client_secret_file": str(secrets_dir / "oidc")},
    }
    home.settings_file.write_text(yaml.safe_dump(settings))
    found = {
        "database password": "pg-Secret-4711",
        "OIDC client secret": "oidc-Secret-0815",
        "master key": home.master_key_file.read_bytes().hex(),
    }
    for which in ("proxy", "service"):
        found[f"{which} token"] = token_file(home, which).read_text().strip()
    return home, found


def test_the_command_writes_no_secret(tmp_path: Path) -> None:
    home, secrets = kubernetes_home(tmp_path)
    out = tmp_path / "values.yaml"
    result = run_cli(home.root, "k8s", "values", "--out", str(out))
    assert result.exit_code == 0, result.stderr
    printed = run_cli(home.root, "k8s", "values")
    assert printed.exit_code == 0, printed.stderr
    assert yaml.safe_load(printed.stdout) == yaml.safe_load(out.read_text())
    for text in (out.read_text(), result.stdout, printed.stdout, printed.stderr):
        for what, value in secrets.items():
            assert value not in text, f"the {what} is in the output"
    check_against_chart(yaml.safe_load(out.read_text()))


def z2jh_config(values: dict[str, Any]) -> Config:
    """A Config as z2jh's own jupyterhub_config.py leaves it before the extraConfig snippets
    (facts from the chart's files/hub/jupyterhub_config.py: the hub listens on :8081 and is
    reached at the `hub` Service, the proxy's API at `proxy-api`, its token comes from the
    environment, the cookie secret and each service's api token from the chart's Secret).
    The hub's Service name resolves inside the hub's pod; here `localhost` stands in for it."""
    c = Config()
    c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
    c.JupyterHub.hub_bind_url = "http://:8081"
    c.JupyterHub.hub_connect_url = "http://localhost:8081"
    c.ConfigurableHTTPProxy.api_url = "http://proxy-api:8001"
    c.ConfigurableHTTPProxy.should_start = False
    c.JupyterHub.cookie_secret = bytes.fromhex("ab" * 32)
    c.JupyterHub.services = [
        {"name": name, **service, "api_token": "z2jh-made-token-" + name}
        for name, service in values["hub"]["services"].items()
    ]
    if values["hub"]["db"].get("url"):
        c.JupyterHub.db_url = values["hub"]["db"]["url"]
    return c


def run_extra_config(values: dict[str, Any], c: Config) -> None:
    for _, snippet in sorted(values["hub"]["extraConfig"].items()):
        exec(snippet, {"c": c})  # the chart runs each so, in the order of their keys


def test_the_hub_config_it_loads_configures_a_kubernetes_hub(tmp_path: Path) -> None:
    """extraConfig's Python, run as the chart runs it after its own config, over a real HOME
    that `dossierhub serve` never ran on (no proxy or service token minted there)."""
    home, secrets = kubernetes_home(tmp_path)
    for which in ("proxy", "service"):
        token_file(home, which).unlink()
    values = z2jh_values(load_settings(home), home.root)
    c = z2jh_config(values)
    run_extra_config(values, c)
    assert c.JupyterHub.spawner_class == "dossierhub.workspaces.kubespawner.DossierKubeSpawner"
    assert c.KubeSpawner.image == WORKSPACE
    assert c.JupyterHub.authenticator_class == "oauthenticator.azuread.AzureAdOAuthenticator"
    # the secrets reach the hub from the files the mounted Secrets are
    assert c.AzureAdOAuthenticator.client_secret == secrets["OIDC client secret"]
    assert secrets["database password"] in str(c.JupyterHub.db_url)
    # z2jh keeps where the hub listens, the proxy it talks to, its token and cookie secret
    assert (c.JupyterHub.hub_bind_url, c.JupyterHub.hub_connect_url) == (
        "http://:8081",
        "http://localhost:8081",
    )
    # workspaces reach the hub by its Service's address: their policy allows no DNS
    assert c.DossierKubeSpawner.hub_connect_url in ("http://127.0.0.1:8081", "http://[::1]:8081")
    assert c.DossierKubeSpawner.port == 80  # the recorder's, the workspace pod's only way in
    assert c.ConfigurableHTTPProxy.api_url == "http://proxy-api:8001"
    assert "auth_token" not in c.ConfigurableHTTPProxy  # from z2jh's environment variable
    assert "cookie_secret_file" not in c.JupyterHub and "pid_file" not in c.JupyterHub
    # the service at its Service with z2jh's token (the one deploy/chart gives it), and the
    # one culler and the expiry check are dossierhub's
    services = {s["name"]: s for s in c.JupyterHub.services}
    assert services["dossierhub"]["url"] == "http://dossierhub:8003"
    assert services["dossierhub"]["api_token"] == "z2jh-made-token-dossierhub"
    assert set(services) == {"dossierhub", "idle-culler", "dossierhub-expiry"}
    assert {r["name"] for r in c.JupyterHub.load_roles} >= {"idle-culler", "dossierhub-expiry"}


def test_without_postgres_the_hub_database_stays_on_z2jh_s_volume(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    init_home(home)
    home.settings_file.write_text(yaml.safe_dump(SETTINGS["sqlite + local passwords"]))
    values = z2jh_values(load_settings(home), home.root)
    c = z2jh_config(values)
    c.JupyterHub.db_url = "sqlite:///jupyterhub.sqlite"  # z2jh's for sqlite-pvc
    run_extra_config(values, c)
    # SQLite on HOME's network filesystem would corrupt; z2jh's own volume is local
    assert c.JupyterHub.db_url == "sqlite:///jupyterhub.sqlite"
    assert c.JupyterHub.authenticator_class.endswith("LocalPasswordAuthenticator")


def test_the_hub_config_refuses_values_that_registered_no_service(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    init_home(home)
    home.settings_file.write_text(yaml.safe_dump(SETTINGS["sqlite + local passwords"]))
    values = z2jh_values(load_settings(home), home.root)
    values["hub"]["services"] = {}
    with pytest.raises(HubConfigError, match="dossierhub k8s values"):
        run_extra_config(values, z2jh_config(values))


def test_the_hub_config_refuses_a_hub_service_that_does_not_resolve(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    init_home(home)
    home.settings_file.write_text(yaml.safe_dump(SETTINGS["sqlite + local passwords"]))
    values = z2jh_values(load_settings(home), home.root)
    c = z2jh_config(values)
    c.JupyterHub.hub_connect_url = "http://hub.invalid:8081"  # RFC 2606: never resolves
    with pytest.raises(HubConfigError, match=r"'hub\.invalid' .* does not resolve"):
        run_extra_config(values, c)


@pytest.mark.parametrize(
    ("change", "sentence"),
    [
        ({"hub_image": None}, "kubernetes.hub_image is needed"),
        ({"hub_image": "registry.example.org/dossierhub-hub"}, "has no tag"),
        ({"image": "registry.example.org:5000/ws"}, "kubernetes.image 'registry.example.org"),
    ],
)
def test_a_missing_or_untagged_image_is_refused(
    tmp_path: Path, change: dict[str, Any], sentence: str
) -> None:
    home = Home(tmp_path / "home")
    init_home(home)
    settings = SETTINGS["sqlite + local passwords"]
    kube = {k: v for k, v in (settings["kubernetes"] | change).items() if v is not None}
    home.settings_file.write_text(yaml.safe_dump(settings | {"kubernetes": kube}))
    out = tmp_path / "values.yaml"
    result = run_cli(home.root, "k8s", "values", "--out", str(out))
    assert result.exit_code == 1
    assert sentence in result.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("kubernetes", "namespace"),
    [({}, "dossierhub-apply"), ({"apply_namespace": "city-apply", "hub_port": 9081}, "city-apply")],
)
def test_the_hub_s_policy_lets_apply_in_from_its_own_namespace(
    kubernetes: dict[str, Any], namespace: str
) -> None:
    """apply and the master key live in a namespace of their own (deploy/chart
    apply.namespace); z2jh's hub policy admits labelled pods of its own namespace only, so
    the values add one rule: apply's pods, from apply's namespace, to the hub's port."""
    settings = copy.deepcopy(SETTINGS["sqlite + local passwords"])
    settings["kubernetes"] |= kubernetes
    values = z2jh_values(Settings.model_validate(settings))
    check_against_chart(values)
    assert values["hub"]["networkPolicy"]["ingress"] == [
        {
            "from": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": namespace}
                    },
                    "podSelector": {
                        "matchLabels": {
                            "app.kubernetes.io/name": "dossierhub",
                            "app.kubernetes.io/component": "apply",
                        }
                    },
                }
            ],
            "ports": [{"port": kubernetes.get("hub_port", 8081), "protocol": "TCP"}],
        }
    ]
