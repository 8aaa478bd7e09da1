"""The keys and types of the Zero to JupyterHub chart's values that `dossierhub k8s values`
relies on, as a JSON Schema. Facts read from the chart's own jupyterhub/values.schema.yaml
(zero-to-jupyterhub-k8s at 48ea50e, July 2026), not a copy of it: the objects the chart
closes (additionalProperties: false) are closed here too, with the names of all the keys the
chart knows there, so a misspelt or retired key fails here as `helm install` would fail it;
the types are given for the keys we set. CI has no network and cannot read the chart."""

from __future__ import annotations

from typing import Any


def _closed(known: str, **typed: dict[str, Any]) -> dict[str, Any]:
    """An object the chart closes: `known` names every key it allows, `typed` those we set."""
    keys = set(known.split())
    assert set(typed) <= keys, f"{set(typed) - keys} are not keys of the chart"
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {key: typed.get(key, {}) for key in keys},
    }


STRING = {"type": "string"}
NULL_STRING = {"type": ["string", "null"]}
NULL_INT = {"type": ["integer", "null"]}
BOOL = {"type": "boolean"}
IMAGE = _closed("name tag pullPolicy pullSecrets", name=STRING, tag=STRING)
EGRESS_RULES = _closed(
    "cloudMetadataServer dnsPortsCloudMetadataServer dnsPortsKubeSystemNamespace "
    "dnsPortsPrivateIPs nonPrivateIPs privateIPs",
    **dict.fromkeys(
        [
            "cloudMetadataServer",
            "dnsPortsCloudMetadataServer",
            "dnsPortsKubeSystemNamespace",
            "dnsPortsPrivateIPs",
            "nonPrivateIPs",
            "privateIPs",
        ],
        BOOL,
    ),
)
NETWORK_POLICY = _closed(
    "enabled ingress egress egressAllowRules interNamespaceAccessLabels allowedIngressPorts",
    enabled=BOOL,
    egress={"type": "array"},
    ingress={"type": "array"},
    egressAllowRules=EGRESS_RULES,
)

HUB = _closed(
    "activeServerLimit allowNamedServers annotations args authenticatePrometheus baseUrl "
    "command concurrentSpawnLimit config consecutiveFailureLimit containerSecurityContext "
    "cookieSecret db deploymentStrategy existingSecret extraConfig extraContainers extraEnv "
    "extraFiles extraPodSpec extraVolumeMounts extraVolumes fsGid image initContainers labels "
    "lifecycle livenessProbe loadRoles namedServerLimitPerUser networkPolicy nodeSelector pdb "
    "podSecurityContext readinessProbe redirectToServer resources revisionHistoryLimit service "
    "serviceAccount services shutdownOnLogout templatePaths templateVars tolerations",
    image=IMAGE,
    db=_closed(
        "type pvc upgrade url password",
        type={"enum": ["sqlite-pvc", "sqlite-memory", "mysql", "postgres", "other"]},
        url=NULL_STRING,
        password=NULL_STRING,
    ),
    extraVolumes={"type": "array"},
    extraVolumeMounts={"type": "array"},
    extraEnv={"type": ["object", "array"]},
    # a dict of Python snippets, run in the order of their keys after the chart's own config
    extraConfig={"type": "object", "additionalProperties": STRING},
    services={
        "type": "object",
        "additionalProperties": {
            "type": "object",
            "properties": {
                "name": STRING,
                "admin": BOOL,
                "url": STRING,
                "api_token": NULL_STRING,
                "apiToken": NULL_STRING,
            },
        },
    },
    networkPolicy=NETWORK_POLICY,
)

SINGLEUSER = _closed(
    "allowPrivilegeEscalation cloudMetadata cmd cpu defaultUrl events extraAnnotations "
    "extraContainers extraEnv extraFiles extraLabels extraNodeAffinity extraPodAffinity "
    "extraPodAntiAffinity extraPodConfig extraResource extraTolerations fsGid image "
    "initContainers lifecycleHooks memory networkPolicy networkTools nodeSelector "
    "podNameTemplate profileList serviceAccountName startTimeout storage uid",
    image=IMAGE,
    uid=NULL_INT,
    fsGid=NULL_INT,
    storage=_closed(
        "capacity dynamic extraLabels extraVolumeMounts extraVolumes homeMountPath static type",
        type={"enum": ["dynamic", "static", "none"]},
    ),
    defaultUrl=NULL_STRING,
    serviceAccountName=NULL_STRING,
    cloudMetadata=_closed("blockWithIptables ip", blockWithIptables=BOOL),
    networkPolicy=NETWORK_POLICY,
)

PROXY = _closed(
    "annotations chp deploymentStrategy https labels secretSync secretToken service traefik",
    chp=_closed(
        "command containerSecurityContext defaultTarget errorTarget extraCommandLineFlags "
        "extraEnv extraPodSpec image livenessProbe networkPolicy nodeSelector pdb "
        "readinessProbe resources revisionHistoryLimit tolerations",
        networkPolicy=NETWORK_POLICY,
    ),
)

PULLER_KEYS = "annotations containerSecurityContext continuous extraImages extraTolerations hook "
PRE_PULLER = _closed(
    PULLER_KEYS + "labels pause pullProfileListImages resources revisionHistoryLimit",
    hook={"type": "object", "properties": {"enabled": BOOL}},
    continuous={"type": "object", "properties": {"enabled": BOOL}},
)

CULL = _closed(
    "enabled users adminUsers removeNamedServers timeout every concurrency maxAge",
    enabled=BOOL,
    timeout=NULL_INT,
    every=NULL_INT,
)

Z2JH_VALUES = _closed(
    "cull custom debug enabled fullnameOverride global httpRoute hub imagePullSecret "
    "imagePullSecrets ingress nameOverride prePuller proxy rbac scheduling singleuser",
    hub=HUB,
    singleuser=SINGLEUSER,
    proxy=PROXY,
    prePuller=PRE_PULLER,
    cull=CULL,
)
