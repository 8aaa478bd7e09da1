"""Red team of deploy/chart (issue 14): which Kubernetes API rights the chart grants, to whom.

DossierKubeSpawner (in z2jh's hub) creates each dossier's NetworkPolicy before its pod and
deletes it after; z2jh's own Role for the hub grants pods, claims, secrets and services only
(jupyterhub/templates/hub/rbac.yaml), so on a cluster that enforces RBAC every workspace start
would be refused (403) unless this chart grants that one right. (fsGroup on HOME, the first
finding here, is refused by test_chart.py since apply's pod was reworked.)"""

from __future__ import annotations

from typing import Any

import pytest
from helm import CHART, render
from test_chart import APPLY_RULES, HUB_RULES, privilege_problems

VALUES = {"default": [], "city example": ["-f", str(CHART / "examples" / "city.yaml")]}


@pytest.fixture(scope="module", params=list(VALUES))
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(*VALUES[request.param])


def test_z2jh_s_hub_may_manage_network_policies_and_nothing_more(
    rendered: list[dict[str, Any]],
) -> None:
    """The spawner creates, replaces and deletes each dossier's policy (z2jh's own Role for
    the hub has no network policies: every start would be refused). Only that, only for the
    hub's account, only in the release's namespace."""
    # apply's Role (get and patch the hub's Deployment) is test_chart.py's
    roles = [
        o for o in rendered if o["kind"] in ("Role", "ClusterRole") and o["rules"] != APPLY_RULES
    ]
    bindings = [
        o
        for o in rendered
        if o["kind"] in ("RoleBinding", "ClusterRoleBinding")
        and o["roleRef"]["name"] != "dossierhub-apply-hub-rollout"
    ]
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
