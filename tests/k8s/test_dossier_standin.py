"""A dossier workspace as a pod, end to end: dossierhub's own hub (`dossierhub serve`,
hub.spawner kubernetes) on the Kubernetes stand-in (standin.py). A member opens the armoede
workspace through the real hub and proxy; its Dossier kernel, run through the proxy as a
browser would, reads its extracts as the dossier's pod number, cannot change them, and
cannot reach another dossier's; a viewer and a stranger are refused; a hub restart finds the
running pod again; stop deletes the pod and its network policy.

The tests share one hub and run in order (module scope): each leaves the workspace as the
next expects it.
"""

from __future__ import annotations

import time

import httpx
import pytest
from kubelet import running_processes_of, wait_until
from standin import StandIn

from dossierhub.isolation.podids import pod_ids
from dossierhub.workspaces.kubespawner import policy_name
from dossierhub.workspaces.provision import request_hub_restart
from dossierhub.workspaces.servestate import read_serve_state

from e2e_hub import LEAD, STRANGER, VIEWER, Hub
from kernelclient import execute

DOSSIER = "armoede"
SERVER = f"dossier-{DOSSIER}"
POD = ("default", f"jupyter-{SERVER}")


def status(hub: Hub, token: str) -> int:
    return httpx.get(
        f"{hub.url}user/{SERVER}/api/status",
        headers={"Authorization": f"token {token}"},
        timeout=30,
    ).status_code


def policy(k8s: StandIn, name: str) -> int:
    url = f"{k8s.api_url}/apis/networking.k8s.io/v1/namespaces/default/networkpolicies/{name}"
    return httpx.get(url, timeout=10).status_code


def run(hub: Hub, token: str, code: str) -> str:
    result = execute(hub.url, SERVER, token, code, timeout=60)
    assert result.error is None, "\n".join(result.error.get("traceback", []))
    return result.stdout


@pytest.fixture(scope="module")
def lead(hub_on_standin: Hub) -> str:
    return hub_on_standin.token(LEAD)


def test_a_member_opens_the_workspace_as_a_pod_of_the_dossier_s_number(
    hub_on_standin: Hub, k8s_standin_module: StandIn, lead: str
) -> None:
    hub, k8s = hub_on_standin, k8s_standin_module
    started = time.monotonic()
    response = hub.start(SERVER, lead)
    assert response.status_code in (201, 202), response.text
    wait_until(lambda: status(hub, lead) == 200, timeout=60, what="the workspace via the proxy")
    print(f"stand-in: dossier workspace ready in {time.monotonic() - started:.2f} s")
    number = pod_ids(hub.home)[DOSSIER]  # handed out by apply, before the first start
    running = k8s.kubelet.pods[POD]
    assert running.uid == number and running.process.poll() is None
    assert running_processes_of(number), "the workspace does not run as the dossier's number"
    assert policy(k8s, policy_name(DOSSIER)) == 200  # its walls on a cluster's network
    assert not k8s.kubelet.refused


KERNEL = """
import os, pathlib
print("uid", os.getuid(), os.getgid())
print("residents", db.sql("SELECT count(*) FROM residents").fetchall()[0][0])
extracts = pathlib.Path(os.environ["DOSSIER_CATALOG"]).parent
for name, attempt in (
    ("change", lambda: open(next(p for p in extracts.rglob("*.parquet")), "r+b")),
    ("plant", lambda: (extracts / "planted.parquet").write_bytes(b"x")),
    ("other", lambda: os.listdir(extracts.parent / "mobiliteit")),
    ("home", lambda: os.listdir(extracts.parent.parent / "secrets")),
):
    try:
        attempt()
        print(name, "allowed")
    except OSError as exc:
        print(name, "refused", type(exc).__name__)
(pathlib.Path.cwd() / "notes.txt").write_text("mine")
print("wrote", pathlib.Path.cwd())
"""


def test_the_kernel_reads_its_extracts_and_nothing_else_of_home(
    hub_on_standin: Hub, lead: str
) -> None:
    hub = hub_on_standin
    number = pod_ids(hub.home)[DOSSIER]
    seen = dict(line.split(" ", 1) for line in run(hub, lead, KERNEL).splitlines())
    assert seen["uid"] == f"{number} {number}"
    assert int(seen["residents"]) > 0
    assert seen["change"].startswith("refused") and seen["plant"].startswith("refused"), seen
    assert seen["other"].startswith("refused") and seen["home"].startswith("refused"), seen
    assert seen["wrote"] == str(hub.home.workspace_dir(DOSSIER))
    written = hub.home.workspace_dir(DOSSIER) / "notes.txt"
    assert written.read_text() == "mine" and written.stat().st_uid == number
    assert not (hub.home.extract_dir(DOSSIER) / "planted.parquet").exists()


def test_a_viewer_and_a_stranger_are_refused(hub_on_standin: Hub) -> None:
    hub = hub_on_standin
    for person in (VIEWER, STRANGER):
        token = hub.token(person)
        assert status(hub, token) == 403, person  # the running workspace, through the proxy
        start = httpx.post(
            f"{hub.url}hub/api/users/{SERVER}/server",
            headers={"Authorization": f"token {token}"},
            timeout=30,
        )
        assert start.status_code in (403, 404), (person, start.text)


def test_a_hub_restart_finds_the_running_pod_again(
    hub_on_standin: Hub, k8s_standin_module: StandIn, lead: str
) -> None:
    hub, k8s = hub_on_standin, k8s_standin_module
    running = k8s.kubelet.pods[POD]
    state = read_serve_state(hub.home)
    assert state is not None
    started = time.monotonic()
    request_hub_restart(hub.home, set(state.role_ids))
    print(f"stand-in: dossierhub's hub restarted in {time.monotonic() - started:.2f} s")
    wait_until(lambda: status(hub, lead) == 200, timeout=30, what="the workspace after restart")
    assert k8s.kubelet.pods[POD] is running and running.process.poll() is None
    assert run(hub, lead, "print(db.sql('SELECT 1').fetchall()[0][0])").strip() == "1"


def test_stop_deletes_the_pod_and_its_network_policy(
    hub_on_standin: Hub, k8s_standin_module: StandIn
) -> None:
    hub, k8s = hub_on_standin, k8s_standin_module
    running = k8s.kubelet.pods[POD]
    api = hub.api()
    try:
        api.stop_server(SERVER)
    finally:
        api.close()
    wait_until(lambda: k8s.get_pod(*POD) is None, timeout=30, what="the pod deleted")
    assert running.process.poll() is not None
    assert not running_processes_of(pod_ids(hub.home)[DOSSIER])
    wait_until(
        lambda: policy(k8s, policy_name(DOSSIER)) == 404, timeout=30, what="the policy deleted"
    )
