"""deploy/chart as `helm template` renders it (helm pinned by deploy/package-lock.json, offline):
every object valid for Kubernetes 1.33 (strict: no unknown field), and no pod that could
step out of the restricted Pod Security Standard, reach the node, talk to the Kubernetes API or
hold the master key outside the apply CronJob. apply is the one exception to "restricted": it
runs as root with exactly CHOWN, DAC_OVERRIDE, FOWNER, SETGID and SETUID (what giving files to
the pod numbers and to the control identity, and an expired dossier's chores as its number,
need; test_apply_pod.py runs it so), which the baseline standard
allows; nothing else of it is loosened, and no pod sets an fsGroup on the shared HOME.

checkov is not used: pinning it here downgrades packaging (26 -> 23.2, a runtime dependency),
pytest and python-dateutil, and it needs 9 s to start; the checks below are the privilege
checks of the restricted standard that matter here, on the real rendered objects."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

import kubernetes_validate
import pytest
import yaml
from helm import CHART, REPO, render

from dossierhub.state.settings import Settings
from dossierhub.workspaces.k8svalues import HOME_MOUNT, z2jh_values

K8S_VERSION = "1.33"
# the capabilities apply needs as root (_helpers.tpl says why), and no more
APPLY_CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID")
# the baseline Pod Security Standard lets a container add these and no others
BASELINE_CAPABILITIES = {
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
}
VALUES = {"default": [], "city example": ["-f", str(CHART / "examples" / "city.yaml")]}


@pytest.fixture(scope="module", params=list(VALUES))
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(*VALUES[request.param])


def pod_specs(obj: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = obj.get("spec", {})
    if obj["kind"] == "CronJob":
        yield spec["jobTemplate"]["spec"]["template"]["spec"]
    elif "template" in spec:
        yield spec["template"]["spec"]


# the one Role: z2jh's hub makes and deletes the workspaces' policies (templates/hub-rbac.yaml)
HUB_RULES = [
    {
        "apiGroups": ["networking.k8s.io"],
        "resources": ["networkpolicies"],
        "verbs": ["create", "update", "delete"],
    }
]


# apply's Role: get and patch z2jh's hub Deployment, that one (templates/apply-rbac.yaml)
APPLY_RULES = [
    {
        "apiGroups": ["apps"],
        "resources": ["deployments"],
        "resourceNames": ["hub"],
        "verbs": ["get", "patch"],
    }
]
APPLY_ACCOUNT = "dossierhub-apply"


def is_apply(obj: dict[str, Any]) -> bool:
    labels = obj["metadata"].get("labels", {})
    return obj["kind"] == "CronJob" and labels.get("app.kubernetes.io/component") == "apply"


def rbac_problems(obj: dict[str, Any]) -> list[str]:
    """Two Roles only: the hub's network policies and apply's hub rollout, each bound to its
    one account; no cluster-wide right; the service's account bound to nothing."""
    name = f"{obj['kind']}/{obj['metadata']['name']}"
    if obj["kind"] in ("ClusterRole", "ClusterRoleBinding"):
        return [f"{name}: grants cluster-wide Kubernetes API rights"]
    if obj["kind"] == "Role" and obj["rules"] not in (HUB_RULES, APPLY_RULES):
        return [
            f"{name}: grants Kubernetes API rights beyond the hub's policies and apply's rollout"
        ]
    if obj["kind"] != "RoleBinding":
        return []
    subjects = {s["name"] for s in obj["subjects"]}
    if "dossierhub" in subjects:
        return [f"{name}: grants the service Kubernetes API rights"]
    is_apply_binding = obj["roleRef"]["name"] == "dossierhub-apply-hub-rollout"
    if APPLY_ACCOUNT in subjects and not is_apply_binding:
        return [f"{name}: grants apply's account more than the hub's rollout"]
    if is_apply_binding and subjects != {APPLY_ACCOUNT}:
        return [f"{name}: binds the hub's rollout to {sorted(subjects - {APPLY_ACCOUNT})}"]
    return []


def privilege_problems(obj: dict[str, Any]) -> list[str]:
    """What in one object breaks the restricted standard or our own rules; [] when nothing.
    apply's pod may run as root with APPLY_CAPABILITIES, and with nothing else."""
    name = f"{obj['kind']}/{obj['metadata']['name']}"
    found = rbac_problems(obj)
    allowed = APPLY_CAPABILITIES if is_apply(obj) else ()
    for pod in pod_specs(obj):
        context = pod.get("securityContext", {})
        for flag in ("hostNetwork", "hostPID", "hostIPC"):
            if pod.get(flag):
                found.append(f"{name}: {flag}")
        # apply's pod alone mounts its account's token (its one right: the hub's rollout)
        token = pod.get("automountServiceAccountToken") is not False
        if token and not (is_apply(obj) and pod.get("serviceAccountName") == APPLY_ACCOUNT):
            found.append(f"{name}: mounts a service-account token")
        if is_apply(obj) != (pod.get("serviceAccountName") == APPLY_ACCOUNT):
            found.append(f"{name}: runs as apply's account, or apply not as it")
        root = context.get("runAsNonRoot") is not True or context.get("runAsUser", 0) == 0
        if root and not is_apply(obj):
            found.append(f"{name}: may run as root")
        if context.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            found.append(f"{name}: no RuntimeDefault seccomp profile")
        if "fsGroup" in context and any("persistentVolumeClaim" in v for v in pod["volumes"]):
            found.append(f"{name}: fsGroup on the shared HOME (it would regroup every dossier's)")
        secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
        found += [f"{name}: hostPath volume {v['name']}" for v in pod["volumes"] if "hostPath" in v]
        for container in pod.get("initContainers", []) + pod["containers"]:
            found += container_problems(f"{name} {container['name']}", container, allowed)
            for mount in container.get("volumeMounts", []):
                master = mount["name"] in secrets and mount["mountPath"].endswith("/master.key")
                if master and obj["kind"] != "CronJob":
                    found.append(f"{name}: mounts the master key ({secrets[mount['name']]})")
    return found


def container_problems(
    name: str, container: dict[str, Any], allowed: tuple[str, ...] = ()
) -> list[str]:
    """`allowed`: the capabilities this container may add (apply's); every other it keeps or
    adds is a problem, and so is root for a container allowed none."""
    context = container.get("securityContext", {})
    found = []
    if context.get("privileged", False):
        found.append(f"{name}: privileged")
    if context.get("allowPrivilegeEscalation") is not False:
        found.append(f"{name}: may escalate privileges")
    if context.get("readOnlyRootFilesystem") is not True:
        found.append(f"{name}: a writable root filesystem")
    capabilities = context.get("capabilities", {})
    extra = sorted(set(capabilities.get("add", [])) - set(allowed))
    if capabilities.get("drop") != ["ALL"] or extra:
        found.append(f"{name}: keeps or adds capabilities {extra or ''}".rstrip())
    if context.get("runAsUser") == 0 and not allowed:
        found.append(f"{name}: runs as root")
    return found


def test_every_object_is_valid_for_kubernetes(rendered: list[dict[str, Any]]) -> None:
    kinds = sorted(obj["kind"] for obj in rendered)
    assert kinds == [
        "CronJob",
        "Deployment",
        "NetworkPolicy",
        "NetworkPolicy",
        "NetworkPolicy",
        "Role",
        "Role",
        "RoleBinding",
        "RoleBinding",
        "Service",
        "ServiceAccount",
        "ServiceAccount",
    ]
    for obj in rendered:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_no_object_is_privileged_root_on_the_node_or_holding_the_master_key(
    rendered: list[dict[str, Any]],
) -> None:
    problems = [problem for obj in rendered for problem in privilege_problems(obj)]
    assert not problems, "\n".join(problems)


def test_the_checks_catch_what_they_look_for() -> None:
    """Each check, fed the rendered Deployment with one thing changed, names the change."""
    deployment = next(o for o in render() if o["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    changes = {
        "hostPath volume": lambda p: p["volumes"].append({"name": "n", "hostPath": {"path": "/"}}),
        "privileged": lambda p: p["containers"][0]["securityContext"].update(privileged=True),
        "may run as root": lambda p: p["securityContext"].update(runAsUser=0),
        "service-account token": lambda p: p.pop("automountServiceAccountToken"),
        "adds capabilities": lambda p: p["containers"][0]["securityContext"]["capabilities"].update(
            add=["NET_ADMIN"]
        ),
        "mounts the master key": lambda p: (
            p["volumes"].append({"name": "k", "secret": {"secretName": "dossierhub-master-key"}}),
            p["containers"][0]["volumeMounts"].append(
                {"name": "k", "mountPath": "/srv/dossierhub/secrets/master.key"}
            ),
        ),
    }
    assert privilege_problems(deployment) == []
    for words, change in changes.items():
        changed = copy.deepcopy(deployment)
        change(changed["spec"]["template"]["spec"])
        assert any(words in problem for problem in privilege_problems(changed)), words
    assert pod == deployment["spec"]["template"]["spec"]  # the original untouched


def test_apply_alone_runs_as_root_and_with_exactly_its_three_capabilities(
    rendered: list[dict[str, Any]],
) -> None:
    """The one pod outside "restricted" is apply's, and it stays inside "baseline"."""
    assert [o["kind"] for o in rendered if is_apply(o)] == ["CronJob"]
    for obj in rendered:
        for pod in pod_specs(obj):
            context = pod["securityContext"]
            added = {
                capability
                for container in pod["containers"]
                for capability in container["securityContext"]["capabilities"].get("add", [])
            }
            if is_apply(obj):
                assert (context["runAsUser"], context["runAsGroup"]) == (0, 0)
                assert added == set(APPLY_CAPABILITIES) <= BASELINE_CAPABILITIES
            else:
                assert context["runAsNonRoot"] is True and context["runAsUser"] > 0
                assert added == set()


def test_the_apply_exception_is_exactly_as_wide_as_it_says() -> None:
    """Fed the rendered objects with one thing changed, the checks name it: a capability
    more for apply, any capability or root for another pod, an fsGroup over HOME, or apply
    loosened otherwise."""
    objects = render()
    cronjob = next(o for o in objects if is_apply(o))
    deployment = next(o for o in objects if o["kind"] == "Deployment")

    def apply_pod(obj: dict[str, Any]) -> dict[str, Any]:
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]

    def service_pod(obj: dict[str, Any]) -> dict[str, Any]:
        return obj["spec"]["template"]["spec"]

    def caps(pod: dict[str, Any]) -> dict[str, Any]:
        return pod["containers"][0]["securityContext"]["capabilities"]

    changes: list[tuple[str, dict[str, Any], Any]] = [
        (
            "adds capabilities ['DAC_READ_SEARCH']",
            cronjob,
            lambda o: caps(apply_pod(o))["add"].append("DAC_READ_SEARCH"),
        ),
        (
            "adds capabilities ['CHOWN']",
            deployment,
            lambda o: caps(service_pod(o)).update(add=["CHOWN"]),
        ),
        (
            "may run as root",
            cronjob,
            lambda o: o["metadata"]["labels"].update({"app.kubernetes.io/component": "other"}),
        ),
        (
            "fsGroup on the shared HOME",
            cronjob,
            lambda o: apply_pod(o)["securityContext"].update(fsGroup=10000),
        ),
        (
            "fsGroup on the shared HOME",
            deployment,
            lambda o: service_pod(o)["securityContext"].update(fsGroup=10000),
        ),
        (
            "may escalate privileges",
            cronjob,
            lambda o: apply_pod(o)["containers"][0]["securityContext"].update(
                allowPrivilegeEscalation=True
            ),
        ),
        (
            "a writable root filesystem",
            cronjob,
            lambda o: apply_pod(o)["containers"][0]["securityContext"].pop(
                "readOnlyRootFilesystem"
            ),
        ),
    ]
    assert privilege_problems(cronjob) == [] and privilege_problems(deployment) == []
    for words, original, change in changes:
        changed = copy.deepcopy(original)
        change(changed)
        assert any(words in problem for problem in privilege_problems(changed)), words


def test_the_guide_s_namespace_enforces_baseline_and_warns_of_anything_not_restricted() -> None:
    """The labels docs/operating-on-kubernetes.md tells operators to set: baseline admits apply,
    and restricted is still what every pod is measured against (a warning, an audit note)."""
    guide = (REPO / "docs" / "operating-on-kubernetes.md").read_text()
    labels = dict(re.findall(r"pod-security\.kubernetes\.io/([\w-]+)=([\w.]+)", guide))
    assert labels == {
        "enforce": "baseline",
        "enforce-version": f"v{K8S_VERSION}",
        "warn": "restricted",
        "audit": "restricted",
    }


def test_the_service_is_where_the_z2jh_values_register_it() -> None:
    """`dossierhub k8s values` registers http://dossierhub:<hub.port + 3>; the chart's Service
    answers there, and the service's policy lets the proxy and the hub in, nobody else."""
    objects = {(o["kind"], o["metadata"]["name"]): o for o in render()}
    service = objects["Service", "dossierhub"]
    assert service["spec"]["ports"][0]["port"] == 8003
    policy = objects["NetworkPolicy", "dossierhub"]["spec"]
    sources = [peer["podSelector"]["matchLabels"] for peer in policy["ingress"][0]["from"]]
    assert sources == [
        {"app": "jupyterhub", "component": "proxy"},
        {"app": "jupyterhub", "component": "hub"},
    ]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    # no egress rule without a destination: nothing reaches the internet or a workspace
    assert all(rule.get("to") for rule in policy["egress"])
    deployment = objects["Deployment", "dossierhub"]["spec"]["template"]
    env = deployment["spec"]["containers"][0]["env"]
    assert env == [
        {
            "name": "JUPYTERHUB_API_TOKEN",
            "valueFrom": {
                "secretKeyRef": {"name": "hub", "key": "hub.services.dossierhub.apiToken"}
            },
        }
    ]


def test_the_chart_s_defaults_meet_the_z2jh_values_of_default_settings() -> None:
    """Installed side by side with their defaults, the two charts find each other: the
    Service where the hub was told the service is, HOME's claim at the hub's path, the token
    under the key z2jh keeps it, the hub's labels as the workspaces' policy names them."""
    chart = yaml.safe_load((CHART / "values.yaml").read_text())
    settings = Settings.model_validate(
        {
            "hub": {"spawner": "kubernetes"},
            "kubernetes": {"image": "r/w:1", "hub_image": "r/h:1"},
            "audit": {"key_file": chart["audit"]["keyPath"]},
        }
    )
    hub = z2jh_values(settings)["hub"]
    objects = {(o["kind"], o["metadata"]["name"]): o for o in render()}
    service = objects["Service", "dossierhub"]
    port = service["spec"]["ports"][0]["port"]
    assert hub["services"]["dossierhub"]["url"] == f"http://{service['metadata']['name']}:{port}"
    assert (chart["home"]["claim"], chart["home"]["mountPath"]) == (
        settings.kubernetes.home_claim,
        str(HOME_MOUNT),
    )
    assert {"name": "dossierhub-home", "mountPath": str(HOME_MOUNT)} in hub["extraVolumeMounts"]
    assert chart["hub"]["tokenKey"] == "hub.services.dossierhub.apiToken"
    assert chart["hub"]["labels"] == settings.kubernetes.hub_labels
    assert chart["proxy"]["labels"] == settings.kubernetes.proxy_labels
    assert chart["hub"]["port"] == settings.kubernetes.hub_port
    assert chart["dns"]["labels"] == settings.kubernetes.dns_labels
    # the audit keys from one Secret at one path in both pods: the hub's and the service's
    # records verify as one chain, and neither pod holds the master key
    deployment = objects["Deployment", "dossierhub"]["spec"]["template"]["spec"]
    (audit_mount,) = [
        m for m in deployment["containers"][0]["volumeMounts"] if m["name"] == "audit-key"
    ]
    (audit_volume,) = [v for v in deployment["volumes"] if v["name"] == "audit-key"]
    hub_mounts = {m["mountPath"]: m for m in hub["extraVolumeMounts"]}
    hub_volumes = {v["name"]: v for v in hub["extraVolumes"]}
    shared = hub_mounts[audit_mount["mountPath"]]
    assert audit_mount["subPath"] == shared["subPath"] == "audit.keys"
    assert (
        audit_volume["secret"]["secretName"]
        == hub_volumes[shared["name"]]["secret"]["secretName"]
        == "dossierhub-audit-key"
    )
    assert audit_mount["readOnly"] is True
    # the service and the hub are the one control identity that holds HOME's control files
    control = settings.kubernetes.control_uid
    assert (chart["runAs"]["user"], chart["runAs"]["group"]) == (control, control)
    for context in (hub["podSecurityContext"], hub["containerSecurityContext"]):
        assert (context["runAsUser"], context["runAsGroup"]) == (control, control)


def test_report_runs_reach_nothing_and_nobody_reaches_them() -> None:
    """A report Job's pod (reports.jobs.job_manifest) holds the dossier's extracts and runs
    a template's code: it must not send them anywhere (the internet, DNS, the cloud's
    metadata address, the database, the hub) but through the airlock, as a local report
    kernel runs without a network at all. A policy that selects the pod with both types and
    no rule is Kubernetes' "deny all"."""
    from dossierhub.reports.jobs import job_labels

    labels = job_labels("armoede", "20260101T000000-abcdef")
    policies = [o for o in render() if o["kind"] == "NetworkPolicy"]
    selecting = [
        p["spec"]
        for p in policies
        if all(labels.get(k) == v for k, v in p["spec"]["podSelector"]["matchLabels"].items())
    ]
    assert len(selecting) == 1, "exactly one policy decides for a report run's pod"
    (spec,) = selecting
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["ingress"] == [] and spec["egress"] == []
    # it selects report runs only: the service and apply keep their own walls
    assert spec["podSelector"]["matchLabels"] == {"dossierhub.io/role": "report"}


def test_apply_alone_may_get_and_patch_the_hub_s_deployment_and_nothing_else(
    rendered: list[dict[str, Any]],
) -> None:
    """apply rolls z2jh's hub for new roles (workspaces/hubrollout.py): its own account, its
    token mounted in its pod only, bound to one Role with get and patch on the Deployment
    `hub`; the service's pod still gets no token and its account no role."""
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for obj in rendered:
        by_kind.setdefault(obj["kind"], []).append(obj)
    roles = {r["metadata"]["name"]: r["rules"] for r in by_kind["Role"]}
    assert roles["dossierhub-apply-hub-rollout"] == APPLY_RULES
    bindings = {
        b["roleRef"]["name"]: [s["name"] for s in b["subjects"]] for b in by_kind["RoleBinding"]
    }
    assert bindings["dossierhub-apply-hub-rollout"] == [APPLY_ACCOUNT]
    assert all(
        APPLY_ACCOUNT not in subjects or role.endswith("hub-rollout")
        for role, subjects in bindings.items()
    )
    accounts = {a["metadata"]["name"]: a for a in by_kind["ServiceAccount"]}
    assert set(accounts) == {"dossierhub", APPLY_ACCOUNT}
    assert all(a["automountServiceAccountToken"] is False for a in accounts.values())
    (apply_pod,) = [p for o in rendered if is_apply(o) for p in pod_specs(o)]
    assert apply_pod["serviceAccountName"] == APPLY_ACCOUNT
    assert apply_pod["automountServiceAccountToken"] is True
    others = [p for o in rendered if not is_apply(o) for p in pod_specs(o)]
    assert others and all(p["automountServiceAccountToken"] is False for p in others)
    assert all(p["serviceAccountName"] == "dossierhub" for p in others)


def test_the_rbac_checks_catch_a_wider_role_or_another_account() -> None:
    objects = render()
    role = next(
        o
        for o in objects
        if o["metadata"]["name"] == "dossierhub-apply-hub-rollout" and o["kind"] == "Role"
    )
    binding = next(
        o
        for o in objects
        if o["kind"] == "RoleBinding" and o["roleRef"]["name"] == "dossierhub-apply-hub-rollout"
    )
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    changes: list[tuple[str, dict[str, Any], Any]] = [
        ("beyond the hub's policies", role, lambda o: o["rules"][0]["verbs"].append("list")),
        ("beyond the hub's policies", role, lambda o: o["rules"][0].pop("resourceNames")),
        ("beyond the hub's policies", role, lambda o: o["rules"][0]["resources"].append("pods")),
        (
            "grants the service",
            binding,
            lambda o: o["subjects"].append(
                {"kind": "ServiceAccount", "name": "dossierhub", "namespace": "dossiers"}
            ),
        ),
        (
            "binds the hub's rollout",
            binding,
            lambda o: o["subjects"].append(
                {"kind": "ServiceAccount", "name": "hub", "namespace": "dossiers"}
            ),
        ),
        (
            "runs as apply's account",
            deployment,
            lambda o: o["spec"]["template"]["spec"].update(serviceAccountName=APPLY_ACCOUNT),
        ),
        (
            "mounts a service-account token",
            deployment,
            lambda o: o["spec"]["template"]["spec"].update(automountServiceAccountToken=True),
        ),
    ]
    assert privilege_problems(role) == privilege_problems(binding) == []
    for words, original, change in changes:
        changed = copy.deepcopy(original)
        change(changed)
        assert any(words in problem for problem in privilege_problems(changed)), words


def test_apply_reads_the_raw_sources_read_only_and_the_hub_token_as_one_root_file(
    rendered: list[dict[str, Any]],
) -> None:
    (pod,) = [p for o in rendered if is_apply(o) for p in pod_specs(o)]
    (container,) = pod["containers"]
    home = next(v for v in pod["volumes"] if v["name"] == "home")
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    raw = mounts[f"{home_path(rendered)}/raw"]
    assert (raw["name"], raw["subPath"], raw["readOnly"]) == ("home", "raw", True)
    assert "persistentVolumeClaim" in home
    env = {e["name"]: e["value"] for e in container["env"]}
    token = mounts[env["DOSSIERHUB_HUB_TOKEN_FILE"]]
    secret = next(v["secret"] for v in pod["volumes"] if v["name"] == token["name"])
    assert secret["items"] == [{"key": "hub.services.dossierhub.apiToken", "path": "token"}]
    assert (secret["secretName"], secret["defaultMode"], token["readOnly"]) == ("hub", 0o400, True)
    assert env["DOSSIERHUB_HUB_DEPLOYMENT"] == "hub"
    assert env["DOSSIERHUB_HUB_API_URL"].endswith("/hub/api")
    # the master key stays mounted here, from its Secret, read-only
    key = mounts[f"{home_path(rendered)}/secrets/master.key"]
    assert key["readOnly"] is True


def home_path(rendered: list[dict[str, Any]]) -> str:
    (pod,) = [p for o in rendered if is_apply(o) for p in pod_specs(o)]
    return str(pod["containers"][0]["command"][2])
