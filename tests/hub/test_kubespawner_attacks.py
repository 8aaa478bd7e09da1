"""Red team of the Kubernetes path, at the level of the objects (issue 14): an attacker runs
code in the armoede workspace's pod. Which other pods can it reach, and who reaches it?

No CNI runs here, so the question is answered the way a CNI answers it: every NetworkPolicy
that selects a pod decides for it, policies add up, and traffic flows only when the sender's
egress and the receiver's ingress both allow it (`reachable`). The pods are the real ones
KubeSpawner's get_pod_manifest() renders for DossierKubeSpawner, configured as Zero to
JupyterHub's hub config configures it (`Z2JH_SPAWNER`); the dossier's policy is the real
`network_policy`. z2jh's own policies are written out as facts, each with the template it
comes from (z2jh 4.x, jupyterhub/templates/*/netpol.yaml, rendered with the values of
`dossierhub k8s values`): the chart is not vendored here (k8svalues.py says why)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes_asyncio.client import ApiClient
from test_kubespawner import config, kube_home, kubeconfig  # noqa: F401 - fixtures
from test_podfiles import as_pod, pod_home  # noqa: F401 - a HOME applied for pods, as root

from dossierhub.isolation.podids import pod_ids
from dossierhub.state.home import Home
from dossierhub.state.settings import KubernetesSettings, Settings
from dossierhub.workspaces.k8svalues import z2jh_values
from dossierhub.workspaces.kubespawner import DossierKubeSpawner, network_policy
from dossierhub.workspaces.workspacechores import clear_outputs

# what `dossierhub k8s values` needs to write values (the images)
VALUES_SETTINGS = {
    "hub": {"spawner": "kubernetes"},
    "kubernetes": {
        "image": "registry.example.org/dossierhub-workspace:1.0",
        "hub_image": "registry.example.org/dossierhub-hub:1.0",
    },
    "audit": {"key_file": "/run/secrets/dossierhub-audit/audit.keys"},
}
RELEASE = "jhub"  # z2jh's release name; its pods carry it as `release`
NAMESPACE = "dossiers"
# what z2jh's jupyterhub_config.py sets on KubeSpawner before dossierhub's extraConfig runs:
# common labels (the chart's legacy and modern ones) and `singleuser.extraLabels`, whose
# default in values.yaml is the label its hub policy admits (dossierhub's values keep it)
Z2JH_SPAWNER = {
    "common_labels": {
        "app": "jupyterhub",
        "app.kubernetes.io/name": "jupyterhub",
        "release": RELEASE,
        "app.kubernetes.io/instance": RELEASE,
    },
    "extra_labels": {"hub.jupyter.org/network-access-hub": "true"},
}


def _legacy(component: str) -> dict[str, str]:
    # z2jh's "jupyterhub.matchLabels" helper: component, app, release
    return {"component": component, "app": "jupyterhub", "release": RELEASE}


# z2jh's policies for its hub and for every singleuser pod, as the templates render them
Z2JH_POLICIES: list[dict[str, Any]] = [
    {  # templates/hub/netpol.yaml: in only from pods labelled network-access-hub
        "metadata": {"name": "hub"},
        "spec": {
            "podSelector": {"matchLabels": _legacy("hub")},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "ports": [{"port": "http"}],
                    "from": [
                        {
                            "podSelector": {
                                "matchLabels": {"hub.jupyter.org/network-access-hub": "true"}
                            }
                        }
                    ],
                }
            ],
            "egress": [{}],  # its egressAllowRules reach the API server, workspaces, OIDC
        },
    },
    {  # templates/proxy/netpol.yaml: allowedIngressPorts [http, https] from anywhere
        "metadata": {"name": "proxy"},
        "spec": {
            "podSelector": {"matchLabels": _legacy("proxy")},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"ports": [{"port": "http"}, {"port": "https"}]}],
            "egress": [{}],
        },
    },
    {  # templates/singleuser/netpol.yaml with egress: [] and every egressAllowRule false:
        # what remains are its fixed rules, which no value turns off
        "metadata": {"name": "singleuser"},
        "spec": {
            "podSelector": {"matchLabels": _legacy("singleuser-server")},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "ports": [{"port": "notebook-port"}],
                    "from": [
                        {
                            "podSelector": {
                                "matchLabels": {"hub.jupyter.org/network-access-singleuser": "true"}
                            }
                        }
                    ],
                }
            ],
            "egress": [
                {
                    "to": [{"podSelector": {"matchLabels": _legacy("hub")}}],
                    "ports": [{"port": 8081}],
                },
                {
                    "to": [{"podSelector": {"matchLabels": _legacy("proxy")}}],
                    "ports": [{"port": 8000}],
                },
                {
                    "to": [{"podSelector": {"matchLabels": _legacy("autohttps")}}],
                    "ports": [{"port": 8080}, {"port": 8443}],
                },
            ],
        },
    },
]


@dataclass(frozen=True)
class Pod:
    name: str
    labels: dict[str, str]
    ports: dict[str, int] = field(default_factory=dict)  # named container ports


# z2jh's hub and proxy pods (templates/{hub,proxy}/deployment.yaml) and dossierhub's service
# (deploy/chart/templates/deployment.yaml)
HUB = Pod(
    "hub",
    {
        **_legacy("hub"),
        "hub.jupyter.org/network-access-proxy-api": "true",
        "hub.jupyter.org/network-access-proxy-http": "true",
        "hub.jupyter.org/network-access-singleuser": "true",
    },
    {"http": 8081},
)
PROXY = Pod(
    "proxy",
    {**_legacy("proxy"), "hub.jupyter.org/network-access-singleuser": "true"},
    {"http": 8000, "api": 8001},
)
SERVICE = Pod(
    "dossierhub service",
    {
        "app.kubernetes.io/name": "dossierhub",
        "app.kubernetes.io/instance": "dossierhub",
        "app.kubernetes.io/component": "service",
        "hub.jupyter.org/network-access-hub": "true",
    },
    {"http": 8003},
)


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, f"not modelled: {selector}"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def _peer(peer: dict[str, Any], pod: Pod) -> bool:
    # every pod here is in the one namespace; a peer that names another namespace (DNS in
    # kube-system) or an ipBlock (pods have no fixed address) matches none of them
    if set(peer) - {"podSelector"}:
        return False
    return _selects(peer["podSelector"], pod.labels)


def _port(rule: dict[str, Any], receiver: Pod, port: int) -> bool:
    if "ports" not in rule:
        return True
    numbers = [p["port"] if isinstance(p["port"], int) else receiver.ports.get(p["port"])
               for p in rule["ports"]]  # fmt: skip
    return port in numbers


def _side(policies: list[dict[str, Any]], kind: str, pod: Pod, other: Pod, receiver: Pod,
          port: int) -> bool:  # fmt: skip
    """Whether `pod`'s policies of `kind` (Ingress/Egress) let traffic to/from `other` pass."""
    selecting = [
        p["spec"] for p in policies
        if kind in p["spec"]["policyTypes"] and _selects(p["spec"]["podSelector"], pod.labels)
    ]  # fmt: skip
    if not selecting:
        return True  # a pod no policy selects is open
    peers = "from" if kind == "Ingress" else "to"
    return any(
        _port(rule, receiver, port)
        and (peers not in rule or any(_peer(p, other) for p in rule[peers]))
        for spec in selecting
        for rule in spec.get(kind.lower(), [])
    )


def reachable(policies: list[dict[str, Any]], sender: Pod, receiver: Pod, port: int) -> bool:
    return _side(policies, "Egress", sender, receiver, receiver, port) and _side(
        policies, "Ingress", receiver, sender, receiver, port
    )


def workspace(root: Path, dossier: str) -> tuple[Pod, dict[str, Any]]:
    """The dossier's pod as KubeSpawner renders it inside z2jh's hub, and its policy."""

    async def go() -> tuple[dict[str, Any], int]:
        settings = config(root)
        for key, value in Z2JH_SPAWNER.items():
            setattr(settings.KubeSpawner, key, value)
        name = f"dossier-{dossier}"
        user = SimpleNamespace(name=name, id=1, url=f"/user/{name}/", escaped_name=name)
        made = DossierKubeSpawner(config=settings, user=user, _mock=True)
        made.api_token = "server-token"
        made.prepare_start()
        pod = await made.get_pod_manifest()
        async with ApiClient() as client:
            return client.sanitize_for_serialization(pod), made.port

    pod, port = asyncio.run(go())
    ports = {  # a pod's ports are every container's: the recorder's is the pod's way in
        p["name"]: p["containerPort"]
        for inner in pod["spec"]["containers"]
        for p in inner.get("ports") or []
    }
    policy = network_policy(KubernetesSettings(namespace=NAMESPACE), dossier, port)
    return Pod(pod["metadata"]["name"], pod["metadata"]["labels"], ports), policy


@pytest.fixture(scope="module")
def cluster(kube_home: Path) -> tuple[dict[str, Pod], list[dict[str, Any]]]:  # noqa: F811
    # z2jh renders its singleuser policy only when the values leave it on
    singleuser_on = z2jh_values(Settings.model_validate(VALUES_SETTINGS))["singleuser"][
        "networkPolicy"
    ]["enabled"]
    pods = {}
    policies = [p for p in Z2JH_POLICIES if singleuser_on or p["metadata"]["name"] != "singleuser"]
    for dossier in ("armoede", "mobiliteit"):
        pods[dossier], policy = workspace(kube_home, dossier)
        policies.append(policy)
    return pods, policies


def test_the_workspace_reaches_the_hub_api_through_z2jh_s_hub_policy(cluster: Any) -> None:
    """jupyterhub-singleuser asks the hub's API who a visitor is and reports activity: z2jh's
    hub policy admits only pods labelled network-access-hub, which its values give every
    singleuser pod through extra_labels. The spawner's own labels must not replace them."""
    pods, policies = cluster
    for pod in pods.values():
        assert reachable(policies, pod, HUB, 8081), f"{pod.name} cannot reach the hub's API"


def test_a_workspace_reaches_no_other_workspace_and_not_the_service(cluster: Any) -> None:
    pods, policies = cluster
    armoede, mobiliteit = pods["armoede"], pods["mobiliteit"]
    for port in (8888, 8003, 22, 53):
        assert not reachable(policies, armoede, mobiliteit, port)
        assert not reachable(policies, mobiliteit, armoede, port)
        assert not reachable(policies, armoede, SERVICE, port)
    assert not reachable(policies, armoede, PROXY, 8001), "the proxy's API (routes) is out"
    # each workspace is reached by the proxy (people) and the hub (its checks), on its port
    for pod in pods.values():
        assert reachable(policies, PROXY, pod, pod.ports["notebook-port"])
        assert reachable(policies, HUB, pod, pod.ports["notebook-port"])
        assert not reachable(policies, SERVICE, pod, pod.ports["notebook-port"])


def test_a_workspace_does_not_reach_the_proxy_s_public_port(cluster: Any) -> None:
    """z2jh's singleuser policy always lets its pods out to the proxy's public port (and
    autohttps), whatever its egress values say, and policies add up: the values turn it off,
    so the dossier's own policy is the workspace's whole wall."""
    pods, policies = cluster
    assert not reachable(policies, pods["armoede"], PROXY, 8000)


def test_the_model_answers_as_a_cni_would() -> None:
    """The model itself: a pod no policy selects is open; an ingress rule without `from`
    admits everyone on its ports; a named port is the receiver's."""
    open_pod = Pod("open", {"x": "y"}, {"web": 80})
    assert reachable([], open_pod, open_pod, 1)
    assert reachable(Z2JH_POLICIES, open_pod, PROXY, 8000)  # public
    assert not reachable(Z2JH_POLICIES, open_pod, PROXY, 8001)
    assert not reachable(Z2JH_POLICIES, open_pod, HUB, 8081)
    labelled = Pod("labelled", {"hub.jupyter.org/network-access-hub": "true"})
    assert reachable(Z2JH_POLICIES, labelled, HUB, 8081)
    assert not reachable(Z2JH_POLICIES, labelled, HUB, 8000)


# ------------------------------------------------ the dossierhub service's own walls (issue 15)


def chart_objects() -> list[dict[str, Any]]:
    """deploy/chart as `helm template` renders it (tests/deploy/helm.py, loaded by its path:
    tests/deploy is not on this module's import path)."""
    spec = importlib.util.spec_from_file_location(
        "deploy_helm", Path(__file__).parents[1] / "deploy" / "helm.py"
    )
    assert spec is not None and spec.loader is not None
    helm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helm)
    return list(helm.render())


def _pod_of(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj["spec"]
    return dict(
        spec["jobTemplate"]["spec"]["template"] if obj["kind"] == "CronJob" else spec["template"]
    )


@pytest.fixture(scope="module")
def with_chart(cluster: Any) -> tuple[dict[str, Pod], list[dict[str, Any]]]:
    """The cluster above with deploy/chart's pods and policies as rendered: the service, apply
    and a report run's Job (its labels from reports.jobs.job_labels)."""
    from dossierhub.reports.jobs import job_labels

    pods, policies = cluster
    rendered = chart_objects()
    mine = {**pods}
    for obj in rendered:
        if obj["kind"] in ("Deployment", "CronJob"):
            template = _pod_of(obj)
            (container,) = template["spec"]["containers"]
            ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
            component = template["metadata"]["labels"]["app.kubernetes.io/component"]
            mine[component] = Pod(component, template["metadata"]["labels"], ports)
    mine["report"] = Pod("report run", job_labels("armoede", "20260101T000000-abcdef"))
    mine["other"] = Pod("another pod of the namespace", {"app": "something-else"})
    # a pod allowed to the hub's API (as every workspace is) is not thereby let into the service
    mine["hub-client"] = Pod("a hub API client", {"hub.jupyter.org/network-access-hub": "true"})
    chart_policies = [o for o in rendered if o["kind"] == "NetworkPolicy"]
    return mine, policies + chart_policies


def test_the_hub_and_the_proxy_reach_the_service_and_nothing_else_does(with_chart: Any) -> None:
    """The service answers people (through the proxy) and the hub (which checks its registered
    services); every other pod, a workspace, a report run, apply, any pod of the namespace,
    and one labelled for the hub's API, is kept out of it on every port."""
    pods, policies = with_chart
    service = pods["service"]
    port = service.ports["http"]
    assert (service.labels["hub.jupyter.org/network-access-hub"]) == "true"
    assert reachable(policies, PROXY, service, port), "people cannot reach the service"
    assert reachable(policies, HUB, service, port), "the hub cannot reach its service"
    for name in ("armoede", "mobiliteit", "report", "apply", "other", "hub-client"):
        for to in (port, 22, 8888):
            assert not reachable(policies, pods[name], service, to), (name, to)


def test_the_service_reaches_the_hub_s_api_and_no_pod_besides(with_chart: Any) -> None:
    """Out, the service reaches the hub's API (z2jh's hub policy admits its label), DNS (in
    kube-system, outside this model) and nothing else: not the proxy's API (its routes), not a
    workspace, not a report run's pod."""
    pods, policies = with_chart
    service = pods["service"]
    assert reachable(policies, service, HUB, 8081)
    assert not reachable(policies, service, PROXY, 8001)
    for name in ("armoede", "mobiliteit", "report", "apply", "other"):
        for to in (8888, 8003, 80):
            assert not reachable(policies, service, pods[name], to), (name, to)


# ------------------------------------------------ what root does in a pod's folder afterwards

NOTEBOOK = {
    "nbformat": 4,
    "nbformat_minor": 5,
    "metadata": {},
    "cells": [
        {
            "cell_type": "code",
            "id": "rows",
            "metadata": {},
            "source": "db.sql('SELECT * FROM residents LIMIT 3')",
            "execution_count": 1,
            "outputs": [{"output_type": "stream", "name": "stdout", "text": "ROW OF DATA"}],
        }
    ],
}


def test_what_a_pod_plants_does_not_stop_the_expiry_chore(pod_home: Home) -> None:  # noqa: F811
    """Red team: before its dossier expires, a kernel plants a folder named like a checkpoint
    notebook (unlink: IsADirectoryError) and a code cell without outputs (AttributeError).
    The chore, which apply runs for the expired dossier on every apply, failed on either,
    and apply died with it for every dossier after. Now each costs only itself: the team's
    real notebook is still cleared and the planted folder is gone."""
    number = pod_ids(pod_home)["armoede"]
    folder = pod_home.workspace_dir("armoede")
    odd = {
        "cells": [{"cell_type": "code", "id": "a", "metadata": {}, "source": ""}],
        "nbformat": 4, "nbformat_minor": 5, "metadata": {},
    }  # fmt: skip
    planted = as_pod(
        number,
        f"import os, json; os.makedirs({str(folder / '.ipynb_checkpoints' / 'a.ipynb' / 'd')!r}); "
        f"open({str(folder / 'odd.ipynb')!r}, 'w').write({json.dumps(odd)!r}); "
        f"open({str(folder / 'real.ipynb')!r}, 'w').write({json.dumps(NOTEBOOK)!r})",
    )
    assert planted.returncode == 0, planted.stderr
    assert clear_outputs(pod_home, "armoede") == 1
    assert json.loads((folder / "real.ipynb").read_text())["cells"][0]["outputs"] == []
    assert not (folder / ".ipynb_checkpoints" / "a.ipynb").exists()
    for name in ("odd.ipynb", "real.ipynb"):  # the module's next test counts notebooks
        (folder / name).unlink()


def test_expiry_clears_the_outputs_a_pod_left_in_its_notebooks(pod_home: Home) -> None:  # noqa: F811
    """An expired dossier keeps its notebooks' code and text only (chores.clear_outputs, what
    expire_workspace runs as root). On pods the folder belongs to the pod's number, which
    is no Unix user of this machine: the chore must still run, as that number."""
    number = pod_ids(pod_home)["armoede"]
    notebook = pod_home.workspace_dir("armoede") / "analysis.ipynb"
    written = as_pod(number, f"open({str(notebook)!r}, 'w').write({json.dumps(NOTEBOOK)!r})")
    assert written.returncode == 0, written.stderr
    assert clear_outputs(pod_home, "armoede") == 1
    cells = json.loads(notebook.read_text())["cells"]
    source = "".join(cells[0]["source"])  # nbformat may write it as lines
    assert cells[0]["outputs"] == [] and source == NOTEBOOK["cells"][0]["source"]
    assert notebook.stat().st_uid == number  # rewritten as the pod, not as root
