"""The workspace bridge's limits on the client's reading (netbridge.py, issue 16, red team C):
a client that asks for a large answer and never reads it does not hold a connection for good,
nor, with no room left for a 408, the thread that cuts every slow connection.

Anyone who reaches the hub's proxy may fetch a workspace's static bundles without logging in
(`static/lab/jlab_core.*.js`, 2.5 MB, measured on the session hub). The deadlines covered
only the client's sending: a client that asked for such a bundle INBOUND_LIMIT times and read
nothing held every slot of the bridge once the sockets' buffers were full, and the team was
locked out of its workspace.

A real recording bridge (netbridge's own accept loop, connection class and deadlines, in this
process with a small limit and short deadlines) in front of a real tornado server whose answer
is larger than the sockets between them buffer. About two seconds."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web

from dossierhub.workspaces import netbridge

LIMIT = 4
DEADLINE = 1.0
SEND = 0.3  # a send that moves nothing for this long ends the connection
BIG = 8 * 1024 * 1024  # more than the sockets between bridge and client buffer on loopback


class Big(tornado.web.RequestHandler):
    """As a workspace's static bundle, served to anyone (no login needed for /static/)."""

    async def get(self) -> None:
        chunk = b"x" * (1024 * 1024)
        self.set_header("Content-Length", str(BIG))
        for _ in range(BIG // len(chunk)):
            self.write(chunk)
            await self.flush()


class Status(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write("ok")


@pytest.fixture(scope="module")
def upstream() -> Iterator[int]:
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def serve() -> None:
        app = tornado.web.Application([("/static/big.js", Big), ("/api/status", Status)])
        server = tornado.httpserver.HTTPServer(app)
        server.add_sockets(sockets)
        await stop.wait()
        server.stop()
        await server.close_all_connections()  # the big answers still being written

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    yield sockets[0].getsockname()[1]
    loop.call_soon_threadsafe(stop.set)
    thread.join(10)


@pytest.fixture
def bridge(tmp_path, monkeypatch, upstream: int) -> Iterator[int]:
    for name in ("HEAD_SECONDS", "IDLE_SECONDS", "BODY_GRACE_SECONDS"):
        monkeypatch.setattr(netbridge, name, DEADLINE)
    # raising=False: the code before had no SEND_SECONDS (the test then failed, as it should)
    monkeypatch.setattr(netbridge, "SEND_SECONDS", SEND, raising=False)
    args = argparse.Namespace(
        home=str(tmp_path),
        dossier="armoede",
        hub_api="http://127.0.0.1:9/hub/api",
        code="hash",
        auth_cache_seconds=5.0,
    )
    _, watch = netbridge._recording(args)
    listener = netbridge._listener(0)

    def join(a: socket.socket, b: socket.socket, release) -> netbridge._Joined:
        return netbridge._Watched(a, b, release, watch)

    serving = threading.Thread(
        target=netbridge._serve,
        args=(listener, netbridge._connector(upstream), LIMIT, None, join),
        daemon=True,
    )
    serving.start()
    yield listener.getsockname()[1]
    listener.shutdown(socket.SHUT_RDWR)
    listener.close()
    serving.join(5)
    with contextlib.suppress(AttributeError):
        watch.deadlines.stopped.set()


def test_clients_that_never_read_their_answer_do_not_lock_a_person_out(bridge: int) -> None:
    held = []
    for _ in range(LIMIT):
        reader = socket.socket()
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        reader.connect(("127.0.0.1", bridge))
        reader.sendall(b"GET /static/big.js HTTP/1.1\r\nHost: w\r\n\r\n")  # whole, at once
        held.append(reader)
    status = f"http://127.0.0.1:{bridge}/api/status"
    try:
        got = None
        deadline = time.monotonic() + 6 * DEADLINE
        while got is None and time.monotonic() < deadline:  # as a person tries again
            with contextlib.suppress(httpx.TransportError):
                got = httpx.get(status, timeout=DEADLINE).text
        assert got == "ok", "the clients that read nothing still hold every connection"
    finally:
        for reader in held:
            reader.close()


def test_a_client_with_no_room_for_its_408_does_not_hold_the_deadlines(tmp_path) -> None:
    """Deadlines cuts every slow connection from one thread, with a 408 when a request was
    started and not answered. A client that left an earlier answer unread (its buffers full)
    and then stalled in its next request's head made that 408 wait: the thread stood still
    (for good, or SEND_SECONDS each), and no other slow connection was cut meanwhile."""
    args = argparse.Namespace(
        home=str(tmp_path),
        dossier="armoede",
        hub_api="http://127.0.0.1:9/hub/api",
        code="hash",
        auth_cache_seconds=5.0,
    )
    _, watch = netbridge._recording(args)
    client, a = socket.socketpair()
    server, b = socket.socketpair()
    a.setblocking(False)
    with contextlib.suppress(BlockingIOError):  # the earlier answer, never read
        while True:
            a.send(b"x" * 65536)
    a.setblocking(True)
    slow = netbridge._Watched(a, b, lambda: None, watch)
    list(slow.exchange.client_events(b"GET /api/status HT"))  # a head started, then nothing
    cutting = threading.Thread(target=slow.cut, daemon=True)
    began = time.monotonic()
    cutting.start()
    cutting.join(5)
    try:
        assert not cutting.is_alive(), "cutting one slow client held the deadlines' thread"
        assert time.monotonic() - began < 2
    finally:
        for end in (client, a, server, b):
            end.close()
