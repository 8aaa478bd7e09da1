"""Red team of deploy/chart (issue 14): what the chart's pods do to HOME's shared volume, and
what Kubernetes API rights it grants to whom.

HOME's claim holds every dossier's extracts (group = its pod number, 0640) and workspace
folder (owner = its number, 0700), mounted by the service and apply whole. A pod's `fsGroup`
is not a permission of that pod alone: when the volume's driver manages ownership (a CSI
driver with `fsGroupPolicy: File`, such as csi-driver-nfs installed with its fsGroupPolicy
feature on), the kubelet re-groups *every file of the volume* to fsGroup, adds group read and
write and sets setgid on every folder, at each mount (fsGroupChangePolicy defaults to Always).
One restart of the service would then hand every dossier's extracts and workspace files to the
service's group, writable, and take each workspace's own group off its extracts. The spawner
sets no fsGroup for that reason (kubespawner.py); the chart's pods must not either."""

from __future__ import annotations

from typing import Any

import pytest
from helm import CHART, render
from test_chart import HUB_RULES, pod_specs, privilege_problems

VALUES = {"default": [], "city example": ["-f", str(CHART / "examples" / "city.yaml")]}


@pytest.fixture(scope="module", params=list(VALUES))
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(*VALUES[request.param])


def test_no_pod_that_mounts_home_regroups_the_whole_volume(
    rendered: list[dict[str, Any]],
) -> None:
    home_pods = [
        (obj["metadata"]["name"], pod)
        for obj in rendered
        for pod in pod_specs(obj)
        if any("persistentVolumeClaim" in volume for volume in pod["volumes"])
    ]
    assert {name for name, _ in home_pods} == {"dossierhub", "dossierhub-apply"}
    for name, pod in home_pods:
        assert "fsGroup" not in pod["securityContext"], f"{name} would regroup all of HOME"


def test_z2jh_s_hub_may_manage_network_policies_and_nothing_more(
    rendered: list[dict[str, Any]],
) -> None:
    """The spawner creates, replaces and deletes each dossier's policy (z2jh's own Role for
    the hub has no network policies: every start would be refused). Only that, only for the
    hub's account, only in the release's namespace."""
    roles = [o for o in rendered if o["kind"] in ("Role", "ClusterRole")]
    bindings = [o for o in rendered if o["kind"] in ("RoleBinding", "ClusterRoleBinding")]
    assert [r["kind"] for r in roles] == ["Role"] and roles[0]["rules"] == HUB_RULES
    (binding,) = bindings
    assert binding["kind"] == "RoleBinding"
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": roles[0]["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "hub", "namespace": "dossiers"}
    ]
    # the chart's checks refuse any more: another resource, or the service's own account
    wider = {**roles[0], "rules": [{**HUB_RULES[0], "resources": ["networkpolicies", "pods"]}]}
    assert privilege_problems(wider)
    ours = {**binding, "subjects": [{"kind": "ServiceAccount", "name": "dossierhub"}]}
    assert privilege_problems(ours)
