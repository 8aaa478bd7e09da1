"""A Kubernetes stand-in for end-to-end tests: kmock's API server plus a test-only kubelet.

No real API server runs on a test machine, so the Kubernetes tests run against this:

- `apiserver.py`, kmock's in-memory Kubernetes emulator, in a process of its own on 127.0.0.1
  (a free port): it stores, lists, watches, patches and deletes objects, without validation,
  admission, defaulting or label selection;
- `jobcontroller.py`, a thread that does what Kubernetes' Job controller does for a Job of one
  pod without retries: it creates the pod from the Job's template (the kubelet then runs it),
  keeps the Job's status and conditions, and enforces activeDeadlineSeconds;
- `kubelet.py`, a thread that validates each new pod strictly and runs each of its containers
  as a local sandboxed process under its numeric uid/gid, with its volumes bind-mounted
  (read-only ones truly read-only), in a network namespace of the pod's own whose declared
  containerPorts are reachable at a pod IP from the loopback network (podnet.py); deleting
  the pod stops it.

Interface: a spawner needs only the kubeconfig and the pod network; a test may also bind
volumes and look at the pods.

    with StandIn(workdir) as k8s:        # or the fixtures of tests/k8s/conftest.py:
                                         # k8s_standin (per test), k8s_standin_module
        env["KUBECONFIG"] = str(k8s.kubeconfig)   # context "standin", namespace "default"
        k8s.pod_network                   # "127.0.8.0/24" by default: pod IPs come from it
        k8s.kubelet.claims["data"] = path # a persistentVolumeClaim "data" mounts this folder
        k8s.kubelet.egress.add(port)      # pods reach this host port at 127.0.0.1:<port>
                                          # (the API server's is there already)
        k8s.kubelet.pods                  # (namespace, name) -> RunningPod (ip, uid, process)
        k8s.kubelet.refused               # (namespace, name) -> why the pod was marked Failed
        k8s.jobs.refused                  # (namespace, name) -> why the Job was marked Failed
        k8s.get_pod("default", "jupyter-alice")   # the pod as the API server has it, or None

The pod network must lie in 127.0.0.0/8 (every address of it is local on Linux); 127.0.0.1 is
never given out, and an address whose pod ports another run holds is skipped. A pod reaches
only the host ports in `kubelet.egress`, at 127.0.0.1:<port> (a test registers the hub's,
the service's, PostgreSQL's), and the host reaches only the pod's declared containerPorts.
What the kubelet does and refuses (persistentVolumeClaim and emptyDir volumes, no `valueFrom`,
no restarts, only NET_BIND_SERVICE added, only safe sysctls) is in kubelet.py; the API
server's own few additions are in apiserver.py.
A hub under test must keep its servers when it stops (`JupyterHub.cleanup_servers = False`) to
find the pods again after a restart, as on a cluster (tests/k8s/plainhub.py does).
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import yaml
from jobcontroller import JobController
from kubelet import Kubelet

log = logging.getLogger("standin")

APISERVER = Path(__file__).with_name("apiserver.py")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class StandIn:
    """The API server process, its kubeconfig and the kubelet thread; a context manager."""

    def __init__(self, workdir: Path, pod_network: str = "127.0.8.0/24") -> None:
        self.workdir = workdir
        self.pod_network = pod_network
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}"
        self.kubeconfig = workdir / "kubeconfig.yaml"
        self._server: subprocess.Popen[str] | None = None
        self.kubelet = Kubelet(self.api_url, pod_network, workdir)
        self.kubelet.egress.add(self.port)  # pods reach the API server at 127.0.0.1:<port>
        self.jobs = JobController(self.api_url)  # Jobs' pods, status, deadline (jobcontroller.py)
        # one client for the tests' calls: a new one costs ~0.4 s of TLS set-up on a busy machine
        self.client = httpx.Client(base_url=self.api_url, timeout=10)

    def __enter__(self) -> StandIn:
        self.workdir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with (self.workdir / "apiserver.log").open("w") as errors:
            self._server = subprocess.Popen(
                [sys.executable, str(APISERVER), str(self.port)],
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
            )
        assert self._server.stdout is not None
        if self._server.stdout.readline().strip() != "ready":
            self._server.kill()
            self._server.wait()
            self._server.stdout.close()
            log_text = (self.workdir / "apiserver.log").read_text()
            raise RuntimeError(
                f"the stand-in API server did not start on port {self.port}:\n{log_text}"
            )
        self._write_kubeconfig()
        self.kubelet.start()
        self.jobs.start()
        log.info("stand-in: API server %s up in %.2f s", self.api_url, time.monotonic() - started)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.jobs.stop()
        self.kubelet.stop()
        if self._server is not None:
            self._server.terminate()
            self._server.wait(timeout=10)
            assert self._server.stdout is not None
            self._server.stdout.close()
        self.client.close()

    def _write_kubeconfig(self) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "standin", "cluster": {"server": self.api_url}}],
            "users": [{"name": "standin", "user": {"token": "standin"}}],
            "contexts": [
                {
                    "name": "standin",
                    "context": {"cluster": "standin", "user": "standin", "namespace": "default"},
                }
            ],
            "current-context": "standin",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))
        os.chmod(self.kubeconfig, 0o600)

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        response = self.client.get(f"/api/v1/namespaces/{namespace}/pods/{name}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def create_pod(self, pod: dict[str, Any]) -> None:
        namespace = pod["metadata"].get("namespace", "default")
        response = self.client.post(f"/api/v1/namespaces/{namespace}/pods", json=pod)
        response.raise_for_status()

    def delete_pod(self, namespace: str, name: str) -> None:
        response = self.client.delete(f"/api/v1/namespaces/{namespace}/pods/{name}")
        response.raise_for_status()
