"""The Kubernetes stand-in (issue 14) against local processes, same machine, same run.

A plain JupyterHub 6.1.1 with KubeSpawner on the stand-in (tests/k8s: kmock's API server and
the test kubelet, which runs each pod as a sandboxed local process) against the same hub with
JupyterHub's local-process spawner and the same single-user environment:

- hub_start: process start to the hub's API answering;
- workspace_start: the start request to the server answering through the proxy;
- workspace_stop: the stop request to the hub reporting it stopped (on the stand-in: the pod
  deleted and its processes ended).

The stand-in's figures are what KubeSpawner and the hub add on top of the pod's own start, not
a real cluster's (no image pull, no scheduling). Needs root (pods run as their own uids).
    .venv/bin/python bench/bench_k8s_standin.py [--repeat 3] [--smoke]

With `--dossier`, dossierhub's own hub instead (`dossierhub serve` on a demo HOME, as the e2e
fixtures of tests/conftest.py build it): DossierKubeSpawner on the stand-in against the local
DossierSpawner, the armoede workspace opened by its lead:

- hub_restart: serve's restart of the hub (SIGHUP, as for new roles) to its API answering;
- workspace_start: the start request to the workspace answering through the proxy;
- workspace_stop: the stop request to the hub reporting it stopped.
    .venv/bin/python bench/bench_k8s_standin.py --dossier [--repeat 3] [--prefix dhb]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import httpx

from dossierhub.workspaces.provision import request_hub_restart
from dossierhub.workspaces.servestate import read_serve_state

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "k8s"))

from plainhub import PlainHub
from standin import StandIn


def measure(hub: PlainHub, repeat: int) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {"hub_start": [], "workspace_start": [], "workspace_stop": []}
    for index in range(repeat):
        figures["hub_start"].append(hub.start())
        user = f"bench{index}"
        figures["workspace_start"].append(hub.start_server(user))
        figures["workspace_stop"].append(hub.stop_server(user))
        hub.stop()
    return figures


def _tests_conftest() -> ModuleType:
    """tests/conftest.py (tests/k8s has a conftest module of the same name)."""
    path = Path(__file__).resolve().parents[1] / "tests" / "conftest.py"
    spec = importlib.util.spec_from_file_location("dossierhub_tests_conftest", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def measure_dossier(prefix: str, repeat: int, k8s: StandIn | None) -> dict[str, list[float]]:
    """dossierhub serve with the local spawner (k8s None) or on the stand-in `k8s`."""
    from e2e_hub import LEAD

    fixtures = _tests_conftest()  # the e2e fixtures' HOME and serve
    server = "dossier-armoede"
    figures: dict[str, list[float]] = {
        "hub_restart": [],
        "workspace_start": [],
        "workspace_stop": [],
    }
    hub_of = (
        fixtures.serving({}, prefix)
        if k8s is None
        else fixtures.serving_on_standin(k8s, prefix + "k")
    )
    with hub_of as hub:
        token = hub.token(LEAD)
        status = f"{hub.url}user/{server}/api/status"
        for _ in range(repeat):
            state = read_serve_state(hub.home)
            assert state is not None
            started = time.monotonic()
            request_hub_restart(hub.home, set(state.role_ids))
            figures["hub_restart"].append(time.monotonic() - started)
            started = time.monotonic()
            response = hub.start(server, token)
            assert response.status_code in (201, 202), response.text
            headers = {"Authorization": f"token {token}"}
            while httpx.get(status, headers=headers, timeout=30).status_code != 200:
                assert time.monotonic() - started < 120, "the workspace did not answer"
                time.sleep(0.05)
            figures["workspace_start"].append(time.monotonic() - started)
            started = time.monotonic()
            api = hub.api()
            try:
                api.stop_server(server)
            finally:
                api.close()
            figures["workspace_stop"].append(time.monotonic() - started)
    return figures


def report(name: str, ours: list[float], base: list[float]) -> None:
    median: Callable[[list[float]], float] = statistics.median
    print(
        f"{name:<18} stand-in {median(ours):6.2f} s  local {median(base):6.2f} s  "
        f"ratio {median(ours) / median(base):5.2f}",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="1 repeat")
    parser.add_argument("--dossier", action="store_true", help="dossierhub's own hub")
    parser.add_argument("--prefix", default="dhb", help="Unix user prefix of --dossier's hubs")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root: pods run as their own uids")
        return 1
    repeat = 1 if args.smoke else args.repeat
    root = Path(tempfile.mkdtemp(prefix="dossierhub-bench-k8s-", dir="/tmp"))
    try:
        if args.dossier:
            local = measure_dossier(args.prefix, repeat, None)
            with StandIn(root / "k8s") as k8s:
                kube = measure_dossier(args.prefix, repeat, k8s)
        else:
            local = measure(PlainHub(root / "local"), repeat)
            with StandIn(root / "k8s") as k8s:
                plain = PlainHub(root / "kube", kubeconfig=k8s.kubeconfig)
                k8s.kubelet.egress.add(plain.hub_port)  # the pod's own network reaches it
                kube = measure(plain, repeat)
        for name in kube:
            report(name, kube[name], local[name])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.smoke:
        print("smoke run: one repeat")
    return 0


if __name__ == "__main__":
    sys.exit(main())
