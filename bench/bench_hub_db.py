"""The hub on PostgreSQL vs SQLite (issue 14), in one run on this machine: the same burst as
bench_workspaces.py (N dossier workspaces started at once through the hub API, the hub API's
p95 latency while they start, the time until all are ready), first with the hub's database in
SQLite under HOME, then on a throwaway PostgreSQL (tests/pg.py; Debian's server, installed by
./install.sh --dev), and the two as ratios (PostgreSQL / SQLite).

With `--spawner kubernetes` the workspaces are pods: `hub.spawner: kubernetes` on the
Kubernetes stand-in of the tests (tests/k8s/standin.py: kmock's API server and the test
kubelet, which runs each pod as a sandboxed local process), a fresh stand-in for each hub
(on one shared by both, the second hub's 20 pods all failed, in three runs of three). Its
figures leave out a real cluster's scheduling and image pulls, and the kubelet (a thread of
this process, validating each pod) shares the interpreter with the client that measures.

Needs root (workspaces run as their own Unix users or pod numbers), like the e2e tests.
    .venv/bin/python bench/bench_hub_db.py [--spawner kubernetes] [--workspaces 20] [--smoke]
                                           [--prefix dhb]

Measured here (2 cores shared with four other sessions; ratios PostgreSQL / SQLite; the hubs
run one after the other, so a change of load between them moves the ratios):

- local spawner, 20 workspaces (the last session, load not recorded): all ready in 52.2 s vs
  55.4 s (0.94), hub API p95 2247 ms vs 2080 ms (1.08).
- user listing, one at a time (`api_users_listing`), four runs with pods:
  load 4 falling to 2: 40.7 vs 26.4 ms (1.54), hub CPU 22.5 vs 19.9 ms (1.13), hub + database
  server CPU 1.30, hub context switches 18.8 vs 5.1 (3.71);
  load 9-26: 151.8 vs 109.0 ms (1.39), hub CPU 33.9 vs 27.2 ms (1.25), hub + database 1.44,
  context switches 25.5 vs 16.8 (1.52);
  load 11-14: 112.0 vs 85.9 ms (1.30), hub CPU 29.9 vs 25.4 ms (1.18), hub + database 1.36,
  context switches 20.4 vs 10.6 (1.92);
  load 15 falling to 4 during the PostgreSQL half: 27.8 vs 80.1 ms (0.35), CPU 0.77 and 0.88.
  Side by side on the same load (two hubs, requests interleaved, 300 each; the cause is in
  docs/reference.md): hub + database CPU 1.18 and 1.34.
- pods on the stand-in, 20 at once, --timeout 240, a fresh stand-in per hub:
  load 3.9 at the start, 2.1 at the end: SQLite all 20 ready in 43.1 s; PostgreSQL 19 ready,
  the slowest after 46.2 s (1.09), one never ready. Hub API p95 526 ms (SQLite) vs 92 ms
  (PostgreSQL): not comparable, the PostgreSQL half's probes ran on for 190 s more, waiting
  for the lost pod on an idle hub.
  load 15 falling to 4 during the PostgreSQL half: SQLite 11 of 20 ready (the slowest after
  85.4 s), PostgreSQL all 20 in 52.6 s; p95 155 vs 569 ms.
  The pods that never got ready were lost between KubeSpawner and the stand-in (SQLite lost
  them too): under load the stand-in's API server answered KubeSpawner's pod creation past
  its 3 s request timeout ("Attempting to create pod ... with timeout 3", repeated) and the
  kubelet's list past 10 s; earlier runs on one shared stand-in lost 11-19 of 20 on SQLite
  and all 20 on PostgreSQL (the second hub).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "k8s"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from standin import StandIn

from bench_workspaces import LEAD, Burst, burst, setup_dossierhub
from dossierhub.state.home import Home
from dossierhub.state.settings import KubernetesSettings, load_settings
from dossierhub.workspaces.hubconfig import ports
from dossierhub.workspaces.tokens import read_token
from pg import Postgres, postgres_bin, throwaway_postgres

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


@dataclass(frozen=True)
class Listing:
    """What one GET /hub/api/users costs, asked one after another: the wall time (median), the
    CPU time of the hub and of its database server (a PostgreSQL backend; SQLite runs inside
    the hub) and the hub's context switches, per request."""

    wall_ms: float
    hub_cpu_ms: float
    database_cpu_ms: float
    hub_switches: float


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def context_switches(pid: int) -> int:
    """Voluntary + involuntary context switches of a process's main thread so far."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    return sum(int(line.split()[1]) for line in status if "ctxt_switches:" in line)


def listing_cost(url: str, home: Home, backends: list[int], requests: int = 200) -> Listing:
    """`requests` GET /hub/api/users with the service's token, one at a time; the hub's and
    the `backends`' CPU read from /proc around them."""
    hub_pid = int(home.hub_pid_file.read_text())
    headers = {"Authorization": f"token {read_token(home, 'service')}"}
    walls: list[float] = []
    with httpx.Client(headers=headers, timeout=30) as client:
        client.get(f"{url}hub/api/users").raise_for_status()  # warm: the token's first lookup
        hub_cpu, database_cpu = cpu_seconds(hub_pid), sum(map(cpu_seconds, backends))
        switches = context_switches(hub_pid)
        for _ in range(requests):
            started = time.perf_counter()
            client.get(f"{url}hub/api/users").raise_for_status()
            walls.append(time.perf_counter() - started)
        hub_cpu = cpu_seconds(hub_pid) - hub_cpu
        database_cpu = sum(map(cpu_seconds, backends)) - database_cpu
        switches = context_switches(hub_pid) - switches
    per_request = 1000 / requests
    measured = Listing(
        statistics.median(walls) * 1000,
        hub_cpu * per_request,
        database_cpu * per_request,
        switches / requests,
    )
    print(
        f"{'api_users_listing':<22} GET /hub/api/users one at a time: {measured.wall_ms:.1f} ms "
        f"(median), hub CPU {measured.hub_cpu_ms:.1f} ms, database server CPU "
        f"{measured.database_cpu_ms:.1f} ms, hub context switches {measured.hub_switches:.1f}"
        " per request",
        flush=True,
    )
    return measured


def run_hub(
    label: str,
    database: dict,
    backends: Callable[[], list[int]],
    k8s: StandIn | None,
    args: argparse.Namespace,
) -> tuple[Listing, Burst]:
    """One hub with `database` in its hub settings (pods on `k8s` when given): first the cost
    of a user listing on the idle hub (its database server's processes from `backends`),
    then `args.workspaces` workspaces at once, each given `args.timeout` seconds; lines printed."""
    root = Path(tempfile.mkdtemp(prefix="dossierhub-bench-", dir="/tmp"))
    os.chmod(root, 0o711)
    hub, sections, env = on_standin(k8s) if k8s is not None else ({}, {}, {})
    # Unix users of its own, so a dossierhub on this machine (and other runs) keep theirs
    sections = {**sections, "isolation": {"prefix": args.prefix}}
    serve = None
    try:
        serve, url, home = setup_dossierhub(
            root,
            args.workspaces,
            {**hub, **database},
            sections=sections,
            env=env,
            start_timeout=args.timeout,
        )
        if k8s is not None:  # HOME is the claim every workspace pod mounts its folders from
            k8s.kubelet.claims[KubernetesSettings().home_claim] = home.root
            public, _, hub_port, service_port = ports(load_settings(home))
            k8s.kubelet.egress.update({public, hub_port, service_port})  # pods' own network
        token = subprocess.run(
            [DOSSIERHUB, "--home", str(home.root), "token", LEAD],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        print(f"{label}:", flush=True)
        listing = listing_cost(url, home, backends(), args.listings)
        return listing, burst(url, token, args.workspaces, args.timeout)
    finally:
        if serve is not None:
            serve.send_signal(signal.SIGTERM)
            serve.wait(120)
        release_identities(Home(root / "home"))
        shutil.rmtree(root, ignore_errors=True)


def backend_pids(postgres: Postgres) -> list[int]:
    """The server processes serving the hub's connections (its database's role)."""
    rows = postgres.sql(f"SELECT pid FROM pg_stat_activity WHERE usename = '{postgres.user}'")
    return [int(pid) for pid in rows.split()]


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


def report_ratios(sqlite: tuple[Listing, Burst], postgresql: tuple[Listing, Burst]) -> None:
    """PostgreSQL's figures against SQLite's, as ratios."""
    (sqlite_listing, sqlite_burst), (pg_listing, pg_burst) = sqlite, postgresql
    pg_cpu = pg_listing.hub_cpu_ms + pg_listing.database_cpu_ms
    print(
        f"{'listing_vs_sqlite':<22} wall {pg_listing.wall_ms / sqlite_listing.wall_ms:.2f}, "
        f"hub CPU {pg_listing.hub_cpu_ms / sqlite_listing.hub_cpu_ms:.2f}, hub + database "
        f"CPU {pg_cpu / sqlite_listing.hub_cpu_ms:.2f}, hub context switches "
        f"{pg_listing.hub_switches / sqlite_listing.hub_switches:.2f}",
        flush=True,
    )
    report_burst_ratios(sqlite_burst, pg_burst)


def report_burst_ratios(sqlite: Burst, postgresql: Burst) -> None:
    ready = postgresql.ready_seconds / sqlite.ready_seconds
    slowest = postgresql.slowest_ready_seconds / sqlite.slowest_ready_seconds
    p95 = postgresql.api_p95_seconds / sqlite.api_p95_seconds
    print(
        f"{'burst_vs_sqlite':<22} all ready {postgresql.ready_seconds:.1f} s vs "
        f"{sqlite.ready_seconds:.1f} s (ratio {ready:.2f}), slowest ready "
        f"{postgresql.slowest_ready_seconds:.1f} s vs {sqlite.slowest_ready_seconds:.1f} s "
        f"(ratio {slowest:.2f}), failures {len(postgresql.failures)} vs "
        f"{len(sqlite.failures)}, hub API p95 "
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
    parser.add_argument("--listings", type=int, default=200, help="user listings measured")
    parser.add_argument("--smoke", action="store_true", help="2 workspaces, 20 listings")
    parser.add_argument(
        "--spawner", choices=("local", "kubernetes"), default="local", help="where they run"
    )
    parser.add_argument("--prefix", default="dhb", help="Unix user prefix of the hubs")
    parser.add_argument(
        "--timeout",
        type=int,
        default=120,
        help="seconds a workspace may take (the target stays 120; longer lets a loaded machine "
        "still give both figures)",
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root: workspaces run as their own Unix users or pod numbers")
        return 1
    bindir = postgres_bin()
    if bindir is None:
        print("PostgreSQL's server is not installed (./install.sh --dev installs it)")
        return 1
    if args.smoke:
        args.workspaces, args.listings = 2, 20
    print(f"{'load_average':<22} {load_average()} (1, 5, 15 min) at the start", flush=True)
    pods = args.spawner == "kubernetes"
    with standin_if(pods) as k8s:
        sqlite = run_hub("SQLite (hub/jupyterhub.sqlite)", {}, list, k8s, args)
    with (
        throwaway_postgres(bindir) as postgres,
        tempfile.TemporaryDirectory() as secrets,
        standin_if(pods) as k8s,
    ):
        password_file = Path(secrets) / "db-password"
        password_file.write_text(postgres.password)
        database = {"db_url": postgres.url, "db_password_file": str(password_file)}
        label = f"PostgreSQL ({postgres.url})"
        postgresql = run_hub(label, database, partial(backend_pids, postgres), k8s, args)
    report_ratios(sqlite, postgresql)
    print(f"{'load_average':<22} {load_average()} (1, 5, 15 min) at the end", flush=True)
    if args.smoke:
        print("smoke run: too small to judge the targets")
        return 0
    ok = sqlite[1].ok and postgresql[1].ok
    print("all targets met" if ok else "some targets missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
