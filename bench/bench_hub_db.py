"""The hub on PostgreSQL vs SQLite (issue 14), in one run on this machine: the same burst as
bench_workspaces.py (N dossier workspaces started at once through the hub API, the hub API's
p95 latency while they start, the time until all are ready), first with the hub's database in
SQLite under HOME, then on a throwaway PostgreSQL (tests/pg.py; Debian's server, installed by
./install.sh --dev), and the two as ratios (PostgreSQL / SQLite).

With `--spawner kubernetes` the workspaces are pods: `hub.spawner: kubernetes` on the
Kubernetes stand-in of the tests (tests/k8s/standin.py: kmock's API server and the test
kubelet, which runs each pod as a sandboxed local process), one stand-in for both hubs. Its
figures leave out a real cluster's scheduling and image pulls, and the kubelet (a thread of
this process, validating each pod) shares the interpreter with the client that measures.

Needs root (workspaces run as their own Unix users or pod numbers), like the e2e tests.
    .venv/bin/python bench/bench_hub_db.py [--spawner kubernetes] [--workspaces 20] [--smoke]
                                           [--prefix dhb]

Measured here (2 cores shared with other sessions, so the load average goes with the
figures; 20 workspaces; ratios PostgreSQL / SQLite):

- local spawner (the last session, load not recorded): all ready in 52.2 s vs 55.4 s (0.94),
  hub API p95 2247 ms vs 2080 ms (1.08).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "k8s"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from standin import StandIn

from bench_workspaces import LEAD, Burst, burst, setup_dossierhub
from dossierhub.state.home import Home
from dossierhub.state.settings import KubernetesSettings
from pg import postgres_bin, throwaway_postgres

from e2e_hub import DOSSIERHUB, reachable_python, release_identities


def on_standin(k8s: StandIn) -> tuple[dict, dict, dict[str, str]]:
    """The hub settings, settings sections and serve environment that make a hub's
    workspaces pods on the stand-in `k8s` (whose "image" must hold the workspace Python)."""
    python_env = str(Path(reachable_python()).parents[1])
    if python_env not in k8s.kubelet.image:
        k8s.kubelet.image.append(python_env)
    kubernetes = {
        "api_url": k8s.api_url,
        "namespace": "default",
        "image": "standin/dossierhub-workspace:bench",  # the stand-in runs the host's Python
    }
    return (
        {"spawner": "kubernetes"},
        {"kubernetes": kubernetes},
        {"KUBECONFIG": str(k8s.kubeconfig)},
    )


def run_burst(label: str, count: int, database: dict, prefix: str, k8s: StandIn | None) -> Burst:
    """One hub with `database` in its hub settings (pods on `k8s` when given), `count`
    workspaces at once; its line printed."""
    root = Path(tempfile.mkdtemp(prefix="dossierhub-bench-", dir="/tmp"))
    os.chmod(root, 0o711)
    hub, sections, env = on_standin(k8s) if k8s is not None else ({}, {}, {})
    # Unix users of its own, so a dossierhub on this machine (and other runs) keep theirs
    sections = {**sections, "isolation": {"prefix": prefix}}
    serve = None
    try:
        serve, url, home = setup_dossierhub(
            root, count, {**hub, **database}, sections=sections, env=env
        )
        if k8s is not None:  # HOME is the claim every workspace pod mounts its folders from
            k8s.kubelet.claims[KubernetesSettings().home_claim] = home.root
        token = subprocess.run(
            [DOSSIERHUB, "--home", str(home.root), "token", LEAD],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        print(f"{label}:", flush=True)
        return burst(url, token, count)
    finally:
        if serve is not None:
            serve.send_signal(signal.SIGTERM)
            serve.wait(120)
        release_identities(Home(root / "home"))
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def standin_if(wanted: bool) -> Iterator[StandIn | None]:
    """The Kubernetes stand-in for the `with` block when `wanted`, else None."""
    if not wanted:
        yield None
        return
    workdir = Path(tempfile.mkdtemp(prefix="dossierhub-bench-k8s-", dir="/tmp"))
    try:
        with StandIn(workdir) as k8s:
            yield k8s
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def report_ratios(sqlite: Burst, postgresql: Burst) -> None:
    ready = postgresql.ready_seconds / sqlite.ready_seconds
    p95 = postgresql.api_p95_seconds / sqlite.api_p95_seconds
    print(
        f"{'postgresql_vs_sqlite':<22} all ready {postgresql.ready_seconds:.1f} s vs "
        f"{sqlite.ready_seconds:.1f} s (ratio {ready:.2f}), hub API p95 "
        f"{postgresql.api_p95_seconds * 1000:.0f} ms vs {sqlite.api_p95_seconds * 1000:.0f} ms "
        f"(ratio {p95:.2f})",
        flush=True,
    )


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.1f} {five:.1f} {fifteen:.1f} on {os.cpu_count()} cores"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workspaces", type=int, default=20)
    parser.add_argument("--smoke", action="store_true", help="2 workspaces")
    parser.add_argument(
        "--spawner", choices=("local", "kubernetes"), default="local", help="where they run"
    )
    parser.add_argument("--prefix", default="dhb", help="Unix user prefix of the hubs")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root: workspaces run as their own Unix users or pod numbers")
        return 1
    bindir = postgres_bin()
    if bindir is None:
        print("PostgreSQL's server is not installed (./install.sh --dev installs it)")
        return 1
    count = 2 if args.smoke else args.workspaces
    print(f"{'load_average':<22} {load_average()} (1, 5, 15 min) at the start", flush=True)
    with standin_if(args.spawner == "kubernetes") as k8s:
        sqlite = run_burst("SQLite (hub/jupyterhub.sqlite)", count, {}, args.prefix, k8s)
        with throwaway_postgres(bindir) as postgres, tempfile.TemporaryDirectory() as secrets:
            password_file = Path(secrets) / "db-password"
            password_file.write_text(postgres.password)
            database = {"db_url": postgres.url, "db_password_file": str(password_file)}
            label = f"PostgreSQL ({postgres.url})"
            postgresql = run_burst(label, count, database, args.prefix, k8s)
    report_ratios(sqlite, postgresql)
    print(f"{'load_average':<22} {load_average()} (1, 5, 15 min) at the end", flush=True)
    if args.smoke:
        print("smoke run: too small to judge the targets")
        return 0
    ok = sqlite.ok and postgresql.ok
    print("all targets met" if ok else "some targets missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
