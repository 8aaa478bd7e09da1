"""apply in a cluster tells z2jh's hub about the dossiers: roles by rolling its Deployment,
membership over its API.

JupyterHub reads roles (one per dossier) only as it starts. On one machine apply asks
`dossierhub serve` to restart the hub (a signal, provision.request_hub_restart); in a cluster
there is no serve, so apply patches the hub's Deployment: one annotation on its pod template,
`dossierhub.io/roles`, holding the ids of the dossiers the roles are for. A changed pod
template makes Kubernetes replace the hub's pod, and the new hub reads HOME/hub/directory.json
(which apply wrote just before) as it starts. The annotation is also how apply knows whether
roles changed: the same ids, no patch, no restart. The right apply holds for this is exactly
get and patch on that one Deployment (deploy/chart/templates/apply-rbac.yaml).

After a patch apply waits, bounded, for the rollout (the Deployment's status: the new
generation observed, every replica updated and available, no old one left) and then for the
hub's API to answer, before it syncs membership through that API
(provision.sync_hub). Where the hub is comes from the apply pod's environment, set by
deploy/chart (`InCluster.from_environment`); its token is the dossierhub service's, from
z2jh's Secret, mounted as a file only root reads.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dossierhub.isolation.cluster import cluster_client
from dossierhub.state.settings import Settings
from dossierhub.workspaces.hubapi import HubAPI, HubUnavailable

ROLES_ANNOTATION = "dossierhub.io/roles"
# the apply pod's environment (deploy/chart/templates/cronjob.yaml)
HUB_DEPLOYMENT_ENV = "DOSSIERHUB_HUB_DEPLOYMENT"
HUB_API_ENV = "DOSSIERHUB_HUB_API_URL"
HUB_TOKEN_FILE_ENV = "DOSSIERHUB_HUB_TOKEN_FILE"  # noqa: S105 - the name of a variable
ROLLOUT_SECONDS_ENV = "DOSSIERHUB_HUB_ROLLOUT_SECONDS"
ROLLOUT_SECONDS = 300.0  # z2jh's hub image pull, start and database migration, on a slow node
POLL_SECONDS = 0.5


@dataclass(frozen=True)
class InCluster:
    """Where apply finds z2jh's hub from inside the cluster."""

    deployment: str  # z2jh's hub Deployment, `hub`
    hub_api: str  # the hub's Service, http://hub:8081/hub/api (the chart's hub.apiUrl)
    token_file: Path  # the dossierhub service's api token (z2jh's `hub` Secret)
    rollout_seconds: float = ROLLOUT_SECONDS

    @classmethod
    def from_environment(cls, env: Mapping[str, str] = os.environ) -> InCluster | None:
        """None outside apply's pod (no hub Deployment named); a half-set environment is an
        error naming what is missing."""
        deployment = env.get(HUB_DEPLOYMENT_ENV)
        if not deployment:
            return None
        missing = [name for name in (HUB_API_ENV, HUB_TOKEN_FILE_ENV) if not env.get(name)]
        if missing:
            raise HubUnavailable(
                f"{HUB_DEPLOYMENT_ENV} is set but {' and '.join(missing)} not: apply cannot "
                "reach the hub's API (deploy/chart's apply pod sets all three)"
            )
        seconds = env.get(ROLLOUT_SECONDS_ENV)
        return cls(
            deployment,
            env[HUB_API_ENV],
            Path(env[HUB_TOKEN_FILE_ENV]),
            float(seconds) if seconds else ROLLOUT_SECONDS,
        )

    def api(self) -> HubAPI:
        try:
            token = self.token_file.read_text().strip()
        except OSError as exc:
            raise HubUnavailable(
                f"the hub's api token {self.token_file} cannot be read ({exc.strerror})"
            ) from None
        if not token:
            raise HubUnavailable(f"the hub's api token {self.token_file} is empty")
        return HubAPI(self.hub_api, token)


def roles_value(role_ids: set[str]) -> str:
    return ",".join(sorted(role_ids))


def roll_hub(settings: Settings, cluster: InCluster, role_ids: set[str]) -> bool:
    """Make the hub's pods carry the roles of `role_ids`: patch the Deployment when its
    annotation says otherwise (True) and wait for the rollout; no request when it says the
    same (False)."""
    return asyncio.run(_roll(settings, cluster, roles_value(role_ids)))


async def _roll(settings: Settings, cluster: InCluster, wanted: str) -> bool:
    from kubernetes_asyncio import client
    from kubernetes_asyncio.client.exceptions import ApiException

    namespace, name = settings.kubernetes.namespace, cluster.deployment
    where = f"the hub's Deployment {namespace}/{name}"
    async with await cluster_client(settings) as api:
        apps = client.AppsV1Api(api)
        try:
            current = _plain(apps, await apps.read_namespaced_deployment(name, namespace))
            if _annotation(current) == wanted:
                return False
            patch = {
                "spec": {"template": {"metadata": {"annotations": {ROLES_ANNOTATION: wanted}}}}
            }
            # a dict is sent as a strategic merge patch: for one annotation, a plain merge
            patched = _plain(apps, await apps.patch_namespaced_deployment(name, namespace, patch))
        except ApiException as exc:
            raise HubUnavailable(
                f"{where}: Kubernetes answered {exc.status} {exc.reason}"
            ) from None
        generation = int(patched["metadata"].get("generation") or 0)
        await _rolled_out(apps, namespace, name, generation, cluster.rollout_seconds, where)
    return True


async def _rolled_out(
    apps: Any, namespace: str, name: str, generation: int, seconds: float, where: str
) -> None:
    deadline = time.monotonic() + seconds
    while True:
        deployment = _plain(apps, await apps.read_namespaced_deployment(name, namespace))
        if rolled_out(deployment, generation):
            return
        if time.monotonic() > deadline:
            raise HubUnavailable(
                f"{where} did not roll out the new roles within {seconds:.0f} s "
                f"({_progress(deployment)}); see `kubectl -n {namespace} rollout status "
                f"deployment/{name}`"
            )
        await asyncio.sleep(POLL_SECONDS)


def rolled_out(deployment: dict[str, Any], generation: int) -> bool:
    """`kubectl rollout status`'s test: the controller has seen `generation`, and every
    replica wanted is of the new template and available, with no old one left."""
    status = deployment.get("status") or {}
    wanted = (deployment.get("spec") or {}).get("replicas", 1)
    return (
        int(status.get("observedGeneration") or 0) >= generation
        and status.get("updatedReplicas", 0) == wanted
        and status.get("replicas", 0) == wanted
        and status.get("availableReplicas", 0) == wanted
    )


def _progress(deployment: dict[str, Any]) -> str:
    status = deployment.get("status") or {}
    return (
        f"{status.get('updatedReplicas', 0)} updated, "
        f"{status.get('availableReplicas', 0)} available of "
        f"{(deployment.get('spec') or {}).get('replicas', 1)}"
    )


def _annotation(deployment: dict[str, Any]) -> str | None:
    template = (deployment.get("spec") or {}).get("template") or {}
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(ROLES_ANNOTATION)
    return str(value) if value is not None else None


def _plain(apps: Any, model: Any) -> dict[str, Any]:
    result: dict[str, Any] = apps.api_client.sanitize_for_serialization(model)
    return result


def wait_for_api(api: HubAPI, seconds: float) -> None:
    """The new hub's API answering (a rolled-out pod is Ready before the hub behind the
    Service may be reached by every client), bounded."""
    deadline = time.monotonic() + seconds
    while not api.ready():
        if time.monotonic() > deadline:
            raise HubUnavailable(
                f"the hub's API at {api.client.base_url} did not answer within {seconds:.0f} s "
                "of its rollout"
            )
        time.sleep(POLL_SECONDS)
