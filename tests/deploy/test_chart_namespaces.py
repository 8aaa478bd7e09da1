"""Red team of deploy/chart (issue 15): apply and the master key in a namespace of their own.

The finding: z2jh's hub Role (facts from the chart's jupyterhub/templates/hub/rbac.yaml, below)
lets the internet-facing hub get, list, create and delete pods, claims, Secrets and services in
its own namespace. With apply's CronJob there, a taken-over hub could `get secret
dossierhub-master-key`; and since that namespace had to enforce only the *baseline* Pod
Security Standard (apply runs as root with five capabilities), it could create a root pod
with DAC_OVERRIDE over HOME's claim and read every dossier. So apply, its account, its
network policy and every Secret it mounts live in apply's own namespace; the hub's namespace
holds only pods that meet *restricted*, and the hub's network policy (`dossierhub k8s
values`) lets apply's pods, and only them, in from there.
"""

from __future__ import annotations

import copy
import dataclasses
import subprocess
from collections.abc import Iterator
from typing import Any

import kubernetes_validate
import pytest
from helm import CHART, HELM, render
from test_chart import K8S_VERSION, cel_program, pod_specs

from dossierhub.state.settings import Settings
from dossierhub.workspaces.hubrollout import ROLES_ANNOTATION
from dossierhub.workspaces.k8svalues import z2jh_values

HUB_NAMESPACE = "dossiers"  # helm.render's --namespace: the release's, z2jh's, the workspaces'


@dataclasses.dataclass(frozen=True)
class Case:
    """Values, and what apply's side of the chart is with them."""

    args: list[str]
    namespace: str  # apply's
    master_key: str  # its Secret
    claim: str  # HOME's claim in apply's namespace
    makes_namespace: bool


CASES = {
    "default": Case([], "dossiers-apply", "dossierhub-master-key", "dossierhub-home", False),
    "city example": Case(
        ["-f", str(CHART / "examples" / "city.yaml")],
        "dossiers-apply-city",
        "city-master-key",
        "city-dossiers-apply",
        True,
    ),
}
# z2jh's Role for its hub, in the hub's namespace (jupyterhub/templates/hub/rbac.yaml)
Z2JH_HUB_RULES = [
    {
        "apiGroups": [""],
        "resources": ["pods", "persistentvolumeclaims", "secrets", "services"],
        "verbs": ["get", "watch", "list", "create", "delete"],
    },
    {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "watch", "list"]},
]
APPLY_ACCOUNT = "dossierhub"
# the capabilities the restricted standard lets a container add
RESTRICTED_CAPABILITIES = {"NET_BIND_SERVICE"}


@pytest.fixture(scope="module", params=list(CASES))
def chart(request: pytest.FixtureRequest) -> tuple[list[dict[str, Any]], Case]:
    case = CASES[request.param]
    return render(*case.args), case


def namespace_of(obj: dict[str, Any]) -> str | None:
    """Where `kubectl apply` puts it: its own namespace, or the release's; None for a
    cluster-wide object (a Namespace, an admission policy)."""
    if obj["kind"] in (
        "Namespace",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ):
        return None
    return str(obj["metadata"].get("namespace", HUB_NAMESPACE))


def hub_may(verb: str, resource: str, namespace: str) -> bool:
    """What z2jh's hub account may do by its Role (bound in the hub's namespace only)."""
    return namespace == HUB_NAMESPACE and any(
        resource in rule["resources"] and verb in rule["verbs"] for rule in Z2JH_HUB_RULES
    )


def secrets_mounted(obj: dict[str, Any]) -> Iterator[str]:
    for pod in pod_specs(obj):
        for volume in pod.get("volumes", []):
            if "secret" in volume:
                yield volume["secret"]["secretName"]
        for container in pod.get("initContainers", []) + pod["containers"]:
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    yield ref["name"]


def not_restricted(pod: dict[str, Any]) -> list[str]:
    """What of a pod the restricted Pod Security Standard refuses (its privilege and
    volume rules); [] when it meets it."""
    found = [flag for flag in ("hostNetwork", "hostPID", "hostIPC") if pod.get(flag)]
    context = pod.get("securityContext", {})
    found += [f"volume {v['name']}: hostPath" for v in pod.get("volumes", []) if "hostPath" in v]
    if context.get("seccompProfile", {}).get("type") not in ("RuntimeDefault", "Localhost"):
        found.append("no seccomp profile")
    for container in pod.get("initContainers", []) + pod["containers"]:
        own = container.get("securityContext", {})
        merged = {**context, **own}
        name = container["name"]
        if merged.get("runAsNonRoot") is not True or merged.get("runAsUser", 1) == 0:
            found.append(f"{name}: may run as root")
        if own.get("privileged") or own.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: privileged or may escalate")
        capabilities = own.get("capabilities", {})
        if capabilities.get("drop") != ["ALL"]:
            found.append(f"{name}: does not drop ALL capabilities")
        if set(capabilities.get("add", [])) - RESTRICTED_CAPABILITIES:
            found.append(f"{name}: adds {sorted(capabilities['add'])}")
    return found


def namespace_problems(objects: list[dict[str, Any]], apply_namespace: str) -> list[str]:
    """What a taken-over hub could reach of apply's: a Secret apply's pod mounts that the
    hub's Role lets it get, an object of apply's in the hub's namespace, or a pod there that
    the restricted standard refuses (the namespace could then not enforce it, and the hub
    could create a pod as root over HOME's claim). [] when none."""
    found = []
    for obj in objects:
        name, namespace = f"{obj['kind']}/{obj['metadata']['name']}", namespace_of(obj)
        component = obj["metadata"].get("labels", {}).get("app.kubernetes.io/component")
        # the Role to patch the hub's Deployment is the hub's namespace's by nature
        if component == "apply" and obj["kind"] not in ("Role", "RoleBinding"):
            if namespace not in (apply_namespace, None):
                found.append(f"{name}: apply's, in {namespace}")
            for secret in secrets_mounted(obj):
                if hub_may("get", "secrets", str(namespace)):
                    found.append(f"{name}: the hub may read {namespace}/{secret}, which it mounts")
        for pod in pod_specs(obj):
            if namespace == HUB_NAMESPACE and not_restricted(pod):
                found.append(
                    f"{name}: in the hub's namespace, not restricted: {not_restricted(pod)}"
                )
    return found


def test_the_hub_can_read_no_secret_apply_holds(chart: tuple[list[dict[str, Any]], Case]) -> None:
    """The attack: z2jh's hub, taken over, gets every Secret of its namespace its Role lets
    it read, or creates a root pod over HOME's claim there. None of those Secrets is the
    master key or another that apply mounts, nothing of apply's is in the hub's namespace, and
    every pod there meets restricted, so the namespace can enforce it."""
    objects, case = chart
    assert namespace_problems(objects, case.namespace) == []
    (cronjob,) = [obj for obj in objects if obj["kind"] == "CronJob"]
    assert namespace_of(cronjob) == case.namespace
    assert case.master_key in set(secrets_mounted(cronjob))
    (apply_pod,) = pod_specs(cronjob)
    assert apply_pod["serviceAccountName"] == APPLY_ACCOUNT
    (account,) = [
        o
        for o in objects
        if o["kind"] == "ServiceAccount" and o["metadata"]["name"] == APPLY_ACCOUNT
    ]
    assert namespace_of(account) == case.namespace
    # apply's is the one pod restricted refuses, and it is in apply's namespace
    pods = [(namespace_of(o), not_restricted(p)) for o in objects for p in pod_specs(o)]
    assert sorted(ns for ns, problems in pods if problems) == [case.namespace]
    assert [ns for ns, _ in pods].count(HUB_NAMESPACE) == 1  # the service's Deployment


def test_the_checks_name_the_finding_as_the_chart_had_it() -> None:
    """apply's objects back in the hub's namespace, as before issue 15: the checks name the
    master key the hub could read and the root pod that kept the namespace baseline."""
    objects = render()
    for obj in objects:
        if obj["metadata"].get("namespace") == "dossiers-apply":
            del obj["metadata"]["namespace"]
    found = "\n".join(namespace_problems(objects, "dossiers-apply"))
    assert "CronJob/dossierhub-apply: apply's, in dossiers" in found
    assert "ServiceAccount/dossierhub: apply's, in dossiers" in found
    assert "the hub may read dossiers/dossierhub-master-key, which it mounts" in found
    assert "in the hub's namespace, not restricted: ['apply: may run as root'" in found


def test_the_rollout_role_binds_exactly_apply_s_account_across_namespaces(
    chart: tuple[list[dict[str, Any]], Case],
) -> None:
    """apply still patches the hub's Deployment: the Role and its binding live in the hub's
    namespace, and the binding's one subject is apply's account in apply's namespace."""
    objects, case = chart
    apply_namespace = case.namespace
    by_name = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    role = by_name["Role", "dossierhub-apply-hub-rollout"]
    binding = by_name["RoleBinding", "dossierhub-apply-hub-rollout"]
    assert namespace_of(role) == namespace_of(binding) == HUB_NAMESPACE
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": APPLY_ACCOUNT, "namespace": apply_namespace}
    ]
    # z2jh's hub keeps its own right in its own namespace: the network policies
    hub_binding = by_name["RoleBinding", "dossierhub-hub-network-policies"]
    assert hub_binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "hub", "namespace": HUB_NAMESPACE}
    ]


def test_apply_mounts_home_and_the_hub_token_from_its_own_namespace(
    chart: tuple[list[dict[str, Any]], Case],
) -> None:
    """A pod mounts only claims and Secrets of its own namespace: HOME through apply's claim
    (the same export), the service's token from a copy, the hub's API by its full name."""
    objects, case = chart
    cronjob = next(o for o in objects if o["kind"] == "CronJob")
    (pod,) = pod_specs(cronjob)
    volumes = {v["name"]: v for v in pod["volumes"]}
    claim = volumes["home"]["persistentVolumeClaim"]["claimName"]
    assert claim == case.claim
    assert volumes["hub-token"]["secret"]["secretName"] == "dossierhub-hub-token"
    assert volumes["hub-token"]["secret"]["items"] == [{"key": "token", "path": "token"}]
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert env["DOSSIERHUB_HUB_API_URL"] == f"http://hub.{HUB_NAMESPACE}.svc:8081/hub/api"


def test_apply_reaches_the_hub_and_the_hub_s_policy_lets_it_in(
    chart: tuple[list[dict[str, Any]], Case],
) -> None:
    """Both ends of apply's way to the hub's API: apply's egress names the hub's namespace
    and pods, and z2jh's hub policy (values of `dossierhub k8s values` for the same
    namespaces) admits pods with apply's labels from apply's namespace, and no other."""
    objects, case = chart
    apply_namespace = case.namespace
    policy = next(o for o in objects if o["metadata"]["name"] == "dossierhub-apply")
    assert namespace_of(policy) == apply_namespace
    to_hub = policy["spec"]["egress"][0]
    (peer,) = to_hub["to"]
    assert peer["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": HUB_NAMESPACE}
    }
    assert peer["podSelector"]["matchLabels"].items() >= {"component": "hub"}.items()
    assert to_hub["ports"] == [{"port": 8081, "protocol": "TCP"}]
    settings = Settings.model_validate(
        {
            "hub": {"spawner": "kubernetes"},
            "kubernetes": {
                "image": "r/w:1",
                "hub_image": "r/h:1",
                "namespace": HUB_NAMESPACE,
                # the default names the chart's default; the city names its own
                **({"apply_namespace": apply_namespace} if case.makes_namespace else {}),
            },
            "audit": {"key_file": "/run/secrets/dossierhub-audit/audit.keys"},
        }
    )
    (rule,) = z2jh_values(settings)["hub"]["networkPolicy"]["ingress"]
    # z2jh renders it into its hub's NetworkPolicy as one ingress rule: valid there, strictly
    hub_policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "hub", "namespace": HUB_NAMESPACE},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [rule]},
    }
    kubernetes_validate.validate(hub_policy, K8S_VERSION, strict=True)
    (peer,) = rule["from"]
    cronjob = next(o for o in objects if o["kind"] == "CronJob")
    labels = cronjob["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    assert peer["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": namespace_of(cronjob)
    }
    assert peer["podSelector"]["matchLabels"].items() <= labels.items()
    assert rule["ports"] == [{"port": 8081, "protocol": "TCP"}]
    # the service's pods, in the hub's namespace, do not match it (z2jh's label rule is theirs)
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    service_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert not peer["podSelector"]["matchLabels"].items() <= service_labels.items()


def test_the_chart_makes_apply_s_namespace_only_when_asked_and_labels_it_baseline(
    chart: tuple[list[dict[str, Any]], Case],
) -> None:
    objects, case = chart
    apply_namespace = case.namespace
    namespaces = [o for o in objects if o["kind"] == "Namespace"]
    if not case.makes_namespace:  # the default: the operator's
        assert namespaces == []
        return
    (namespace,) = namespaces
    kubernetes_validate.validate(namespace, K8S_VERSION, strict=True)
    assert namespace["metadata"]["name"] == apply_namespace
    labels = namespace["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "baseline"
    assert labels["pod-security.kubernetes.io/warn"] == "restricted"


REFUSED = ["--set", f"apply.namespace={HUB_NAMESPACE}"]


def test_the_chart_refuses_apply_in_the_hub_s_namespace() -> None:
    result = subprocess.run(
        [HELM, "template", "dossierhub", str(CHART), "--namespace", HUB_NAMESPACE, *REFUSED],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"HOME": "/nonexistent", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode != 0
    assert 'apply.namespace is "dossiers", the release\'s own namespace' in result.stderr


def test_settings_refuse_apply_in_the_hub_s_namespace() -> None:
    with pytest.raises(ValueError, match="the hub's own namespace"):
        Settings.model_validate(
            {"kubernetes": {"namespace": "dossiers", "apply_namespace": "dossiers"}}
        )
    assert Settings.model_validate({}).kubernetes.apply_namespace_name == "dossierhub-apply"


# --- which changes to the hub's Deployment the API server admits from apply
# (templates/apply-admission.yaml) ---

APPLY_USER = "system:serviceaccount:dossiers-apply:dossierhub"


def update_refusals(
    policy: dict[str, Any], new: dict[str, Any], old: dict[str, Any], user: str
) -> list[str]:
    """The messages of the policy's validations an update fails, its CEL evaluated as the API
    server does (cel-python) with `object` and `oldObject`: [] when admitted or not the
    policy's to judge. An expression that is not true (an error included) refuses, as
    `failurePolicy: Fail` does."""
    import celpy
    from celpy import celtypes

    spec = policy["spec"]
    base = {
        "object": celpy.json_to_cel(new),
        "oldObject": celpy.json_to_cel(old),
        "request": celpy.json_to_cel({"userInfo": {"username": user}}),
    }
    for condition in spec["matchConditions"]:
        if cel_program(condition["expression"]).evaluate(base) != celtypes.BoolType(True):
            return []
    variables: dict[Any, Any] = {}
    for variable in spec["variables"]:
        activation = {**base, "variables": celtypes.MapType(variables)}
        name = celtypes.StringType(variable["name"])
        variables[name] = cel_program(variable["expression"]).evaluate(activation)
    activation = {**base, "variables": celtypes.MapType(variables)}
    refused = []
    for check in spec["validations"]:
        try:
            result = cel_program(check["expression"]).evaluate(activation)
        except celpy.CELEvalError:  # refuses, as failurePolicy: Fail
            result = None
        if result != celtypes.BoolType(True):
            refused.append(check["message"])
    return refused


def z2jh_hub(roles: str) -> dict[str, Any]:
    """z2jh's hub Deployment, in the shape its chart gives it (jupyterhub/templates/hub/
    deployment.yaml: the config checksum annotation, its account, the `hub` Secret mounted)."""
    labels = {"app": "jupyterhub", "component": "hub", "release": "hub"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "hub", "namespace": HUB_NAMESPACE, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "strategy": {"type": "Recreate"},
            "template": {
                "metadata": {
                    "labels": {**labels, "hub.jupyter.org/network-access-proxy-api": "true"},
                    "annotations": {"checksum/config-map": "ab12", ROLES_ANNOTATION: roles},
                },
                "spec": {
                    "serviceAccountName": "hub",
                    "containers": [
                        {
                            "name": "hub",
                            "image": "registry.example.org/dossierhub-hub:1.4",
                            "args": [
                                "jupyterhub",
                                "--config",
                                "/usr/local/etc/jupyterhub/jupyterhub_config.py",
                            ],
                            "volumeMounts": [
                                {"name": "secret", "mountPath": "/usr/local/etc/jupyterhub/secret/"}
                            ],
                        }
                    ],
                    "volumes": [{"name": "secret", "secret": {"secretName": "hub"}}],
                },
            },
        },
    }


def _hub_pod(d: dict[str, Any]) -> dict[str, Any]:
    return d["spec"]["template"]["spec"]


# what a taken-over apply would patch instead, each with the words of the refusal
FORGED_ROLLOUTS: dict[str, tuple[str, Any]] = {
    "another image": (
        "no part of the hub's pod",
        lambda d: _hub_pod(d)["containers"][0].update(image="evil:1"),
    ),
    "another command": (
        "no part of the hub's pod",
        lambda d: _hub_pod(d)["containers"][0].update(
            args=["sh", "-c", "cat /srv/dossierhub/raw/*"]
        ),
    ),
    "another Secret mounted": (
        "no part of the hub's pod",
        lambda d: _hub_pod(d)["volumes"].append(
            {"name": "k", "secret": {"secretName": "dossierhub-db"}}
        ),
    ),
    "another account": (
        "no part of the hub's pod",
        lambda d: _hub_pod(d).update(serviceAccountName="default"),
    ),
    "no replicas": ("replicas, selector or strategy", lambda d: d["spec"].update(replicas=0)),
    "a rolling strategy": (
        "replicas, selector or strategy",
        lambda d: d["spec"].update(strategy={"type": "RollingUpdate"}),
    ),
    "another annotation": (
        "only dossierhub.io/roles",
        lambda d: d["spec"]["template"]["metadata"]["annotations"].update(
            {"checksum/config-map": "ff"}
        ),
    ),
    "an annotation removed": (
        "only dossierhub.io/roles",
        lambda d: d["spec"]["template"]["metadata"]["annotations"].pop("checksum/config-map"),
    ),
    "a label out of its network policy": (
        "only dossierhub.io/roles",
        lambda d: d["spec"]["template"]["metadata"]["labels"].update(component="proxy"),
    ),
}


def test_apply_may_change_of_the_hub_s_deployment_its_roles_annotation_alone() -> None:
    """apply's Role lets it patch the hub's Deployment whole; the admission policy admits
    only the patch hubrollout.py makes (the roles annotation of the pod template). Each
    forged change is refused, naming why; another account's update is not its to judge."""
    objects = {(o["kind"], o["metadata"]["name"]): o for o in render()}
    name = f"dossierhub-hub-rollout.{HUB_NAMESPACE}"
    policy = objects["ValidatingAdmissionPolicy", name]
    binding = objects["ValidatingAdmissionPolicyBinding", name]
    assert policy["spec"]["failurePolicy"] == "Fail"
    assert policy["spec"]["matchConstraints"]["resourceRules"][0]["resources"] == ["deployments"]
    assert binding["spec"] == {
        "policyName": name,
        "validationActions": ["Deny"],
        "matchResources": {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": HUB_NAMESPACE}}
        },
    }
    old = z2jh_hub("armoede")
    rolled = copy.deepcopy(old)  # the merge patch hubrollout.py sends, applied
    rolled["spec"]["template"]["metadata"]["annotations"][ROLES_ANNOTATION] = "armoede,jeugd"
    assert update_refusals(policy, rolled, old, APPLY_USER) == []
    first = copy.deepcopy(old)  # a hub whose template had no roles annotation yet
    del first["spec"]["template"]["metadata"]["annotations"][ROLES_ANNOTATION]
    assert update_refusals(policy, rolled, first, APPLY_USER) == []
    for attack, (words, change) in FORGED_ROLLOUTS.items():
        forged = copy.deepcopy(rolled)
        change(forged)
        refusals = update_refusals(policy, forged, old, APPLY_USER)
        assert any(words in refusal for refusal in refusals), (attack, refusals)
    # the operator's `helm upgrade` of z2jh is not apply's
    assert update_refusals(policy, forged, old, "system:admin") == []
