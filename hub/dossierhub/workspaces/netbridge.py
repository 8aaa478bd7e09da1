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
import resource
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

CLONE_NEWNET = 0x40000000
INBOUND_LIMIT = 256  # browsers' connections through the proxy (websockets stay open)
HUB_LIMIT = 32  # the server's calls to the hub's API
HUB_IDLE_SECONDS = 300


def start_time(pid: int) -> str | None:
    """When process `pid` started (clock ticks after boot, /proc/<pid>/stat field 22)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _enter_netns(fd: int) -> None:
    """Move the calling thread into the network namespace `fd` refers to."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"setns: {os.strerror(error)}")


class Sandboxed(threading.Thread):
    """A thread inside the sandbox's network namespace that makes sockets there for others
    (a socket keeps the namespace it was made in, whichever thread uses it)."""

    def __init__(self, netns: int):
        super().__init__(daemon=True)
        self.netns = netns
        self.requests: queue.Queue[tuple[Callable[[], object], queue.Queue]] = queue.Queue()
        self.ready = threading.Event()
        self.failed: BaseException | None = None

    def run(self) -> None:
        try:
            _enter_netns(self.netns)
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


class _Joined:
    """Two connections pumped both ways; when both directions end, both are closed and the
    slot is given back."""

    def __init__(self, a: socket.socket, b: socket.socket, release: Callable[[], None]):
        self.a, self.b, self.release = a, b, release
        self.lock = threading.Lock()
        self.running = 2

    def start(self) -> None:
        for source, sink in ((self.a, self.b), (self.b, self.a)):
            threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for end in (sink, source):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
        with self.lock:
            self.running -= 1
            last = self.running == 0
        if last:
            self.a.close()
            self.b.close()
            self.release()


def _serve(
    server: socket.socket, connect: Callable[[], socket.socket], limit: int, idle: float | None
) -> None:
    """Accept on `server`; join each connection to a new one made by `connect`. At most
    `limit` connections at once (a workspace cannot make root run threads or hold the hub's
    descriptors without end); a connection quiet for `idle` seconds is closed."""
    slots = threading.BoundedSemaphore(limit)
    while True:
        try:
            client, _ = server.accept()
        except OSError:
            time.sleep(0.1)
            continue
        if not slots.acquire(blocking=False):
            client.close()
            continue
        try:
            upstream = connect()
        except OSError:
            client.close()  # the other end is not listening (yet): the caller retries
            slots.release()
            continue
        for end in (client, upstream):
            end.settimeout(idle)
        try:
            _Joined(client, upstream, slots.release).start()
        except RuntimeError:  # no thread to be had: drop this one, keep serving
            client.close()
            upstream.close()
            slots.release()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dossierhub.workspaces.netbridge")
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--started", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--hub", type=int, required=True)
    args = parser.parse_args(argv)
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
    threading.stack_size(256 * 1024)
    # the namespace is held first, then its process checked: a PID reused in between is caught
    netns = os.open(f"/proc/{args.pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    if start_time(args.pid) != args.started:
        print("netbridge: the sandbox is gone", file=sys.stderr)
        return 1
    inside = Sandboxed(netns)
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
        args=(outside, lambda: inside.call(to_server), INBOUND_LIMIT, None),
        daemon=True,
    ).start()
    threading.Thread(
        target=_serve,
        args=(hub_inside, _connector(args.hub), HUB_LIMIT, HUB_IDLE_SECONDS),
        daemon=True,
    ).start()
    print(f"netbridge: 127.0.0.1:{args.port} -> sandbox, sandbox -> hub :{args.hub}", flush=True)
    while start_time(args.pid) == args.started:
        time.sleep(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
