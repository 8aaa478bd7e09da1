"""The only network ways in and out of a workspace sandbox (run as root, one per workspace).

A workspace has a network namespace of its own (bubblewrap's --unshare-net): it sees nothing of
the machine's network, so it can neither reach nor listen on the hub's, the service's or the
proxy's ports, nor send data anywhere. This bridge, started by the spawner outside the sandbox
(and outliving hub restarts, like the workspace), joins two ends:

- in: 127.0.0.1:PORT of the machine (where the proxy and the hub look for the server) to
  127.0.0.1:PORT inside the sandbox, where the server listens;
- out: 127.0.0.1:HUB inside the sandbox to the hub's own API port on the machine, so the
  server can check who is knocking and report activity (its token allows no more).

It ends when the sandbox's first process does (its PID and start time are checked).

    python -I -S netbridge.py --pid PID --started T --port PORT --hub HUB   (stdlib only)
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import queue
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

CLONE_NEWNET = 0x40000000


def start_time(pid: int) -> str | None:
    """When process `pid` started (clock ticks after boot, /proc/<pid>/stat field 22)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _enter_netns(pid: int) -> None:
    """Move the calling thread into the network namespace of process `pid`."""
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"setns: {os.strerror(error)}")
    finally:
        os.close(fd)


class Sandboxed(threading.Thread):
    """A thread inside the sandbox's network namespace that makes sockets there for others
    (a socket keeps the namespace it was made in, whichever thread uses it)."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid = pid
        self.requests: queue.Queue[tuple[Callable[[], object], queue.Queue]] = queue.Queue()
        self.ready = threading.Event()
        self.failed: BaseException | None = None

    def run(self) -> None:
        try:
            _enter_netns(self.pid)
        except OSError as exc:
            self.failed = exc
            return
        finally:
            self.ready.set()
        while True:
            make, answer = self.requests.get()
            try:
                answer.put(make())
            except OSError as exc:
                answer.put(exc)

    def call(self, make: Callable[[], object]) -> object:
        answer: queue.Queue = queue.Queue()
        self.requests.put((make, answer))
        result = answer.get()
        if isinstance(result, OSError):
            raise result
        return result


def _listener(port: int) -> socket.socket:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(64)
    return server


def _connector(port: int) -> Callable[[], socket.socket]:
    return lambda: socket.create_connection(("127.0.0.1", port), timeout=10)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    for end in (sink, source):
        with contextlib.suppress(OSError):
            end.shutdown(socket.SHUT_RDWR)


def _serve(server: socket.socket, connect: Callable[[], socket.socket]) -> None:
    """Accept on `server`; join each connection to a new one made by `connect`."""
    while True:
        client, _ = server.accept()
        try:
            upstream = connect()
            upstream.settimeout(None)
        except OSError:
            client.close()  # the other end is not listening (yet): the caller retries
            continue
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pump, args=(a, b), daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dossierhub.netbridge")
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--started", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--hub", type=int, required=True)
    args = parser.parse_args(argv)
    if start_time(args.pid) != args.started:
        print("netbridge: the sandbox is gone", file=sys.stderr)
        return 1
    inside = Sandboxed(args.pid)
    inside.start()
    inside.ready.wait()
    if inside.failed is not None:
        print(f"netbridge: {inside.failed}", file=sys.stderr)
        return 1
    outside = _listener(args.port)  # this thread stays in the machine's namespace
    hub_inside = inside.call(lambda: _listener(args.hub))
    assert isinstance(hub_inside, socket.socket)
    to_server = _connector(args.port)
    threading.Thread(
        target=_serve,
        args=(outside, lambda: inside.call(to_server)),
        daemon=True,
    ).start()
    threading.Thread(target=_serve, args=(hub_inside, _connector(args.hub)), daemon=True).start()
    print(f"netbridge: 127.0.0.1:{args.port} -> sandbox, sandbox -> hub :{args.hub}", flush=True)
    while start_time(args.pid) == args.started:
        time.sleep(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
