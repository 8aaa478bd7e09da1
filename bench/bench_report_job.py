"""A report run as a Kubernetes Job on the stand-in against the local backend (issue 15).

One demo HOME, applied once with `hub.spawner` and `reports.backend: kubernetes` (so the
dossier has both numbers), the built-in `district_profile` template on armoede, run by
`report run`'s own code (run_report), alternating:

- job: `reports.backend: kubernetes`, a Job on the stand-in (tests/k8s: kmock, the test Job
  controller and kubelet, which runs the pod as a sandboxed local process); from the request
  to the run's end (collected, checked, drawn, recorded);
- local: `reports.backend: local`, a kernel started for the run as `<prefix>r-<id>`;
- local_warm: the same with a kernel the pool started ahead (the service's default, which
  the Job backend does without).

The stand-in's figures are the Job's own cost on this machine (pod start, papermill and a
kernel inside it, deletion), not a real cluster's (no image pull, no scheduling).
Needs root (pods and kernels run as their own uids).
    .venv/bin/python bench/bench_report_job.py [--repeat 3] [--prefix dhb]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

from dossierhub.demo import write_demo
from dossierhub.reports.kernelpool import KernelPool
from dossierhub.reports.runs import run_report
from dossierhub.state.home import Home
from dossierhub.state.settings import KubernetesSettings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "k8s"))

from standin import StandIn

from e2e_hub import LEAD, reachable_python, release_identities
from helpers import SMALL, run_cli

DOSSIER, TEMPLATE = "armoede", "district_profile"


def set_backend(home: Home, backend: str) -> None:
    settings = yaml.safe_load(home.settings_file.read_text())
    settings["reports"]["backend"] = backend
    home.settings_file.write_text(yaml.safe_dump(settings))


def timed_run(home: Home, pool: KernelPool | None = None) -> float:
    started = time.monotonic()
    outcome = run_report(home, DOSSIER, TEMPLATE, LEAD, {}, pool=pool)
    took = time.monotonic() - started
    assert outcome.succeeded, outcome.error
    return took


def prepare(root: Path, k8s: StandIn, prefix: str) -> Home:
    assert run_cli(root, "init").exit_code == 0
    home = Home(root)
    write_demo(home, size=SMALL, seed=7, log=lambda text: None)
    python = reachable_python()
    k8s.kubelet.image.append(str(Path(python).parents[1]))
    settings = yaml.safe_load(home.settings_file.read_text()) or {}
    settings.update(
        hub={"spawner": "kubernetes"},
        reports={"backend": "kubernetes"},
        workspaces={"python": python},
        isolation={"prefix": prefix},
        kubernetes={
            "api_url": k8s.api_url,
            "namespace": "default",
            "image": "standin/dossierhub-workspace:bench",
        },
    )
    home.settings_file.write_text(yaml.safe_dump(settings))
    result = run_cli(root, "apply")
    assert result.exit_code == 0, result.stderr
    k8s.kubelet.claims[KubernetesSettings().home_claim] = root
    os.environ["KUBECONFIG"] = str(k8s.kubeconfig)
    return home


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--prefix", default="dhb", help="Unix user prefix of the local runs")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root: pods and kernels run as their own uids")
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="bench-report-job-"))
    figures: dict[str, list[float]] = {"job": [], "local": [], "local_warm": []}
    try:
        with StandIn(workdir / "k8s") as k8s:
            home = prepare(workdir / "home", k8s, args.prefix)
            for _ in range(args.repeat):
                set_backend(home, "kubernetes")
                figures["job"].append(timed_run(home))
                set_backend(home, "local")
                figures["local"].append(timed_run(home))
                pool = KernelPool(home)
                try:
                    pool.fill(DOSSIER)
                    figures["local_warm"].append(timed_run(home, pool))
                finally:
                    pool.close()
    finally:
        release_identities(Home(workdir / "home"))  # the local runs' Unix users
        shutil.rmtree(workdir, ignore_errors=True)
    load = os.getloadavg()[0]
    print(f"{TEMPLATE} on {DOSSIER}, {args.repeat} runs each, load average {load:.1f}:")
    job = statistics.median(figures["job"])
    for name, values in figures.items():
        median = statistics.median(values)
        runs = ", ".join(f"{v:.2f}" for v in values)
        print(f"  {name:<11} median {median:6.2f} s  ({runs})  job/this {job / median:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
