"""deploy/chart as `helm template` renders it (helm pinned by deploy/package-lock.json, offline):
every object valid for Kubernetes 1.33 (strict: no unknown field), and no pod that could
step out of the restricted Pod Security Standard, reach the node, talk to the Kubernetes API or
hold the master key outside the apply CronJob. apply is the one exception to "restricted": it
runs as root with exactly CHOWN, DAC_OVERRIDE, FOWNER, SETGID and SETUID (what giving files to
the pod numbers and to the control identity, and an expired dossier's chores as its number,
need; test_apply_pod.py runs it so), which the baseline standard
allows; nothing else of it is loosened, and no pod sets an fsGroup on the shared HOME.
With reports.backend kubernetes the service alone talks to the API: its own account, a Role
for Jobs and their pods with exactly the verbs it uses, its token in its pod only, and an
admission policy (its CEL evaluated here with cel-python) that admits only Jobs shaped as a
report run's.

checkov is not used: pinning it here downgrades packaging (26 -> 23.2, a runtime dependency),
pytest and python-dateutil, and it needs 9 s to start; the checks below are the privilege
checks of the restricted standard that matter here, on the real rendered objects."""

from __future__ import annotations

import copy
import functools
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from helm import CHART, HELM, REPO, render

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


# report runs as Jobs (templates/service-rbac.yaml, with reports.backend kubernetes): the
# service creates a run's Job, follows it and its pod, and deletes both; nothing else
REPORT_JOB_RULES = [
    {
        "apiGroups": ["batch"],
        "resources": ["jobs"],
        "verbs": ["create", "get", "list", "watch", "delete"],
    },
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "delete"]},
]
REPORT_JOBS_ROLE = "dossierhub-report-jobs"
ADMISSION_POLICY = "dossierhub-report-jobs.dossiers"  # cluster-wide names: the namespace in it
SERVICE_ACCOUNT = "dossierhub-service"  # the service's own; apply's is "dossierhub"
REPORT_JOBS_VALUES = [
    "--set",
    "reports.backend=kubernetes",
    "--set",
    "reports.apiServer.cidrs={192.0.2.10/32,192.0.2.11/32}",
]


def is_apply(obj: dict[str, Any]) -> bool:
    labels = obj["metadata"].get("labels", {})
    return obj["kind"] == "CronJob" and labels.get("app.kubernetes.io/component") == "apply"


def rbac_problems(obj: dict[str, Any], report_jobs: bool) -> list[str]:
    """Kubernetes API rights: z2jh's hub its network policies; with `report_jobs` the
    service's own account REPORT_JOB_RULES; apply and everything else none."""
    name = f"{obj['kind']}/{obj['metadata']['name']}"
    jobs_role = report_jobs and obj["metadata"]["name"] == REPORT_JOBS_ROLE
    if obj["kind"] in ("ClusterRole", "ClusterRoleBinding"):
        return [f"{name}: grants Kubernetes API rights cluster-wide"]
    if obj["kind"] == "Role" and obj["rules"] != (REPORT_JOB_RULES if jobs_role else HUB_RULES):
        return [f"{name}: grants Kubernetes API rights beyond its one purpose"]
    if obj["kind"] != "RoleBinding":
        return []
    subjects = {subject["name"] for subject in obj["subjects"]}
    if "dossierhub" in subjects:
        return [f"{name}: grants apply Kubernetes API rights"]
    if (SERVICE_ACCOUNT in subjects) != jobs_role or (jobs_role and subjects != {SERVICE_ACCOUNT}):
        return [f"{name}: grants the service Kubernetes API rights beyond report Jobs"]
    if obj["roleRef"]["name"] != obj["metadata"]["name"]:
        return [f"{name}: binds another Role than its own"]
    return []


def privilege_problems(obj: dict[str, Any], report_jobs: bool = False) -> list[str]:
    """What in one object breaks the restricted standard or our own rules; [] when nothing.
    apply's pod may run as root with APPLY_CAPABILITIES, and with nothing else. With
    `report_jobs` (reports.backend kubernetes) the service's pod, and no other, mounts its own
    account's token, which may make report Jobs (REPORT_JOB_RULES) and nothing more."""
    name = f"{obj['kind']}/{obj['metadata']['name']}"
    found = rbac_problems(obj, report_jobs)
    allowed = APPLY_CAPABILITIES if is_apply(obj) else ()
    for pod in pod_specs(obj):
        context = pod.get("securityContext", {})
        for flag in ("hostNetwork", "hostPID", "hostIPC"):
            if pod.get(flag):
                found.append(f"{name}: {flag}")
        service = obj["kind"] == "Deployment" and pod.get("serviceAccountName") == SERVICE_ACCOUNT
        if pod.get("automountServiceAccountToken") is not False and not (report_jobs and service):
            found.append(f"{name}: mounts a service-account token")
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
        "RoleBinding",
        "Service",
        "ServiceAccount",  # apply's
        "ServiceAccount",  # the service's
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


# --- report runs as Jobs: the service's account, its Role, its token, its way to the API ---


@pytest.fixture(scope="module")
def jobs_rendered() -> list[dict[str, Any]]:
    return render(*REPORT_JOBS_VALUES)


def test_report_jobs_give_the_service_exactly_its_rights_and_nothing_more(
    jobs_rendered: list[dict[str, Any]],
) -> None:
    """With reports.backend kubernetes: every object still valid and within the rules; one
    Role more, in this namespace, with exactly the verbs the service's Jobs need; bound to the
    service's own account alone; its token in the service's pod alone; the service may reach
    the API server's addresses and nothing new besides."""
    for obj in jobs_rendered:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    problems = [p for obj in jobs_rendered for p in privilege_problems(obj, report_jobs=True)]
    assert not problems, "\n".join(problems)
    objects = {(o["kind"], o["metadata"]["name"]): o for o in jobs_rendered}
    assert not [kind for kind, _ in objects if kind.startswith("Cluster")]
    rights = {
        (group, resource): sorted(rule["verbs"])
        for rule in objects["Role", REPORT_JOBS_ROLE]["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert rights == {
        ("batch", "jobs"): ["create", "delete", "get", "list", "watch"],
        ("", "pods"): ["delete", "get", "list", "watch"],
    }
    binding = objects["RoleBinding", REPORT_JOBS_ROLE]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": "dossiers"}
    ]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": REPORT_JOBS_ROLE,
    }
    # the account mounts its token nowhere by itself; the service's pod asks for it, apply not
    assert objects["ServiceAccount", SERVICE_ACCOUNT]["automountServiceAccountToken"] is False
    tokens = [
        (obj["kind"], pod.get("serviceAccountName"))
        for obj in jobs_rendered
        for pod in pod_specs(obj)
        if pod.get("automountServiceAccountToken") is not False
    ]
    assert tokens == [("Deployment", SERVICE_ACCOUNT)]
    cronjob = next(pod for o in jobs_rendered if is_apply(o) for pod in pod_specs(o))
    assert cronjob["serviceAccountName"] == "dossierhub"
    egress = objects["NetworkPolicy", "dossierhub"]["spec"]["egress"]
    assert all(rule.get("to") for rule in egress)
    (api,) = [rule for rule in egress if any("ipBlock" in peer for peer in rule["to"])]
    assert api == {
        "to": [{"ipBlock": {"cidr": "192.0.2.10/32"}}, {"ipBlock": {"cidr": "192.0.2.11/32"}}],
        "ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}],
    }
    # nothing else changes: the same objects as without Jobs, plus the Role and its binding
    assert sorted(objects) == sorted(
        [
            *((o["kind"], o["metadata"]["name"]) for o in render()),
            ("Role", REPORT_JOBS_ROLE),
            ("RoleBinding", REPORT_JOBS_ROLE),
            ("ValidatingAdmissionPolicy", ADMISSION_POLICY),
            ("ValidatingAdmissionPolicyBinding", ADMISSION_POLICY),
        ]
    )


def test_without_report_jobs_the_service_has_no_right_no_token_and_no_way_to_the_api(
    rendered: list[dict[str, Any]],
) -> None:
    objects = {(o["kind"], o["metadata"]["name"]): o for o in rendered}
    assert ("Role", REPORT_JOBS_ROLE) not in objects
    assert ("RoleBinding", REPORT_JOBS_ROLE) not in objects
    service = objects["Deployment", "dossierhub"]["spec"]["template"]["spec"]
    assert service["automountServiceAccountToken"] is False
    egress = objects["NetworkPolicy", "dossierhub"]["spec"]["egress"]
    assert not [peer for rule in egress for peer in rule["to"] if "ipBlock" in peer]


def test_the_service_s_rights_are_exactly_as_wide_as_they_say(
    jobs_rendered: list[dict[str, Any]],
) -> None:
    """Fed the rendered objects with one thing widened, the checks name it."""
    objects = {(o["kind"], o["metadata"]["name"]): o for o in jobs_rendered}
    role = objects["Role", REPORT_JOBS_ROLE]
    binding = objects["RoleBinding", REPORT_JOBS_ROLE]
    cronjob = next(o for o in jobs_rendered if is_apply(o))
    changes: list[tuple[str, dict[str, Any], Any]] = [
        ("beyond its one purpose", role, lambda o: o["rules"][1]["verbs"].append("create")),
        ("beyond its one purpose", role, lambda o: o["rules"][0]["verbs"].append("patch")),
        ("beyond its one purpose", role, lambda o: o["rules"][1]["resources"].append("pods/exec")),
        (
            "beyond its one purpose",
            role,
            lambda o: o["rules"].append(
                {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}
            ),
        ),
        ("cluster-wide", role, lambda o: o.update(kind="ClusterRole")),
        (
            "grants apply",
            binding,
            lambda o: o["subjects"].append(
                {"kind": "ServiceAccount", "name": "dossierhub", "namespace": "dossiers"}
            ),
        ),
        (
            "beyond report Jobs",
            binding,
            lambda o: o["subjects"].__setitem__(
                0, {"kind": "ServiceAccount", "name": "default", "namespace": "dossiers"}
            ),
        ),
        ("another Role", binding, lambda o: o["roleRef"].update(name="admin")),
        (
            "mounts a service-account token",
            cronjob,
            lambda o: o["spec"]["jobTemplate"]["spec"]["template"]["spec"].update(
                automountServiceAccountToken=True
            ),
        ),
    ]
    for original in (role, binding, cronjob):
        assert privilege_problems(original, report_jobs=True) == []
    for words, original, change in changes:
        changed = copy.deepcopy(original)
        change(changed)
        found = privilege_problems(changed, report_jobs=True)
        assert any(words in problem for problem in found), (words, found)
    # and without report Jobs, the same Role, binding and token are refused
    deployment = objects["Deployment", "dossierhub"]
    for obj in (role, binding, deployment):
        assert privilege_problems(obj), obj["metadata"]["name"]


@pytest.mark.parametrize(
    ("values", "words"),
    [
        (["--set", "reports.backend=kubernetes"], "needs reports.apiServer.cidrs"),
        (["--set", "reports.backend=k8s"], 'reports.backend is "k8s": it must be local or'),
    ],
)
def test_the_chart_refuses_report_jobs_it_cannot_serve(values: list[str], words: str) -> None:
    result = subprocess.run(
        [HELM, "template", "dossierhub", str(CHART), "--namespace", "dossiers", *values],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"HOME": "/nonexistent", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode != 0 and words in result.stderr, result.stderr


# --- which Jobs the API server admits from the service (templates/service-admission.yaml) ---

SERVICE_USER = f"system:serviceaccount:dossiers:{SERVICE_ACCOUNT}"


@functools.cache
def cel_program(expression: str) -> Any:
    """One CEL expression compiled once (cel-python's parser takes tens of milliseconds)."""
    import celpy

    environment = celpy.Environment()
    return environment.program(environment.compile(expression))


def admission_refusals(policy: dict[str, Any], job: dict[str, Any], username: str) -> list[str]:
    """The messages of the policy's validations a Job fails, its CEL evaluated as the API
    server does (cel-python): [] when it is admitted or the policy does not apply to the
    user. An expression that does not evaluate to true (an error included) refuses, as
    `failurePolicy: Fail` does."""
    import celpy
    from celpy import celtypes

    def value(expression: str, activation: dict[str, Any]) -> Any:
        return cel_program(expression).evaluate(activation)

    spec = policy["spec"]
    base = {
        "object": celpy.json_to_cel(job),
        "request": celpy.json_to_cel({"userInfo": {"username": username}}),
    }
    matched = [value(c["expression"], base) for c in spec["matchConditions"]]
    if any(result != celtypes.BoolType(True) for result in matched):
        return []
    variables: dict[Any, Any] = {}
    for variable in spec["variables"]:
        activation = {**base, "variables": celtypes.MapType(variables)}
        variables[celtypes.StringType(variable["name"])] = value(variable["expression"], activation)
    activation = {**base, "variables": celtypes.MapType(variables)}
    return [
        check["message"]
        for check in spec["validations"]
        if value(check["expression"], activation) != celtypes.BoolType(True)
    ]


def report_job(home: Path) -> dict[str, Any]:
    """A run's Job exactly as the service makes it (reports/jobs.py job_manifest)."""
    from dossierhub.isolation.podids import pod_id, report_pod_id
    from dossierhub.reports.jobs import JobNumbers, job_manifest
    from dossierhub.state.home import Home
    from dossierhub.state.models import read_dossier

    root = Home(home)
    settings = Settings.model_validate(
        {
            "hub": {"spawner": "kubernetes"},
            "reports": {"backend": "kubernetes"},
            "kubernetes": {"image": "r/runner:1", "namespace": "dossiers"},
        }
    )
    numbers = JobNumbers(report_pod_id(root, "armoede"), pod_id(root, "armoede"))
    scratch = root.scratch_parent("armoede") / "0a1b2c3d4e5f6a7b"
    dossier = read_dossier(root, "armoede")
    return job_manifest(root, settings, dossier, "20261201T201500-a1b2c3", scratch, numbers, 60)


def _pod(job: dict[str, Any]) -> dict[str, Any]:
    return job["spec"]["template"]["spec"]


def _mounts(job: dict[str, Any]) -> list[dict[str, Any]]:
    return _pod(job)["containers"][0]["volumeMounts"]


# what a taken-over service would make instead, each with the words of the refusal
FORGED_JOBS: dict[str, tuple[str, Any]] = {
    "as root with apply's capabilities": (
        "not root",
        lambda j: (
            _pod(j)["securityContext"].update(runAsUser=0, runAsNonRoot=False),
            _pod(j)["containers"][0]["securityContext"].pop("runAsUser"),
        ),
    ),
    "adding a capability": (
        "keeps no capability",
        lambda j: _pod(j)["containers"][0]["securityContext"]["capabilities"].update(
            add=["DAC_OVERRIDE"]
        ),
    ),
    "with root's group": (
        "not root's group",
        lambda j: _pod(j)["securityContext"].update(supplementalGroups=[0]),
    ),
    "with an fsGroup over HOME": (
        "no fsGroup",
        lambda j: _pod(j)["securityContext"].update(fsGroup=200000),
    ),
    "mounting the master key's Secret": (
        "no Secret, ConfigMap or other volume",
        lambda j: _pod(j)["volumes"].append(
            {"name": "key", "secret": {"secretName": "dossierhub-master-key"}}
        ),
    ),
    "mounting another claim": (
        "no Secret, ConfigMap or other volume",
        lambda j: _pod(j)["volumes"].append(
            {"name": "other", "persistentVolumeClaim": {"claimName": "raw-sources"}}
        ),
    ),
    "mounting all of HOME": ("only a run's scratch folder", lambda j: _mounts(j)[0].pop("subPath")),
    "mounting a workspace": (
        "only a run's scratch folder",
        lambda j: _mounts(j)[0].update(subPath="workspaces/armoede"),
    ),
    "mounting all of scratch": (
        "only a run's scratch folder",
        lambda j: _mounts(j)[1].update(subPath="scratch"),
    ),
    "writing the extracts": ("read-only", lambda j: _mounts(j)[0].update(readOnly=False)),
    "with a token": (
        "no service-account token",
        lambda j: _pod(j).update(automountServiceAccountToken=True),
    ),
    "as another account": (
        "no service-account token",
        lambda j: _pod(j).update(serviceAccountName="hub"),
    ),
    "out of the deny-all policy": (
        "labelled dossierhub.io/role: report",
        lambda j: j["spec"]["template"]["metadata"]["labels"].pop("dossierhub.io/role"),
    ),
    "with a Secret in its environment": (
        "from a Secret or ConfigMap",
        lambda j: _pod(j)["containers"][0]["env"].append(
            {"name": "K", "valueFrom": {"secretKeyRef": {"name": "hub", "key": "k"}}}
        ),
    ),
    "with an init container": (
        "one container keeps no capability",
        lambda j: _pod(j).update(initContainers=[dict(_pod(j)["containers"][0], name="init")]),
    ),
}


def test_the_api_server_admits_from_the_service_only_jobs_shaped_as_report_runs(
    jobs_rendered: list[dict[str, Any]], home: Path
) -> None:
    """The service's Role lets it create any Job; the admission policy admits only a report
    run's. A Job as job_manifest makes it passes; each forged one is refused, naming why; a
    Job from any other account is not this policy's to judge (RBAC refuses it first)."""
    objects = {(o["kind"], o["metadata"]["name"]): o for o in jobs_rendered}
    policy = objects["ValidatingAdmissionPolicy", ADMISSION_POLICY]
    binding = objects["ValidatingAdmissionPolicyBinding", ADMISSION_POLICY]
    assert binding["spec"] == {
        "policyName": ADMISSION_POLICY,
        "validationActions": ["Deny"],
        "matchResources": {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "dossiers"}}
        },
    }
    assert policy["spec"]["failurePolicy"] == "Fail"
    job = report_job(home)
    assert admission_refusals(policy, job, SERVICE_USER) == []
    for attack, (words, change) in FORGED_JOBS.items():
        forged = copy.deepcopy(job)
        change(forged)
        refusals = admission_refusals(policy, forged, SERVICE_USER)
        assert any(words in refusal for refusal in refusals), (attack, refusals)
    # another account's Jobs are not this policy's (z2jh's hub has no right to make any)
    assert admission_refusals(policy, forged, "system:serviceaccount:dossiers:hub") == []
