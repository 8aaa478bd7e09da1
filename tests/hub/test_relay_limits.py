"""The workspace bridge's limits (netbridge.py, issue 16): nobody can hold its inbound
connections with slow requests, while slow answers, websockets and honest bodies go through.

A real recording bridge (netbridge's own accept loop, connection class and deadlines, in this
process with a small connection limit and short deadlines) in front of a real tornado server,
the kind the workspace's jupyter_server is: it waits an hour for a head or a body, so only the
bridge's deadlines free a slot. A second or two."""

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
import tornado.websocket
from websockets.sync.client import connect

from dossierhub.workspaces import netbridge

LIMIT = 8
DEADLINE = 1.0  # the head's, the body's grace, and keep-alive's, all shortened alike
RATE = 1000  # a body's minimum bytes a second


class Status(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write("ok")

    def post(self) -> None:  # tornado reads the whole body before this is called
        self.write(f"got {len(self.request.body)}")


class Slow(tornado.web.RequestHandler):
    async def get(self) -> None:
        await asyncio.sleep(1.5 * DEADLINE)
        self.write("slow but answered")


class Echo(tornado.websocket.WebSocketHandler):
    def on_message(self, message: str | bytes) -> None:
        self.write_message(message, binary=isinstance(message, bytes))


@pytest.fixture(scope="module")
def upstream() -> Iterator[int]:
    """A tornado server on a free port (its defaults: an hour for a head or a body)."""
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def serve() -> None:
        app = tornado.web.Application([("/api/status", Status), ("/slow", Slow), ("/ws", Echo)])
        server = tornado.httpserver.HTTPServer(app)
        server.add_sockets(sockets)
        await stop.wait()
        server.stop()
        await server.close_all_connections()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    yield sockets[0].getsockname()[1]
    loop.call_soon_threadsafe(stop.set)
    thread.join(10)
    loop.close()


@pytest.fixture
def bridge(tmp_path, monkeypatch, upstream: int) -> Iterator[int]:
    """A recording bridge to `upstream`, LIMIT connections at most; its port."""
    for name in ("HEAD_SECONDS", "IDLE_SECONDS", "BODY_GRACE_SECONDS"):
        monkeypatch.setattr(netbridge, name, DEADLINE)
    monkeypatch.setattr(netbridge, "BODY_MIN_RATE", RATE)
    args = argparse.Namespace(
        home=str(tmp_path),
        dossier="armoede",
        hub_api="http://127.0.0.1:9/hub/api",  # asked only for kernel websockets: none here
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
    listener.shutdown(socket.SHUT_RDWR)  # wakes the accept loop, which then sees it closed
    listener.close()
    serving.join(5)
    with contextlib.suppress(AttributeError):  # the code before had no deadlines to stop
        watch.deadlines.stopped.set()


def trickle(held: socket.socket, head: bytes, piece: bytes) -> None:
    """Send `head`, then `piece` every 0.1 s (under the minimum rate) until cut off."""
    with contextlib.suppress(OSError):
        held.sendall(head)
        while True:
            time.sleep(0.1)
            held.sendall(piece)


def answer(held: socket.socket) -> bytes:
    """What the bridge said before closing `held` (b"" for a close without a word)."""
    held.settimeout(10)
    got = b""
    with contextlib.suppress(OSError):
        while data := held.recv(4096):
            got += data
    return got


def test_slow_heads_and_bodies_do_not_lock_a_person_out(bridge: int) -> None:
    status = f"http://127.0.0.1:{bridge}/api/status"
    body_head = b"POST /api/status HTTP/1.1\r\nHost: w\r\nContent-Length: 1000000\r\n\r\n"
    held = [socket.create_connection(("127.0.0.1", bridge)) for _ in range(LIMIT)]
    half_head, half_body = held[2:4], held[4:6]  # held[0:2] send nothing at all
    for slow in half_head:
        slow.sendall(b"GET /api/status HTTP/1.1\r\nHost: w\r\n")  # never ends
    for slow in half_body:
        slow.sendall(body_head + b"{")  # 999,999 bytes to go
    trickling = [
        threading.Thread(target=trickle, args=(held[6], b"GET /api/st", b"a"), daemon=True),
        threading.Thread(target=trickle, args=(held[7], body_head, b"x" * 10), daemon=True),
    ]
    for thread in trickling:
        thread.start()
    try:
        # the attack is real: every slot is taken, a person's request is turned away
        with pytest.raises(httpx.TransportError):
            httpx.get(status, headers={"Authorization": "token person"}, timeout=5).text  # noqa: B018
        deadline = time.monotonic() + 10
        while True:  # the person tries again, as a browser's user would
            with contextlib.suppress(httpx.TransportError):
                got = httpx.get(status, headers={"Authorization": "token person"}, timeout=5)
                break
            assert time.monotonic() < deadline, "slow requests held every slot of the bridge"
            time.sleep(0.2)
        assert (got.status_code, got.text) == (200, "ok")
        said = [answer(slow) for slow in held]
    finally:
        for slow in held:
            slow.close()
    assert said[0:2] == [b"", b""]  # nothing started: closed without a word
    for words in said[2:]:
        assert words.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), words


def test_slow_answers_websockets_and_honest_bodies_are_not_cut(bridge: int) -> None:
    body = b"y" * int(1.5 * DEADLINE * 2 * RATE)  # twice the minimum rate, past the grace

    def steady() -> Iterator[bytes]:
        for start in range(0, len(body), RATE // 5):
            time.sleep(0.1)
            yield body[start : start + RATE // 5]

    slow: list[httpx.Response] = []
    answering = threading.Thread(  # the server's turn has no deadline
        target=lambda: slow.append(httpx.get(f"http://127.0.0.1:{bridge}/slow", timeout=10))
    )
    with connect(f"ws://127.0.0.1:{bridge}/ws", open_timeout=10) as websocket:
        answering.start()
        sent = httpx.post(
            f"http://127.0.0.1:{bridge}/api/status",
            content=steady(),
            headers={"Content-Length": str(len(body))},
            timeout=10,
        )
        answering.join(10)
        # open all along, past every deadline: still carries messages
        websocket.send("still here")
        assert websocket.recv(timeout=5) == "still here"
    assert (sent.status_code, sent.text) == (200, f"got {len(body)}")
    assert [(got.status_code, got.text) for got in slow] == [(200, "slow but answered")]


def test_a_kept_alive_connection_is_closed_only_once_it_sends_nothing_more(bridge: int) -> None:
    request = b"GET /api/status HTTP/1.1\r\nHost: w\r\n\r\n"
    with socket.create_connection(("127.0.0.1", bridge)) as kept:
        kept.settimeout(10)
        for _ in range(3):  # each request within the deadline, all of them past it
            kept.sendall(request)
            said = b""
            while not said.endswith(b"ok"):  # this server's answers end so
                said += kept.recv(4096) or b"(closed)"
            assert said.startswith(b"HTTP/1.1 200 OK\r\n") and said.endswith(b"ok")
            time.sleep(0.45 * DEADLINE)
        kept.sendall(request)
        started = time.monotonic()
        said = answer(kept)
    assert said.startswith(b"HTTP/1.1 200 OK\r\n") and said.endswith(b"ok")
    assert DEADLINE <= time.monotonic() - started < DEADLINE + 2
