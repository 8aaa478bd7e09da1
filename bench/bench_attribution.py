"""The cost of attributing executions (issue 16), against a baseline run in this same process.

- attribution: trivial executions (`pass`) of one kernel through the hub's proxy, in rounds
  that alternate between the workspace's own bridge (the spawner's netbridge, which records
  executions) and a plain pump into the same sandbox (netbridge's pump without the recorder,
  on a port of its own). Between rounds the proxy's route for the workspace is pointed at one
  or the other through configurable-http-proxy's REST API (`POST /api/routes/<path>` with the
  route's data and a new target; a route only decides where new connections go, so each round
  opens its own websocket). Target: the recording bridge at most 5% slower (median per
  execution, ratio <= 1.05), and the audit log holds exactly the executions that went
  through the recording bridge (so the route went where the bench said; not in the smoke).
  Two plain pumps, each a process of its own, run as two arms, and the recording bridge is
  held against the median of both pumps' executions: one pump's process alone moved the
  ratio by up to 7% between runs (a bridge with its recording taken out read 0.930-1.044
  against one pump in seven runs on a 2-core machine). Their ratio to each other is printed
  as the run's noise floor. Each arm's process CPU per execution is printed too: the bridge's
  own cost, which the round trip's scatter hides (its CPU clock, ended threads included);
- server memory: the workspace server's RSS and PSS (and the bridge's RSS) before and after
  many executions through the recording bridge: what a long day of cells leaves behind.

The route the hub made is put back at the end (and the hub's own route check would restore it
within `last_activity_interval` anyway). Needs root (the sandbox's network namespace).
    .venv/bin/python bench/bench_attribution.py [--executions 1000] [--memory 10000] [--smoke]
    .venv/bin/python bench/bench_attribution.py --home HOME --url URL --proxy-api URL \
        --token TOKEN [--dossier armoede]   (on a hub serving already: the smoke test's)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from websockets.sync.client import ClientConnection, connect

from dossierhub.isolation.unixusers import workspace_name
from dossierhub.state.audit import AuditLog
from dossierhub.state.executions import executions_from
from dossierhub.state.home import Home
from dossierhub.workspaces.tokens import read_token

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # as bench_workspaces

from kernelclient import execute_request, frame  # tests/ is on the path from here on

TARGET = 1.05


# --- the plain pump (plainpump.py) and the proxy's route ---


def free_port() -> int:
    """A port nobody listens on now (the pump binds it a moment later)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def plain_pump(bridge: Bridge) -> Iterator[tuple[str, int]]:
    """A plain pump into the workspace's sandbox for as long as the block runs; its URL and
    its process id."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-I",
            str(Path(__file__).with_name("plainpump.py")),
            *(str(arg) for arg in (bridge.sandbox_pid, bridge.started, port, bridge.port)),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if "ready" not in line:
            raise RuntimeError(f"the plain pump did not start: {line!r}")
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        process.terminate()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


@dataclass(frozen=True)
class Bridge:
    """The spawner's netbridge of a running workspace, as its command line says."""

    pid: int
    sandbox_pid: int
    started: str
    port: int


def find_bridge(port: int) -> Bridge:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = [a.decode() for a in (entry / "cmdline").read_bytes().split(b"\0") if a]
        except OSError:
            continue
        if not any(a.endswith(("netbridge.py", "netbridge")) for a in args):
            continue
        parser = argparse.ArgumentParser(add_help=False)
        for option in ("--pid", "--started", "--port"):
            parser.add_argument(option)
        known, _ = parser.parse_known_args(args)
        if known.port == str(port) and known.pid and known.started:
            return Bridge(int(entry.name), int(known.pid), known.started, port)
    raise RuntimeError(f"no netbridge serves port {port}: is the workspace sandboxed?")


class Routes:
    """configurable-http-proxy's REST API (token in `Authorization: token ...`)."""

    def __init__(self, target: Target):
        self.client = httpx.Client(
            base_url=f"{target.proxy_api.rstrip('/')}/api/routes",
            headers={"Authorization": f"token {read_token(target.home, 'proxy')}"},
            timeout=30,
        )

    def close(self) -> None:
        self.client.close()

    def get(self, spec: str) -> dict:
        routes = self.client.get("").raise_for_status().json()
        if spec not in routes:
            raise RuntimeError(f"the proxy has no route {spec}: is the workspace running?")
        return routes[spec]

    def point(self, spec: str, target: str) -> None:
        """The route `spec` to `target`, keeping the data the hub stored with it (the hub
        reads its own routes by that data)."""
        data = {k: v for k, v in self.get(spec).items() if k != "last_activity"}
        self.client.post(spec, json={**data, "target": target}).raise_for_status()
        if self.get(spec)["target"] != target:
            raise RuntimeError(f"the proxy did not take {spec} -> {target}")


def cpu_seconds(pid: int) -> float:
    """The CPU time of process `pid` so far, all its threads (ended ones too), in seconds: its
    process-wide CPU clock (clock_getcpuclockid's id, `(~pid << 3) | 2`: nanoseconds, where
    /proc's stat counts 10 ms ticks)."""
    return time.clock_gettime(((~pid) << 3) | 2)


# --- executions, as a browser sends them ---


def run_once(ws: ClientConnection, code: str = "pass") -> float:
    """Seconds from sending `code` to its idle status (the browser's cell done)."""
    request = execute_request(code, claimed="bench", cell_id="bench-cell")
    started = time.perf_counter()
    ws.send(frame(request))
    while True:
        message = json.loads(ws.recv(timeout=60))
        if message["parent_header"].get("msg_id") != request["header"]["msg_id"]:
            continue
        if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
            return time.perf_counter() - started


@dataclass
class Kernel:
    url: str  # the workspace through the proxy: <public>/user/<server>
    token: str
    id: str = ""

    def start(self) -> None:
        response = httpx.post(
            f"{self.url}/api/kernels", headers=self.headers, json={"name": "dossier"}, timeout=60
        )
        self.id = response.raise_for_status().json()["id"]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    def stop(self) -> None:
        httpx.delete(f"{self.url}/api/kernels/{self.id}", headers=self.headers, timeout=60)

    def run(self, count: int) -> list[float]:
        """`count` executions on one new websocket (a new connection: the route of now)."""
        ws_url = self.url.replace("http://", "ws://") + f"/api/kernels/{self.id}/channels"
        with connect(ws_url, additional_headers=self.headers, open_timeout=60) as ws:
            run_once(ws)  # the connection's first answer includes the kernel's nudge
            return [run_once(ws) for _ in range(count)]


# --- memory ---


def server_pid(kernel_pid: int) -> int:
    """The workspace server: the parent of its kernels (whatever its command line says)."""
    status = Path(f"/proc/{kernel_pid}/status").read_text()
    return int(status.split("\nPPid:")[1].split()[0])


def kernel_pid(user: str) -> int:
    """A Dossier kernel of the workspace run by `user` (the bench's own: it starts none else)."""
    uid = pwd.getpwnam(user).pw_uid
    for entry in Path("/proc").iterdir():
        try:
            mine = entry.name.isdigit() and entry.stat().st_uid == uid
            if mine and b"dossier_kernel" in (entry / "cmdline").read_bytes():
                return int(entry.name)
        except OSError:
            continue
    raise RuntimeError(f"no Dossier kernel of {user} is running")


def memory(pid: int) -> tuple[int, int]:
    """RSS and PSS of one process, in bytes (PSS from smaps_rollup; 0 where there is none)."""
    rss = pss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1]) * 1024
    return rss, pss


def mib(value: float) -> str:
    return f"{value / 2**20:.1f} MiB"


# --- the benchmark ---


@dataclass(frozen=True)
class Target:
    home: Home
    url: str  # the hub's public URL
    token: str  # of a member who may run the workspace
    dossier: str
    proxy_api: str  # configurable-http-proxy's REST API

    @property
    def server(self) -> str:
        return f"dossier-{self.dossier}"

    @property
    def route(self) -> str:
        return f"/user/{self.server}"  # as the proxy keeps it: no trailing slash


def bridge_port(target: str) -> int:
    return int(target.rstrip("/").rsplit(":", 1)[1])


def measure_cost(
    target: Target,
    kernel: Kernel,
    executions: int,
    rounds: int,
    check_records: bool,
) -> bool:
    """Recording bridge vs plain pump, interleaved (each round runs the arms in a rotated
    order, so drift in the machine's load falls on all); True if the target is met and, with
    `check_records`, the audit log holds exactly the recording bridge's executions."""
    routes = Routes(target)
    recording = routes.get(target.route)["target"]
    bridge = find_bridge(bridge_port(recording))
    per_round = max(1, executions // rounds)
    with contextlib.ExitStack() as stack:
        stack.callback(routes.close)
        # two plain pumps: the baseline is not one process's luck (see the module's docstring)
        arms = {
            "recording": (recording, bridge.pid),
            "plain": stack.enter_context(plain_pump(bridge)),
            "plain again": stack.enter_context(plain_pump(bridge)),
        }
        stack.callback(routes.point, target.route, recording)
        times: dict[str, list[float]] = {arm: [] for arm in arms}
        cpu = dict.fromkeys(arms, 0.0)  # the arm's own process, while its rounds ran
        sent = dict.fromkeys(arms, 0)  # with each connection's first execution
        names = list(arms)
        for index in range(rounds):
            for arm in names[index % len(names) :] + names[: index % len(names)]:
                url, pid = arms[arm]
                routes.point(target.route, url)
                before = cpu_seconds(pid)
                measured = kernel.run(per_round)
                cpu[arm] += cpu_seconds(pid) - before
                if routes.get(target.route)["target"] != url:
                    raise RuntimeError("the hub put its route back during a round: run again")
                times[arm].extend(measured)
                sent[arm] += len(measured) + 1
    records_ok = report_records(target, kernel, sent["recording"]) if check_records else True
    median = {arm: statistics.median(found) for arm, found in times.items()}
    off = statistics.median(times["plain"] + times["plain again"])  # both pumps' executions
    ratio = median["recording"] / off
    print(
        f"{'attribution_cost':<18} recording {median['recording'] * 1000:.2f} ms  plain "
        f"{off * 1000:.2f} ms per execution (median of {len(times['recording'])}, and of "
        f"{len(times['plain']) * 2} through two plain pumps)  ratio {ratio:.3f} (target <= "
        f"{TARGET}){' ok' if ratio <= TARGET else ' OVER TARGET'}",
        flush=True,
    )
    print(
        f"{'noise_floor':<18} the two plain pumps {median['plain'] * 1000:.2f} / "
        f"{median['plain again'] * 1000:.2f} ms, ratio "
        f"{median['plain again'] / median['plain']:.3f}: what one run reads between two pumps "
        f"that do the same (the recording bridge against each: "
        f"{median['recording'] / median['plain']:.3f}, "
        f"{median['recording'] / median['plain again']:.3f})",
        flush=True,
    )
    per = {arm: cpu[arm] / sent[arm] * 1e6 for arm in arms}
    print(
        f"{'cpu_per_execution':<18} recording bridge {per['recording']:.0f} us, plain pumps "
        f"{per['plain']:.0f} / {per['plain again']:.0f} us (each process's own CPU clock over "
        f"its rounds, the proxy's and the server's not counted)",
        flush=True,
    )
    return ratio <= TARGET and records_ok


def report_records(target: Target, kernel: Kernel, sent: int) -> bool:
    """How many of this kernel's executions reached the audit log: all those the recording
    bridge carried, none of the plain pump's (so the route went where the bench said). The
    bridge spools a batch at 200 executions or after 10 s, the service takes it within ~1 s."""
    deadline = time.monotonic() + 30
    while True:
        found = executions_from(AuditLog(target.home).read(), dossier=target.dossier)
        recorded = sum(1 for execution in found if execution.kernel == kernel.id)
        if recorded >= sent or time.monotonic() > deadline:
            break
        time.sleep(1)
    print(
        f"{'recorded':<18} {recorded} executions in the audit log, of {sent} through the "
        f"recording bridge{' ok' if recorded == sent else ' MISMATCH'}",
        flush=True,
    )
    return recorded == sent


def measure_memory(target: Target, kernel: Kernel, executions: int, warm: int) -> None:
    """The server's and the bridge's memory before and after `executions` through the proxy
    (the recording bridge: the route the hub made), after `warm` ones (first-use allocations
    are not growth)."""
    kernel.run(warm)
    server = server_pid(kernel_pid(workspace_name(target.home, target.dossier)))
    routes = Routes(target)
    bridge = find_bridge(bridge_port(routes.get(target.route)["target"]))
    routes.close()
    before, bridge_before = memory(server), memory(bridge.pid)
    done = 0
    while done < executions:
        batch = min(1000, executions - done)
        kernel.run(batch)
        done += batch
    time.sleep(1)  # the bridge's batches leave on their interval
    after, bridge_after = memory(server), memory(bridge.pid)
    print(
        f"{'server_memory':<18} RSS {mib(before[0])} -> {mib(after[0])} "
        f"({(after[0] - before[0]) / 2**20:+.1f} MiB), PSS {mib(before[1])} -> {mib(after[1])} "
        f"({(after[1] - before[1]) / 2**20:+.1f} MiB) after {executions} executions",
        flush=True,
    )
    print(
        f"{'bridge_memory':<18} RSS {mib(bridge_before[0])} -> {mib(bridge_after[0])} "
        f"({(bridge_after[0] - bridge_before[0]) / 2**20:+.1f} MiB)",
        flush=True,
    )


@contextlib.contextmanager
def own_hub() -> Iterator[Target]:
    """A hub of this benchmark's own (bench_workspaces' set-up), its workspace started.
    (Run as a script: bench/ is on the path, and bench_workspaces puts tests/ there.)"""
    from bench_workspaces import LEAD, setup_dossierhub, stop, wait_ready
    from dossierhub.state.settings import load_settings
    from dossierhub.workspaces.hubconfig import ports

    from e2e_hub import DOSSIERHUB, release_identities

    root = Path(tempfile.mkdtemp(prefix="dossierhub-bench-", dir="/tmp"))
    os.chmod(root, 0o711)
    serve = None
    try:
        # Unix users of its own when a test prefix is set (two sessions on one machine)
        prefix = os.environ.get("DOSSIERHUB_TEST_PREFIX")
        sections = {"isolation": {"prefix": prefix}} if prefix else None
        serve, url, home = setup_dossierhub(root, 1, sections=sections)
        token = subprocess.run(
            [DOSSIERHUB, "--home", str(home.root), "token", LEAD],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        wait_ready(url, "dossier-bench-01", token)
        api = f"http://127.0.0.1:{ports(load_settings(home))[1]}"
        yield Target(home, url, token, "bench-01", api)
        stop(url, "dossier-bench-01", token)
    finally:
        if serve is not None:
            serve.send_signal(signal.SIGTERM)
            serve.wait(120)
        release_identities(Home(root / "home"))
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--executions", type=int, default=1000, help="per arm")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--memory", type=int, default=10000, help="executions between looks")
    parser.add_argument("--smoke", action="store_true", help="a few executions of each")
    parser.add_argument("--home", help="a serving hub's HOME (else a hub of its own)")
    parser.add_argument("--url", help="that hub's public URL")
    parser.add_argument("--token", help="a hub token of a member who may run the workspace")
    parser.add_argument("--dossier", default="armoede")
    parser.add_argument("--proxy-api", help="that hub's proxy API URL")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root: the plain pump enters the workspace's network namespace")
        return 1
    executions, rounds, memory_runs, warm = (
        (3, 1, 3, 1) if args.smoke else (args.executions, args.rounds, args.memory, 100)
    )
    with contextlib.ExitStack() as stack:
        if args.home:
            home = Home(Path(args.home))
            target = Target(home, args.url, args.token, args.dossier, args.proxy_api)
        else:
            target = stack.enter_context(own_hub())
        kernel = Kernel(f"{target.url}user/{target.server}", target.token)
        kernel.start()
        stack.callback(kernel.stop)
        # the smoke skips the records: their batch may wait 10 s for the bridge's interval
        ok = measure_cost(target, kernel, executions, rounds, not args.smoke)
        measure_memory(target, kernel, memory_runs, warm)
    if args.smoke:
        print("smoke run: too small to judge the target")
        return 0
    print("all targets met" if ok else "some targets missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
