"""Values for the upstream Zero to JupyterHub chart (z2jh), from HOME's settings.yaml.

dossierhub cannot vendor z2jh (no registry we reach has it), so it installs the upstream chart
with these values and its own small chart (deploy/chart) beside it. `z2jh_values` is a pure
function of the settings: it names Secrets and files and never holds a secret value, so its
output can be committed, reviewed and diffed. The Secret names here are the ones deploy/chart
and docs/operating-on-kubernetes.md use.

What the values change from z2jh's defaults, and why:
- the hub runs our image (z2jh's pins another JupyterHub) and runs dossierhub's hub config
  (`z2jh_hub_config`: hubconfig.make_config minus what z2jh owns in its pod) over HOME's
  volume claim, mounted at the same path as in the pods;
- secrets (the database password, the OIDC client secret) are Secrets mounted as the files
  settings.yaml names, so the hub reads them as it does on one machine;
- the hub runs as the control identity (`kubernetes.control_uid`, the service's too), which
  owns HOME's control files, and without the chart's fsGroup 1000, which a volume driver
  could apply to the whole of HOME (docs/operating-on-kubernetes.md, "Who reads and writes
  what on HOME");
- the hub's network policy admits apply's pods from apply's own namespace
  (`kubernetes.apply_namespace`), which holds the master key apart from the hub;
- a workspace's uid/gid, storage and network policy are per dossier (kubespawner.py): the
  chart's own uid 1000/fsGid 100, user volume, internet egress and cloud-metadata init
  container (it needs NET_ADMIN) are turned off.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml
from traitlets.config import Config

from dossierhub.isolation.environment import workspace_python
from dossierhub.isolation.podspec import RECORDER_PORT
from dossierhub.state.audit import set_channel
from dossierhub.state.directory import read_directory
from dossierhub.state.home import Home
from dossierhub.state.settings import Settings, load_settings
from dossierhub.workspaces.hubconfig import (
    SERVICE,
    HubConfigError,
    HubInputs,
    make_config,
    ports,
    read_db_password,
)

# Secrets the operator creates (docs/operating-on-kubernetes.md); key -> what it holds
DB_SECRET = "dossierhub-db"  # noqa: S105 - a name; key "password": the database password
OAUTH_SECRET = "dossierhub-oauth"  # noqa: S105 - a name; key "client-secret"
# key "audit.keys": the audit keys alone (`dossierhub audit key --out`), for the hub and the
# service, which append audit records and never get the master key
AUDIT_SECRET = "dossierhub-audit-key"  # noqa: S105 - a name
SECRET_KEYS = {DB_SECRET: "password", OAUTH_SECRET: "client-secret", AUDIT_SECRET: "audit.keys"}
# the dossierhub service Deployment's Service (deploy/chart), in the hub's namespace
SERVICE_HOST = "dossierhub"
HOME_VOLUME = "dossierhub-home"
# the labels deploy/chart gives apply's pods (templates/cronjob.yaml)
APPLY_LABELS = {"app.kubernetes.io/name": "dossierhub", "app.kubernetes.io/component": "apply"}
# where HOME's claim is mounted in the hub's, the service's and the workspaces' pods (the
# spawner mounts a dossier's folders at the same paths as the hub sees them)
HOME_MOUNT = Path("/srv/dossierhub")

_NO_EGRESS = {
    "cloudMetadataServer": False,
    "dnsPortsCloudMetadataServer": False,
    "dnsPortsKubeSystemNamespace": False,
    "dnsPortsPrivateIPs": False,
    "nonPrivateIPs": False,
    "privateIPs": False,
}


class ValuesError(ValueError):
    """settings.yaml lacks what a Kubernetes installation needs; the message says which."""


def split_image(reference: str, setting: str) -> dict[str, str]:
    """registry/name:tag -> z2jh's {name, tag} (the chart joins them with ':'). A reference
    without a tag is refused: `latest` would let a node run whatever was pushed last."""
    head, _, digest = reference.partition("@")
    name, colon, tag = head.rpartition(":")
    if not colon or "/" in tag:
        raise ValueError(f"{setting} '{reference}' has no tag: give one, such as {head}:1.0")
    return {"name": name, "tag": f"{tag}@{digest}" if digest else tag}


def z2jh_values(settings: Settings, home: Path = HOME_MOUNT) -> dict[str, Any]:
    """The z2jh values for an installation whose HOME is `home` inside the hub's pod."""
    kube = settings.kubernetes
    if settings.hub.spawner != "kubernetes" or kube.image is None:
        raise ValuesError("settings.yaml: set hub.spawner: kubernetes and kubernetes.image")
    if kube.hub_image is None:
        raise ValuesError(
            "settings.yaml: kubernetes.hub_image is needed: the hub's image, such as "
            "registry.example.org/dossierhub-hub:1.0 (deploy/images/Dockerfile, target hub)"
        )
    if settings.audit.key_file is None:
        # the master key stays in apply's pod: without the audit keys the hub could record
        # no decision, so it would start no workspace
        raise ValuesError(
            "settings.yaml: audit.key_file is needed on Kubernetes: the hub and the service "
            "append audit records with the audit keys alone (`dossierhub audit key --out "
            f"FILE`, stored as the Secret {AUDIT_SECRET}, key audit.keys); the master key "
            "stays apply's"
        )
    try:
        hub_image = split_image(kube.hub_image, "kubernetes.hub_image")
        workspace_image = split_image(kube.image, "kubernetes.image")
    except ValueError as error:
        raise ValuesError(f"settings.yaml: {error}") from None
    return {
        "hub": _hub(settings, home, hub_image),
        "proxy": {"chp": {"networkPolicy": _proxy_policy()}},
        "singleuser": _singleuser(workspace_image),
        # one culler: dossierhub's own (hubconfig.services, workspaces.idle_timeout_seconds),
        # which z2jh_hub_config puts in the place of the chart's
        "cull": {"enabled": False},
        # images are pulled when a workspace starts; the pullers' hook adds nothing we need
        "prePuller": {"hook": {"enabled": False}, "continuous": {"enabled": False}},
    }


def _hub(settings: Settings, home: Path, image: dict[str, str]) -> dict[str, Any]:
    volumes: list[dict[str, Any]] = [
        {
            "name": HOME_VOLUME,
            "persistentVolumeClaim": {"claimName": settings.kubernetes.home_claim},
        }
    ]
    mounts: list[dict[str, Any]] = [{"name": HOME_VOLUME, "mountPath": str(home)}]
    for secret, path in _secret_files(settings):
        # a Secret's files are root's, grouped by the pod's fsGroup, and this pod has none:
        # only the "other" bits reach the hub's uid. One container, running as that uid
        # alone, is all that mounts the volume (the kubelet keeps it in a folder of the pod's
        # that only root on the node enters), so "other" is the hub and no one else.
        volumes.append({"name": secret, "secret": {"secretName": secret, "defaultMode": 0o444}})
        # one file at the path settings.yaml names, the rest of its folder untouched
        mounts.append(
            {"name": secret, "mountPath": path, "subPath": SECRET_KEYS[secret], "readOnly": True}
        )
    hub: dict[str, Any] = {
        "image": image,
        **_hub_security(settings.kubernetes.control_uid),
        "db": _db(settings),
        "extraVolumes": volumes,
        "extraVolumeMounts": mounts,
        # the hub's own copy of the setting the spawner and hubconfig read
        "extraEnv": {"DOSSIERHUB_HOME": str(home)},
        "services": {
            # z2jh makes its api token and keeps it in the `hub` Secret under
            # hub.services.dossierhub.apiToken, where deploy/chart's Deployment reads it
            SERVICE: {
                "url": f"http://{SERVICE_HOST}:{ports(settings)[3]}",
                "oauth_no_confirm": True,
                "display": True,
            }
        },
        "extraConfig": {
            # after z2jh's own config: roles, groups, the spawner, login (hubconfig.py)
            "zz-dossierhub": (
                "from dossierhub.workspaces.k8svalues import z2jh_hub_config\n"
                f"z2jh_hub_config(c, {str(home)!r})\n"
            )
        },
        "networkPolicy": {
            "enabled": True,
            "egressAllowRules": _hub_egress(settings),
            "ingress": [_apply_ingress(settings)],
        },
    }
    return hub


def _apply_ingress(settings: Settings) -> dict[str, Any]:
    """z2jh's hub policy admits labelled pods of its own namespace only; apply runs in a
    namespace of its own (deploy/chart apply.namespace), so its pods, and no other pod there,
    are let in to the hub's API port, where apply syncs the dossiers' members."""
    kube = settings.kubernetes
    return {
        "from": [
            {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": kube.apply_namespace_name}
                },
                "podSelector": {"matchLabels": APPLY_LABELS},
            }
        ],
        "ports": [{"port": kube.hub_port, "protocol": "TCP"}],
    }


def _hub_security(control_uid: int) -> dict[str, Any]:
    """The restricted Pod Security Standard as the control identity. `fsGroup: None` takes
    out the chart's default 1000 (helm drops a key set to null): HOME is one volume, and a
    driver that honours fsGroup would regroup every dossier's files to it."""
    ids = {"runAsUser": control_uid, "runAsGroup": control_uid, "runAsNonRoot": True}
    seccomp = {"seccompProfile": {"type": "RuntimeDefault"}}
    return {
        "podSecurityContext": {**ids, "fsGroup": None, **seccomp},
        "containerSecurityContext": {
            **ids,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            **seccomp,
        },
    }


def _secret_files(settings: Settings) -> list[tuple[str, str]]:
    files = []
    if settings.hub.db_password_file is not None:
        files.append((DB_SECRET, settings.hub.db_password_file))
    if settings.hub.authenticator != "local" and settings.hub.oauth is not None:
        files.append((OAUTH_SECRET, settings.hub.oauth.client_secret_file))
    if settings.audit.key_file is not None:
        files.append((AUDIT_SECRET, settings.audit.key_file))
    return files


def _db(settings: Settings) -> dict[str, Any]:
    url = settings.hub.db_url
    if url is None or url.startswith("sqlite"):
        # one hub pod on a volume of its own; hub.db_url moves it to PostgreSQL
        return {"type": "sqlite-pvc"}
    # no password here: the hub reads it from hub.db_password_file (the mounted Secret)
    return {"type": "postgres", "url": url}


def _hub_egress(settings: Settings) -> dict[str, bool]:
    """The Kubernetes API, PostgreSQL and the workspaces are private addresses; the internet
    only for an identity provider's login (Entra ID and most OIDC providers live there)."""
    rules = dict(_NO_EGRESS)
    rules.update(dnsPortsKubeSystemNamespace=True, dnsPortsPrivateIPs=True, privateIPs=True)
    rules["nonPrivateIPs"] = settings.hub.authenticator != "local"
    return rules


def _proxy_policy() -> dict[str, Any]:
    # the proxy reaches the hub, the workspaces and the dossierhub service, all in-cluster
    rules = dict(_NO_EGRESS)
    rules.update(dnsPortsKubeSystemNamespace=True, privateIPs=True)
    return {"enabled": True, "egressAllowRules": rules}


def _singleuser(image: dict[str, str]) -> dict[str, Any]:
    return {
        "image": image,
        # per dossier, set by the spawner (isolation/podids.py): none of the chart's own
        "uid": None,
        "fsGid": None,
        # HOME's claim, mounted per dossier by the spawner, is the only storage
        "storage": {"type": "none"},
        "defaultUrl": "/lab",
        "serviceAccountName": None,
        # its init container needs NET_ADMIN, which the restricted Pod Security Standard
        # forbids; the per-dossier egress policy keeps the metadata server out instead
        "cloudMetadata": {"blockWithIptables": False},
        # off: policies add up, and the chart's own always lets its pods out to the proxy's
        # public port and autohttps, whatever its egress values say. The spawner's per-dossier
        # policy, made before the pod, is every workspace's whole wall (kubespawner.py)
        "networkPolicy": {"enabled": False},
    }


# What z2jh's own hub config decides inside its pod and dossierhub's must not override: where
# the hub listens and is reached, the proxy pod it talks to and that proxy's token, the cookie
# secret (a Secret of the chart's) and the pid file (serve's, on one machine)
Z2JH_OWNS = {
    "JupyterHub": ("bind_url", "hub_bind_url", "hub_connect_url", "cookie_secret_file", "pid_file"),
    "ConfigurableHTTPProxy": ("api_url", "auth_token", "should_start"),
}


def z2jh_hub_config(c: Config, home_dir: str) -> None:
    """dossierhub's hub config inside z2jh's hub pod, run by `hub.extraConfig` after z2jh's
    own: the spawner, login, groups, roles and services of `hubconfig.make_config`, with the
    keys in Z2JH_OWNS left to z2jh. The dossierhub service keeps the url and api token z2jh
    registered (the token is in z2jh's `hub` Secret, where deploy/chart's Deployment reads
    it), so nothing here needs the tokens `dossierhub serve` mints on one machine."""
    set_channel("hub")
    home = Home(Path(home_dir))
    settings = load_settings(home)
    registered = {s["name"]: s for s in c.JupyterHub.get("services", [])}
    service = registered.get(SERVICE)
    if service is None or not service.get("api_token"):
        raise HubConfigError(
            f"z2jh registered no {SERVICE} service with a token: install the chart with the "
            "values of `dossierhub k8s values`"
        )
    secret = ""
    if settings.hub.oauth is not None:
        secret = Path(settings.hub.oauth.client_secret_file).read_text().strip()
    ours = make_config(
        HubInputs(
            home=home.root,
            settings=settings,
            dossiers=tuple(read_directory(home)),
            proxy_token="",  # z2jh's proxy, z2jh's token
            service_token=service["api_token"],
            workspace_python=workspace_python(settings),
            oauth_client_secret=secret,
            db_password=read_db_password(settings),
        )
    )
    owned = dict(Z2JH_OWNS)
    if settings.hub.db_url is None:
        # SQLite on z2jh's own volume: never on HOME's network filesystem
        owned["JupyterHub"] = (*owned["JupyterHub"], "db_url")
    for section, keys in owned.items():
        for key in keys:
            ours[section].pop(key, None)
    for entry in ours.JupyterHub.services:
        if entry["name"] == SERVICE:
            entry["url"] = service["url"]
    ours.DossierKubeSpawner.hub_connect_url = hub_address_url(c.JupyterHub.hub_connect_url)
    # the hub and the proxy reach a workspace at its recorder's port, the pod's only way in
    # (the spawner sets it at every start too: no value of z2jh's decides it)
    ours.DossierKubeSpawner.port = RECORDER_PORT
    c.merge(ours)


def hub_address_url(connect_url: object) -> str:
    """z2jh's hub_connect_url (the hub's Service by name) with the name replaced by the
    Service's cluster address, looked up once as the hub starts. Workspaces get this one:
    their network policy allows no DNS, which would carry data out in the names a kernel
    asks for. The address lasts as long as the Service (a reinstall of the chart makes a
    new one; running workspaces then need a restart)."""
    url = urlsplit(connect_url if isinstance(connect_url, str) else "")
    if not url.hostname:
        raise HubConfigError(f"z2jh's hub_connect_url {connect_url!r} names no host")
    try:
        address = str(socket.getaddrinfo(url.hostname, url.port, type=socket.SOCK_STREAM)[0][4][0])
    except OSError as exc:
        raise HubConfigError(
            f"the hub's Service {url.hostname!r} (z2jh's hub_connect_url) does not resolve: {exc}"
        ) from None
    host = f"[{address}]" if ":" in address else address
    netloc = f"{host}:{url.port}" if url.port else host
    return str(urlunsplit((url.scheme, netloc, url.path, "", "")))


class _Dumper(yaml.SafeDumper):
    """YAML with the hub config's Python as a literal block, as a person would write it."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def dump_values(values: dict[str, Any]) -> str:
    header = "# values for the Zero to JupyterHub chart, by `dossierhub k8s values`\n"
    return header + yaml.dump(values, Dumper=_Dumper, sort_keys=False)
