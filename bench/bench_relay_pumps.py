"""What the recording bridge's path costs per execution, without Jupyter (issue 16).

bench_attribution.py measures executions through the hub's proxy into a real kernel, where a
`pass` takes 6-9 ms and the two pumps' difference scatters from 0 to 10% between runs. Here
the kernel is a stand-in that answers at once, so what is left is the pumps themselves:

- upstream: a websocket server (websockets' threads, no compression, as the workspace server
  negotiates none) that answers each execute_request with what a kernel sends for `pass`:
  status busy, execute_input, execute_reply, status idle (legacy JSON text, or v1 binary
  with --v1), each naming the request as its parent;
- the plain pump (netbridge._Joined) and the recording bridge (netbridge._Watched with its
  recorder spooling batches into a temporary HOME), each in a process of its own, both in
  front of that one upstream, on the machine's loopback (no sandbox: no root needed); and
  the recording bridge once more with its batches dropped (what spooling costs);
- the hub's `GET /user`, which the recording bridge asks once for the websocket's token;
- the client (this process): one websocket per round, EXECUTIONS executions one after the
  other, the time from send to `idle` of each; rounds alternate between the two pumps.

Prints per run the median per execution through each pump, the ratio (recording / plain),
and what the recording path costs per execution in microseconds.

    .venv/bin/python bench/bench_relay_pumps.py [--executions 2000] [--rounds 6] [--runs 3] [--v1]
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from jupyter_server.services.kernels.connection.base import (
    deserialize_msg_from_ws_v1,
    serialize_msg_to_ws_v1,
)
from websockets.sync.client import ClientConnection, connect
from websockets.sync.server import ServerConnection, serve

from dossierhub.workspaces import netbridge

KERNEL = "0b6a4f1e-7d0c-4c55-9f53-2a1d3c4b5e6f"
V1 = "v1.kernel.websocket.jupyter.org"
TARGET = 1.05


# --- the roles, each run in a process of its own ---------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def message(msg_type: str, content: dict, parent: dict | None = None) -> dict:
    header = {
        "msg_id": uuid.uuid4().hex,
        "username": "bench",
        "session": "s",
        "msg_type": msg_type,
        "version": "5.3",
        "date": "2026-12-02T05:00:00.000000Z",
    }
    return {
        "header": header,
        "parent_header": parent or {},
        "metadata": {},
        "content": content,
        "buffers": [],
    }


def encode(msg: dict, channel: str, v1: bool) -> str | bytes:
    if v1:
        return serialize_msg_to_ws_v1(msg, channel, lambda part: json.dumps(part).encode())
    return json.dumps({**msg, "channel": channel})


def decode(data: str | bytes, v1: bool) -> tuple[dict, dict, dict]:
    """(header, parent header, content) of a message."""
    if v1:
        assert isinstance(data, bytes)
        _, parts = deserialize_msg_from_ws_v1(data)
        return json.loads(parts[0]), json.loads(parts[1]), json.loads(parts[3])
    whole = json.loads(data)
    return whole["header"], whole["parent_header"], whole["content"]


def kernel_like(connection: ServerConnection) -> None:
    """Answer each execute_request as a kernel answers `pass`."""
    v1 = connection.subprotocol == V1
    for data in connection:
        header, _, _ = decode(data, v1)
        if header["msg_type"] != "execute_request":
            continue
        parent = header
        for msg, channel in (
            (message("status", {"execution_state": "busy"}, parent), "iopub"),
            (message("execute_input", {"code": "pass", "execution_count": 1}, parent), "iopub"),
            (message("execute_reply", {"status": "ok", "execution_count": 1}, parent), "shell"),
            (message("status", {"execution_state": "idle"}, parent), "iopub"),
        ):
            connection.send(encode(msg, channel, v1))


def upstream(port: int) -> None:
    with serve(
        kernel_like,
        "127.0.0.1",
        port,
        compression=None,
        subprotocols=[V1],  # type: ignore[list-item]
        select_subprotocol=lambda connection, offered: V1 if V1 in offered else None,
    ) as server:
        print("ready", flush=True)
        server.serve_forever()


class HubUser(http.server.BaseHTTPRequestHandler):
    """The hub's `GET /hub/api/user` for the one token of the bench."""

    def do_GET(self) -> None:
        body = json.dumps({"kind": "user", "name": "a.jansen"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def hub(port: int) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), HubUser)
    print("ready", flush=True)
    server.serve_forever()


def pump(kind: str, port: int, to: int, home: str, hub_port: int) -> None:
    """netbridge's own accept loop and connection classes, as its main() joins them."""
    threading.stack_size(256 * 1024)
    join = netbridge._Joined
    if kind in ("recording", "unspooled"):
        args = argparse.Namespace(
            home=home,
            dossier="bench",
            hub_api=f"http://127.0.0.1:{hub_port}/hub/api",
            code="hash",
            auth_cache_seconds=300.0,
        )
        recorder, watch = netbridge._recording(args)
        if kind == "unspooled":  # what the spool's writing costs: batches dropped
            recorder.write = lambda batch, events: None
        threading.Thread(target=recorder.run, daemon=True).start()
        join = lambda a, b, release: netbridge._Watched(a, b, release, watch)  # noqa: E731
    listener = netbridge._listener(port)
    print("ready", flush=True)
    netbridge._serve(listener, netbridge._connector(to), netbridge.INBOUND_LIMIT, None, join)


# --- the client -------------------------------------------------------------------------


@contextlib.contextmanager
def started(*role: str) -> Iterator[None]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--role", *role], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if "ready" not in line:
            raise RuntimeError(f"{role[0]} did not start: {line!r}")
        yield
    finally:
        process.terminate()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


def channels(port: int, v1: bool) -> ClientConnection:
    return connect(
        f"ws://127.0.0.1:{port}/user/dossier-bench/api/kernels/{KERNEL}/channels",
        additional_headers={"Authorization": "token bench"},
        subprotocols=[V1] if v1 else None,  # type: ignore[list-item]
        compression=None,
        open_timeout=30,
    )


def executions(port: int, count: int, v1: bool) -> list[float]:
    """Seconds from each execute_request's send to its idle status, one after the other."""
    took = []
    with channels(port, v1) as websocket:
        for _ in range(count):
            request = message(
                "execute_request",
                {"code": "pass", "silent": False, "user_expressions": {}},
            )
            request["metadata"] = {"cellId": uuid.uuid4().hex}
            data = encode(request, "shell", v1)
            began = time.perf_counter()
            websocket.send(data)
            while True:
                header, parent, content = decode(websocket.recv(timeout=30), v1)
                if (
                    header["msg_type"] == "status"
                    and parent.get("msg_id") == request["header"]["msg_id"]
                    and content["execution_state"] == "idle"
                ):
                    break
            took.append(time.perf_counter() - began)
    return took


def one_run(ports: dict[str, int], executions_per_round: int, rounds: int, v1: bool) -> dict:
    medians: dict[str, list[float]] = {kind: [] for kind in ports}
    for round_ in range(rounds):
        order = list(ports) if round_ % 2 == 0 else list(reversed(ports))
        for kind in order:
            medians[kind].append(
                statistics.median(executions(ports[kind], executions_per_round, v1))
            )
    return {kind: statistics.median(values) for kind, values in medians.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--executions", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--v1", action="store_true")
    parser.add_argument("--role", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        role, *rest = args.role
        if role == "upstream":
            upstream(int(rest[0]))
        elif role == "hub":
            hub(int(rest[0]))
        else:
            pump(role, int(rest[0]), int(rest[1]), rest[2], int(rest[3]))
        return 0
    up, hub_port = free_port(), free_port()
    ports = {
        "direct": up,
        "plain": free_port(),
        "recording": free_port(),
        "unspooled": free_port(),
    }
    with (
        tempfile.TemporaryDirectory(prefix="bench-relay-") as home,
        contextlib.ExitStack() as stack,
    ):
        (Path(home) / "audit" / "spool").mkdir(mode=0o700, parents=True)  # as apply makes it
        stack.enter_context(started("upstream", str(up)))
        stack.enter_context(started("hub", str(hub_port)))
        for kind in ("plain", "recording", "unspooled"):
            stack.enter_context(started(kind, str(ports[kind]), str(up), home, str(hub_port)))
        executions(ports["recording"], 50, args.v1)  # warm: the hub's answer cached
        print(
            f"{args.executions} executions x {args.rounds} rounds per pump and run, "
            f"{'v1' if args.v1 else 'legacy'} format; load {os.getloadavg()[0]:.1f}"
        )
        ratios = []
        for run in range(1, args.runs + 1):
            got = one_run(ports, args.executions, args.rounds, args.v1)
            ratio = got["recording"] / got["plain"]
            ratios.append(ratio)
            print(
                f"run {run}: direct {got['direct'] * 1e6:.0f} us, "
                f"plain {got['plain'] * 1e6:.0f} us, "
                f"recording {got['recording'] * 1e6:.0f} us (without spooling "
                f"{got['unspooled'] * 1e6:.0f} us) per execution; ratio {ratio:.3f}; "
                f"the recording path costs {(got['recording'] - got['plain']) * 1e6:+.0f} us "
                f"an execution (load {os.getloadavg()[0]:.1f})"
            )
        spooled = sum(1 for _ in Path(home).rglob("*.json"))
        ratio = statistics.median(ratios)
        print(f"median ratio {ratio:.3f} (target {TARGET}); {spooled} batches spooled")
    return 0


if __name__ == "__main__":
    sys.exit(main())
