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
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

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
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root: pods run as their own uids")
        return 1
    repeat = 1 if args.smoke else args.repeat
    root = Path(tempfile.mkdtemp(prefix="dossierhub-bench-k8s-", dir="/tmp"))
    try:
        local = measure(PlainHub(root / "local"), repeat)
        with StandIn(root / "k8s") as k8s:
            kube = measure(PlainHub(root / "kube", kubeconfig=k8s.kubeconfig), repeat)
        for name in ("hub_start", "workspace_start", "workspace_stop"):
            report(name, kube[name], local[name])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.smoke:
        print("smoke run: one repeat")
    return 0


if __name__ == "__main__":
    sys.exit(main())
