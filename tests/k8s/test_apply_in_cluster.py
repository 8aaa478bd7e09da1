"""apply as its pod runs it in a cluster (workspaces/hubrollout.py): z2jh's hub Deployment is an
object on the Kubernetes stand-in (standin.py), rolled out by a small test controller; the hub
whose members apply syncs is the e2e hub (a real JupyterHub and its REST API, tests/conftest.py
`hub`). apply runs as a process with what Kubernetes and deploy/chart give its pod: the API
server's address in KUBERNETES_SERVICE_HOST/PORT, its account's token and the cluster's CA at
/var/run/secrets/kubernetes.io/serviceaccount (in a mount namespace of apply's own; the
stand-in is reached through a TLS front with a certificate of that CA), the hub Deployment's
name, the hub's API address and the dossierhub service's token as a root-only file.

The API server logs every write it receives (apiserver.py), so the tests count the PATCH
requests apply made: exactly one when the roles changed, none when they did not. The tests
run in order: each leaves the Deployment and armoede's team as the next expects.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes_asyncio.config import kube_config
from standin import StandIn

from dossierhub.state.audit import AuditLog
from dossierhub.state.directory import read_directory
from dossierhub.state.settings import load_settings
from dossierhub.workspaces.hubapi import HubUnavailable
from dossierhub.workspaces.hubrollout import ROLES_ANNOTATION, InCluster, roll_hub
from dossierhub.workspaces.servestate import read_serve_state
from dossierhub.workspaces.tokens import read_token

from e2e_hub import DOSSIERHUB, Hub

NAMESPACE = "dossierhub"  # settings.yaml kubernetes.namespace's default: the e2e HOME sets none
DEPLOYMENT = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments"
CONTROLLER = "standin-deployment-controller"  # its User-Agent: its own writes are not apply's
POD_TOKEN = "apply-pod-service-account-token"
ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
NEWCOMER = "t.nieuwkomer"
VIEWERS = "dossier-armoede-viewers"


class RolloutController(threading.Thread):
    """What Kubernetes' Deployment controller reports: a new generation of the hub's pod
    template observed and rolled out (one replica, updated and available) after `delay`."""

    def __init__(self, api_url: str, delay: float = 0.3) -> None:
        super().__init__(daemon=True)
        self.client = httpx.Client(base_url=api_url, headers={"User-Agent": CONTROLLER})
        self.delay = delay
        self.rollouts = 0
        self.paused = threading.Event()
        self.done = threading.Event()

    def run(self) -> None:
        with self.client:
            self._control()

    def _control(self) -> None:
        while not self.done.wait(0.1):
            found = self.client.get(f"{DEPLOYMENT}/hub")
            if found.status_code != 200 or self.paused.is_set():
                continue
            deployment = found.json()
            generation = deployment["metadata"].get("generation", 0)
            if deployment.get("status", {}).get("observedGeneration", 0) < generation:
                self.done.wait(self.delay)
                self.client.patch(
                    f"{DEPLOYMENT}/hub",
                    json={"status": rolled(generation)},
                    headers={"Content-Type": "application/merge-patch+json"},
                )
                self.rollouts += 1


class TLSFront(threading.Thread):
    """The API server as a pod meets it: HTTPS with the cluster CA's certificate for
    127.0.0.1, each connection forwarded to the stand-in's plain port."""

    def __init__(self, folder: Path, backend_port: int) -> None:
        super().__init__(daemon=True)
        self.ca = folder / "ca.crt"
        key = folder / "tls.key"
        command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        command += ["-keyout", str(key), "-out", str(self.ca), "-subj", "/CN=standin-apiserver"]
        command += ["-addext", "subjectAltName=IP:127.0.0.1"]
        subprocess.run(command, check=True, capture_output=True)
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(self.ca, key)
        self.backend = backend_port
        self.started = threading.Event()
        self.port = 0

    def run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        server = await asyncio.start_server(self._forward, "127.0.0.1", 0, ssl=self.context)
        self.port = server.sockets[0].getsockname()[1]
        self.started.set()
        await server.serve_forever()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            back_reader, back_writer = await asyncio.open_connection("127.0.0.1", self.backend)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, back_writer), _pipe(back_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


def rolled(generation: int) -> dict[str, int]:
    return {
        "observedGeneration": generation,
        "replicas": 1,
        "updatedReplicas": 1,
        "readyReplicas": 1,
        "availableReplicas": 1,
    }


def hub_deployment(roles: str) -> dict[str, Any]:
    """z2jh's hub Deployment as apply meets it: rolled out, its roles annotation `roles`."""
    labels = {"app": "jupyterhub", "component": "hub"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "hub", "namespace": NAMESPACE},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "strategy": {"type": "Recreate"},
            "template": {
                "metadata": {"labels": labels, "annotations": {ROLES_ANNOTATION: roles}},
                "spec": {"containers": [{"name": "hub", "image": "hub:1"}]},
            },
        },
    }


@pytest.fixture(scope="module")
def cluster(k8s_standin_module: StandIn, hub: Hub) -> Iterator[RolloutController]:
    """The hub Deployment, rolled out with the roles of armoede alone (as if the other
    dossiers were added since), and its controller."""
    k8s = k8s_standin_module
    created = httpx.post(f"{k8s.api_url}{DEPLOYMENT}", json=hub_deployment("armoede"))
    assert created.status_code in (200, 201), created.text
    status = httpx.patch(
        f"{k8s.api_url}{DEPLOYMENT}/hub",
        json={"status": rolled(created.json()["metadata"]["generation"])},
        headers={"Content-Type": "application/merge-patch+json", "User-Agent": CONTROLLER},
    )
    assert status.status_code == 200, status.text
    controller = RolloutController(k8s.api_url)
    controller.start()
    yield controller
    controller.done.set()
    controller.join()


@pytest.fixture(scope="module")
def pod_env(
    k8s_standin_module: StandIn, hub: Hub, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """apply's pod's environment: Kubernetes' (the API server's Service address) and
    deploy/chart's (templates/cronjob.yaml), on the stand-in; its account's folder in
    `APPLY_POD_ACCOUNT` for apply_in_pod to mount."""
    folder = tmp_path_factory.mktemp("apply-pod")
    token = folder / "hub-token"
    token.write_text(read_token(hub.home, "service"))
    os.chmod(token, 0o400)
    account = folder / "serviceaccount"
    account.mkdir()
    front = TLSFront(account, k8s_standin_module.port)
    front.start()
    assert front.started.wait(10)
    (account / "token").write_text(POD_TOKEN)
    state = read_serve_state(hub.home)
    assert state is not None
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    return {
        **env,
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(front.port),
        "APPLY_POD_ACCOUNT": str(account),
        "DOSSIERHUB_HUB_DEPLOYMENT": "hub",
        "DOSSIERHUB_HUB_API_URL": state.hub_api,
        "DOSSIERHUB_HUB_TOKEN_FILE": str(token),
        "DOSSIERHUB_HUB_ROLLOUT_SECONDS": "30",
    }


def apply_in_pod(hub: Hub, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """apply with its account's token and CA where the kubelet mounts them, in a mount
    namespace of its own (a tmpfs over /run, which /var/run is, for it alone)."""
    apply = shlex.join([DOSSIERHUB, "--home", str(hub.home.root), "apply", "armoede"])
    mount = (
        "mount -t tmpfs tmpfs /run && "
        f"mkdir -p {ACCOUNT} && cp $APPLY_POD_ACCOUNT/token $APPLY_POD_ACCOUNT/ca.crt {ACCOUNT}"
    )
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", f"{mount} && exec {apply}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )


def patches_by_apply(k8s: StandIn) -> list[str]:
    lines = (k8s.workdir / "apiserver.log").read_text().splitlines()
    return [line for line in lines if line.startswith("WRITE PATCH ") and CONTROLLER not in line]


def annotation(k8s: StandIn) -> str:
    found = httpx.get(f"{k8s.api_url}{DEPLOYMENT}/hub").json()
    return str(found["spec"]["template"]["metadata"]["annotations"][ROLES_ANNOTATION])


def set_viewers(hub: Hub, viewers: list[str]) -> None:
    """armoede's viewers (not its workers: removing one of those restarts the workspace,
    which other tests on this session's hub may be using)."""
    manifest = hub.manifest("armoede")
    manifest["members"]["viewer"] = viewers
    hub.write_manifest("armoede", manifest)


def armoede_viewers(hub: Hub) -> list[str]:
    api = hub.api()
    try:
        return sorted(api.groups()[VIEWERS])
    finally:
        api.close()


def test_new_roles_roll_the_hub_with_one_patch_then_members_are_synced(
    hub: Hub, k8s_standin_module: StandIn, cluster: RolloutController, pod_env: dict[str, str]
) -> None:
    k8s = k8s_standin_module
    set_viewers(hub, [*hub.manifest("armoede")["members"]["viewer"], NEWCOMER])
    result = apply_in_pod(hub, pod_env)
    assert result.returncode == 0, result.stderr[-3000:]
    wanted = ",".join(sorted(e.id for e in read_directory(hub.home)))
    (patch,) = patches_by_apply(k8s)
    assert patch.split()[2] == f"{DEPLOYMENT}/hub"
    assert f"Bearer {POD_TOKEN}" in patch  # as the pod's own account
    assert annotation(k8s) == wanted and cluster.rollouts == 1
    assert NEWCOMER in armoede_viewers(hub)
    (record,) = [r for r in AuditLog(hub.home).read() if r["action"] == "apply"][-1:]
    changes = record["details"]["hub"]
    assert changes[0] == f"hub restarted for the roles of {wanted.replace(',', ', ')}"
    assert f"added {NEWCOMER} to {VIEWERS}" in changes


def test_the_same_roles_patch_nothing_and_a_member_is_removed(
    hub: Hub, k8s_standin_module: StandIn, cluster: RolloutController, pod_env: dict[str, str]
) -> None:
    k8s = k8s_standin_module
    set_viewers(hub, [v for v in hub.manifest("armoede")["members"]["viewer"] if v != NEWCOMER])
    result = apply_in_pod(hub, pod_env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(patches_by_apply(k8s)) == 1  # the first test's, none more
    assert cluster.rollouts == 1
    assert NEWCOMER not in armoede_viewers(hub)


def test_a_rollout_that_does_not_finish_is_a_bounded_wait_with_a_clear_error(
    hub: Hub,
    k8s_standin_module: StandIn,
    cluster: RolloutController,
    pod_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    k8s = k8s_standin_module
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(k8s.kubeconfig))
    cluster.paused.set()
    place = InCluster("hub", "http://127.0.0.1:9/hub/api", Path("/nonexistent"), 1.0)
    with pytest.raises(HubUnavailable) as refused:
        roll_hub(load_settings(hub.home), place, {"armoede"})
    assert str(refused.value).startswith(
        f"the hub's Deployment {NAMESPACE}/hub did not roll out the new roles within 1 s "
        "(1 updated, 1 available of 1); see `kubectl -n dossierhub rollout status "
        "deployment/hub`"
    )
    cluster.paused.clear()
