"""DossierKubeSpawner: one pod per dossier workspace on Kubernetes (hub.spawner: kubernetes),
with the same walls as the local spawner (spawner.py) and the same refusals (startchecks.py).

What a pod may touch is decided by pure functions here, tested as values and validated
against the Kubernetes schemas offline (tests/hub/test_kubespawner.py):

- `pod_storage`: HOME's shared volume, mounted twice and nothing else of it: the dossier's
  extracts *folder* read-only (a subPath, so apply's atomic swap inside it stays visible)
  and its workspace folder read-write, each at the path the hub sees it at, so the one
  environment builder's variables (`dossier_environment`) hold inside the pod too;
- `pod_security`: the restricted Pod Security Standard, as the dossier's own numbers
  (isolation/podids.py). No fsGroup: the kubelet applies it to a whole volume, not to a
  subPath, and on drivers that manage ownership it would give this dossier's group every
  other dossier's files on the shared HOME; runAsGroup already gives new files the group;
- `pod_resources`: memory and CPU from the manifest's limits (DuckDB's memory plus
  `kubernetes.memory_overhead` for JupyterLab; its threads as CPUs);
- `network_policy`: the pod's walls on the network: out to the hub's API only, in from the
  proxy and the hub only, on the recorder's port;
- `recorder_container` (podspec.py): the pod's second container, the recorder of who ran
  what (netbridge.py in pod mode), as a number of its own: the pod's only way in. The hub
  and the proxy reach the workspace at podIP:RECORDER_PORT; the server listens on the pod's
  127.0.0.1:SERVER_PORT only; the pod's sysctl keeps every container without
  NET_BIND_SERVICE (the workspace's) off RECORDER_PORT. Batches go by the volume: the
  recorder alone mounts audit/spool/<id>; the service takes them in as on one machine.

KubeSpawner has no hook that runs before the pod is created, and a policy made after it
(`after_pod_created_hook`) would leave the workspace a moment without walls. So `start`
creates (or replaces) the dossier's policy first, then the pod; `stop` deletes it once the
pod is gone. One policy per dossier: a dossier has one workspace. NetworkPolicies add up,
and Zero to JupyterHub's own singleuser policy keeps fixed rules no value turns off (the
proxy's public port, autohttps): the values turn it off, so this policy is the whole wall.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException
from kubespawner import KubeSpawner
from kubespawner.clients import shared_client
from tornado import web
from traitlets import Dict, Integer, Unicode

from dossierhub.isolation.environment import DossierEnvironment, dossier_environment
from dossierhub.isolation.podids import PodIdsError, pod_ids, recorder_pod_ids
from dossierhub.isolation.podspec import (  # noqa: F401 - pod_security, size_bytes: named here too
    DOSSIER_LABEL,
    RECORDER_PORT,
    ROLE_LABEL,
    SERVER_PORT,
    UNPRIVILEGED_PORTS,
    PodStorage,
    RecorderSpec,
    home_storage,
    pod_resources,
    pod_security,
    recorder_container,
    size_bytes,
)
from dossierhub.state.decisions import reason_of_status
from dossierhub.state.home import Home
from dossierhub.state.models import Dossier
from dossierhub.state.settings import KubernetesSettings, load_settings
from dossierhub.workspaces.spawner import server_args, server_command
from dossierhub.workspaces.startchecks import (
    WorkspaceRefused,
    dossier_of,
    start_decision,
    start_failed,
    startable_dossier,
)

# the label z2jh's hub NetworkPolicy admits to the hub's API (jupyterhub-singleuser needs it)
HUB_ACCESS_LABEL = "hub.jupyter.org/network-access-hub"


def workspace_labels(dossier_id: str) -> dict[str, str]:
    """What names a workspace pod (and selects it in its network policy)."""
    return {DOSSIER_LABEL: dossier_id, ROLE_LABEL: "workspace"}


def pod_storage(home: Home, dossier_id: str, claim: str, tmp_size: str | None = None) -> PodStorage:
    """HOME's volume claim `claim` (its root is HOME), mounted as the dossier's two folders
    only: its extracts folder read-only, its workspace folder read-write (podspec.py), and
    a /tmp of at most `tmp_size`."""
    return home_storage(
        home,
        claim,
        [(home.extract_dir(dossier_id), True), (home.workspace_dir(dossier_id), False)],
        tmp_size,
    )


def network_policy(
    settings: KubernetesSettings, dossier_id: str, server_port: int
) -> dict[str, Any]:
    """The workspace's network: out to the hub's API only (no internet, no other workspace,
    no dossierhub service: a workspace needs none), in from the proxy and the hub only, on
    its server's port. No DNS either: the cluster's resolver forwards any name outside, so
    a kernel could spell data into the names it asks; the pod reaches the hub by its
    Service's address (`hub_connect_url`, set by k8svalues.z2jh_hub_config)."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": policy_name(dossier_id),
            "namespace": settings.namespace,
            "labels": workspace_labels(dossier_id),
        },
        "spec": {
            "podSelector": {"matchLabels": workspace_labels(dossier_id)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "from": [
                        {"podSelector": {"matchLabels": dict(settings.proxy_labels)}},
                        {"podSelector": {"matchLabels": dict(settings.hub_labels)}},
                    ],
                    "ports": [{"protocol": "TCP", "port": server_port}],
                }
            ],
            "egress": [
                {
                    "to": [{"podSelector": {"matchLabels": dict(settings.hub_labels)}}],
                    "ports": [{"protocol": "TCP", "port": settings.hub_port}],
                },
            ],
        },
    }


def policy_name(dossier_id: str) -> str:
    return f"dossier-{dossier_id}-workspace"


class DossierKubeSpawner(KubeSpawner):
    """A dossier's workspace as a pod. Configured by hubconfig.make_config; reaches whatever
    API server `k8s_api_host` (kubernetes.api_url) or the cluster's own config names."""

    dossierhub_home = Unicode(help="The installation's HOME folder (the hub's mount of it).").tag(
        config=True
    )
    workspace_python = Unicode(
        help="Python of the environment in the workspace image (absolute; the image holds "
        "it at the same path as the hub's)."
    ).tag(config=True)
    auth_cache_seconds = Integer(
        5,
        help="How long a workspace trusts the hub's answer about a person (seconds).",
    ).tag(config=True)
    kubernetes = Dict(
        help="settings.yaml's `kubernetes` section (state/settings.py KubernetesSettings)."
    ).tag(config=True)

    @property
    def dossier_id(self) -> str:
        return dossier_of(self.user.name)

    @property
    def home(self) -> Home:
        return Home(Path(self.dossierhub_home))

    @property
    def cluster(self) -> KubernetesSettings:
        return KubernetesSettings.model_validate(self.kubernetes)

    async def start(self) -> Any:
        """Decide (audited as workspace.start, refusals too), make the dossier's network
        policy, then the pod."""
        self.prepare_start()
        try:
            await self._ensure_network_policy()
            return await super().start()
        except web.HTTPError:
            raise
        except Exception as exc:
            raise start_failed(self.log, self.dossier_id, exc, "the hub's log") from None

    def prepare_start(self) -> Dossier:
        """Decide whether the workspace may start and set this start's pod up: its numbers,
        storage, environment, limits and labels. Contacts no API server."""
        decision = start_decision(self.home, self.user.name, getattr(self, "handler", None))
        try:
            dossier = startable_dossier(self.home, self.dossier_id)
            number, recorder = self._number()
        except web.HTTPError as exc:  # as the local spawner records it
            decision.refused_for(reason_of_status(exc.status_code), exc.get_message() or "")
            raise
        # the hub mints this server's API token at every start: recorded with the decision
        scopes = self.server_token_scopes
        decision.allow(
            server_token=scopes if isinstance(scopes, list) else "as configured", uid=number
        )
        self._configure(dossier, number)
        self._recorder = recorder
        return dossier

    def _number(self) -> tuple[int, int]:
        """The dossier's pod numbers as apply handed them out: the workspace's and its
        recorder's. Never handed out here: apply gives the dossier's files to the number
        (isolation/unixusers.secure_dossier), and its spool folder to the recorder's, so a
        number the files do not carry would start a pod that cannot read its extracts, or,
        on a HOME applied for the local spawner, one whose folders belong to someone else."""
        try:
            number = pod_ids(self.home).get(self.dossier_id)
            recorder = recorder_pod_ids(self.home).get(self.dossier_id)
        except (PodIdsError, OSError) as exc:
            self.log.error("workspace %s: %s", self.dossier_id, exc)  # may name HOME's files
            raise WorkspaceRefused(
                409,
                self.dossier_id,
                "identity",
                f"The numeric identity of dossier {self.dossier_id} is not in order: ask "
                "the admin (the hub's log says what is wrong).",
            ) from None
        if number is None or recorder is None:
            raise WorkspaceRefused(
                409,
                self.dossier_id,
                "identity",
                f"Dossier {self.dossier_id} has not been applied for Kubernetes: its files "
                "have no pod identity yet. Ask the admin to run `dossierhub apply`.",
            )
        return number, recorder

    def _configure(self, dossier: Dossier, number: int) -> None:
        cluster = self.cluster
        folder = self.home.workspace_dir(dossier.id)
        self._environment = dossier_environment(
            self.home,
            dossier,
            load_settings(self.home),
            kind="workspace",
            folder=folder,
            python=self.workspace_python,
            sandboxed=True,  # the pod is its own sandbox: the same variables as bubblewrap's
        )
        storage = pod_storage(self.home, dossier.id, cluster.home_claim, cluster.tmp_size)
        self.volumes = storage.volumes
        self.volume_mounts = storage.mounts
        self.uid = self.gid = number
        self.fs_gid = None
        self.pod_security_context, self.container_security_context = pod_security(number)
        # no container without NET_BIND_SERVICE takes RECORDER_PORT, the recorder's
        self.pod_security_context["sysctls"] = [dict(UNPRIVILEGED_PORTS)]
        # the hub and the proxy reach the recorder; the server is behind it (get_env)
        self.port = RECORDER_PORT
        # the recorder declares the pod's port (podspec.recorder_container), the server none
        no_ports: dict[str, Any] = {"ports": []}
        self.extra_container_config = no_ports
        resources = pod_resources(self._environment, cluster.memory_overhead)
        self.mem_limit = resources.mem_limit
        self.mem_guarantee = resources.mem_guarantee
        self.cpu_limit = resources.cpu_limit
        # added to the labels z2jh's config gives workspace pods (singleuser.extraLabels), not
        # in their place: its hub policy admits only pods labelled HUB_ACCESS_LABEL
        configured: dict[str, str] = dict(self.extra_labels)  # type: ignore[has-type]  # a trait
        self.extra_labels = {
            **configured,
            **workspace_labels(dossier.id),
            HUB_ACCESS_LABEL: "true",
        }
        self.working_dir = str(folder)
        self.notebook_dir = str(folder)
        # as on one machine: undumpable (its kernels cannot read the visitors' tokens in its
        # memory or environment, nor trace or rewrite it) and no notebook ever trusted
        self.cmd = server_command(self.workspace_python)

    _environment: DossierEnvironment | None = None
    _recorder: int | None = None

    def get_env(self) -> dict:
        env = super().get_env()
        env.update(self._environment.env if self._environment else {})
        # where jupyterhub-singleuser listens (JupyterHub passes it so): the pod's loopback,
        # which only the recorder, in the same pod, reaches from outside
        base = self.server.base_url if self.server else "/"
        env["JUPYTERHUB_SERVICE_URL"] = f"http://127.0.0.1:{SERVER_PORT}{base}"
        return env

    def get_args(self) -> list[str]:
        folder = self.home.workspace_dir(self.dossier_id)
        return [
            *super().get_args(),
            *server_args(self.auth_cache_seconds, ipc=True, folder=folder),
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={SERVER_PORT}",
        ]

    async def get_pod_manifest(self) -> Any:
        """KubeSpawner's pod with the recorder beside the workspace's container."""
        if self._recorder is not None:
            spec = RecorderSpec(
                dossier_id=self.dossier_id,
                number=self._recorder,
                image=self.image,
                python=self.workspace_python,
                hub_api=self.get_env()["JUPYTERHUB_API_URL"],
                code=load_settings(self.home).audit.executions_code,
                auth_cache_seconds=self.auth_cache_seconds,
            )
            self.extra_containers = [recorder_container(self.home, spec)]
        return await super().get_pod_manifest()

    async def _ensure_network_policy(self) -> None:
        """Create the dossier's policy, or replace one left by an earlier start."""
        policy = network_policy(self.cluster, self.dossier_id, RECORDER_PORT)
        api = shared_client("NetworkingV1Api")
        name, namespace = policy["metadata"]["name"], self.namespace
        try:
            await api.create_namespaced_network_policy(namespace, policy)
        except ApiException as exc:
            if exc.status != 409:
                raise
            await api.replace_namespaced_network_policy(name, namespace, policy)

    async def stop(self, now: bool = False) -> None:
        await super().stop(now=now)
        if f"{self.namespace}/{self.pod_name}" in self.pod_reflector.pods:
            return  # still terminating: the policy stays until a later start replaces it
        try:
            await shared_client("NetworkingV1Api").delete_namespaced_network_policy(
                policy_name(self.dossier_id), self.namespace
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
