"""Plain KubeSpawner runs unchanged on the stand-in: a real JupyterHub 6.1.1 starts a user's pod,
the server answers through the proxy, stopping deletes the pod and ends its processes, and a
restarted hub finds the running pod again."""

from __future__ import annotations

from pathlib import Path

from kubelet import running_processes_of, wait_until
from plainhub import POD_FS_GROUP, POD_GID, POD_UID, PlainHub
from standin import StandIn


def test_kubespawner_starts_reaches_restarts_and_stops_a_pod(
    k8s_standin: StandIn, tmp_path: Path
) -> None:
    hub = PlainHub(tmp_path / "hub", kubeconfig=k8s_standin.kubeconfig)
    k8s_standin.kubelet.egress.add(hub.hub_port)  # the pod reports to the hub's API
    try:
        hub_start = hub.start()
        ready = hub.start_server("alice")
        print(f"stand-in: hub up in {hub_start:.2f} s, alice's pod answering in {ready:.2f} s")

        pod = k8s_standin.get_pod("default", "jupyter-alice")
        assert pod is not None and pod["status"]["phase"] == "Running"
        context = {
            **pod["spec"]["securityContext"],
            **pod["spec"]["containers"][0]["securityContext"],
        }
        assert (context["runAsUser"], context["runAsGroup"]) == (POD_UID, POD_GID)
        assert context["fsGroup"] == POD_FS_GROUP
        running = k8s_standin.kubelet.pods[("default", "jupyter-alice")]
        assert running.uid == POD_UID and running.process.poll() is None
        assert running_processes_of(POD_UID), "the server does not run as the pod's uid"
        assert not k8s_standin.kubelet.refused

        # the hub goes away and comes back: the pod keeps running and is found again
        hub.stop()
        assert running.process.poll() is None
        restart = hub.start()
        wait_until(lambda: hub.server_answers("alice"), timeout=30, what="alice via the proxy")
        print(f"stand-in: restarted hub up in {restart:.2f} s")
        servers = hub.api("GET", "users/alice").json()["servers"]
        assert servers[""]["ready"] is True
        assert k8s_standin.kubelet.pods[("default", "jupyter-alice")] is running

        stopped = hub.stop_server("alice")
        print(f"stand-in: alice's pod stopped in {stopped:.2f} s")
        assert k8s_standin.get_pod("default", "jupyter-alice") is None
        assert running.process.poll() is not None
        assert not running_processes_of(POD_UID), "the pod's processes outlived its deletion"
        assert not hub.server_answers("alice")
    finally:
        hub.stop()
