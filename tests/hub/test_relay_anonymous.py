"""The workspace bridge's smaller limit for requests without a login (netbridge.py, issue 16,
red team C): strangers cannot take the connections the team's people need.

A workspace's static bundles need no login, and the hub's proxy passes pipelined requests on
to the bridge in parallel: one proxy connection with ten requests for the 2.5 MB bundle, read
by nobody, held ten of the bridge's connections for a minute; about 26 such held all 256.

A real recording bridge (netbridge's own accept loop, connection class and Watch, in this
process, with a small connection limit and a smaller one for strangers) in front of a real
HTTP server, and a stand-in hub answering `GET /hub/api/user` on 127.0.0.1 for the tokens it
knows. A second or so."""

from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from typing import ClassVar

import pytest
import tornado.web

from dossierhub.workspaces import netbridge

LIMIT = 12  # the bridge's connections (INBOUND_LIMIT, 256 in use)
ANONYMOUS = 4  # of them, without a login (ANONYMOUS_LIMIT, 32 in use)
BIG = b"x" * (8 * 1024 * 1024)  # more than every buffer between the bridge and a client
COOKIE = "jupyterhub-user-dossier-armoede"
# the tokens the stand-in hub knows: a person's, and the workspace's own (not a person)
TOKENS = {"person-token": "a.jansen", "workspace-token": "dossier-armoede"}
SLOW = 2.0  # the stand-in hub's answer for "slow-token" takes this long


class Hub(http.server.BaseHTTPRequestHandler):
    """The hub's `GET /hub/api/user`: the model of the token's owner, or 403."""

    asked: ClassVar[list[str]] = []  # every token asked about, in order

    def do_GET(self) -> None:
        token = self.headers.get("Authorization", "").removeprefix("token ")
        Hub.asked.append(token)
        if token == "slow-token":
            time.sleep(SLOW)
        if self.path != "/hub/api/user" or token not in TOKENS:
            self.send_error(403)
            return
        body = json.dumps({"kind": "user", "name": TOKENS[token]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class Workspace(http.server.BaseHTTPRequestHandler):
    """The workspace's server: the static bundle (8 MiB), or a small lab page."""

    protocol_version = "HTTP/1.1"  # kept alive, as jupyter_server's

    def do_GET(self) -> None:
        body = BIG if self.path.startswith("/static/") else b"the lab page"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(OSError):  # the bridge closed: its client is gone
            self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class Quiet(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client gone mid-answer


@contextlib.contextmanager
def serving(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[int]:
    server = Quiet(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def bridge(tmp_path, monkeypatch) -> Iterator[tuple[int, netbridge.Watch]]:
    """A recording bridge, LIMIT connections at most, ANONYMOUS without a login; its port."""
    monkeypatch.setattr(netbridge, "ANONYMOUS_LIMIT", ANONYMOUS, raising=False)
    Hub.asked = []
    with serving(Hub) as hub, serving(Workspace) as upstream:
        args = argparse.Namespace(
            home=str(tmp_path),
            dossier="armoede",
            hub_api=f"http://127.0.0.1:{hub}/hub/api",
            code="hash",
            auth_cache_seconds=300.0,
        )
        _, watch = netbridge._recording(args)
        listener = netbridge._listener(0)

        def join(a: socket.socket, b: socket.socket, release) -> netbridge._Joined:
            return netbridge._Watched(a, b, release, watch)

        accepting = threading.Thread(
            target=netbridge._serve,
            args=(listener, netbridge._connector(upstream), LIMIT, None, join),
            daemon=True,
        )
        accepting.start()
        try:
            yield listener.getsockname()[1], watch
        finally:
            listener.shutdown(socket.SHUT_RDWR)
            listener.close()
            accepting.join(5)
            watch.deadlines.stopped.set()


def stranger(port: int, path: str, headers: str = "") -> tuple[socket.socket, bytes]:
    """A connection that asks for `path` and reads nothing of the answer (its receive buffer
    made small); the answer's status line, peeked at (b"" when closed without a word)."""
    held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    held.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    held.connect(("127.0.0.1", port))
    held.sendall(f"GET {path} HTTP/1.1\r\nHost: w\r\n{headers}\r\n".encode())
    select.select([held], [], [], 10)
    try:
        status = held.recv(12, socket.MSG_PEEK)
    except OSError:
        status = b""
    return held, status


def ask(port: int, headers: str = "", path: str = "/user/dossier-armoede/lab") -> bytes:
    """A request that reads its whole answer (b"" when the bridge closed without a word)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as asking:
        asking.sendall(
            f"GET {path} HTTP/1.1\r\nHost: w\r\nConnection: close\r\n{headers}\r\n".encode()
        )
        got = b""
        with contextlib.suppress(OSError):
            while data := asking.recv(65536):
                got += data
    return got


def cookie(token: str) -> str:
    signed = tornado.web.create_signed_value("the hub's secret", COOKIE, token).decode()
    return f"Cookie: {COOKIE}={signed}\r\n"


def test_strangers_who_never_read_a_large_answer_leave_a_persons_request_room(bridge) -> None:
    """The attack for real: as many connections without a login as the bridge takes, each
    asking for the static bundle and reading none of it. Before, they held every connection
    and a person's request was closed unanswered; now only ANONYMOUS of them are served, the
    rest get 503 at once, and the person's browser (the workspace cookie) gets its page."""
    port, _ = bridge
    held = [stranger(port, "/user/dossier-armoede/static/lab/jlab_core.js") for _ in range(LIMIT)]
    try:
        statuses = [status for _, status in held]
        page = ask(port, cookie("person-token"))
        assert page.startswith(b"HTTP/1.1 200") and page.endswith(b"the lab page"), page[:200]
        assert statuses.count(b"HTTP/1.1 200") == ANONYMOUS, statuses
        assert statuses.count(b"HTTP/1.1 503") == LIMIT - ANONYMOUS, statuses
    finally:
        for connection, _ in held:
            connection.close()


def test_a_request_without_a_login_past_the_limit_gets_503_at_once(bridge) -> None:
    """With every place for strangers taken (kept-alive connections): a request with no
    credential, with a token the hub does not know, with the workspace's own token (not a
    person's) or with both a person's and a bad one gets 503 with Retry-After, at once and
    closed; a person's token gets its answer, asked of the hub once. Places come back."""
    port, watch = bridge
    idle = [stranger(port, "/user/dossier-armoede/lab") for _ in range(ANONYMOUS)]
    try:
        assert all(status == b"HTTP/1.1 200" for _, status in idle)
        for headers in (
            "",
            "Authorization: token not-a-token\r\n",
            "Authorization: token workspace-token\r\n",
            cookie("bad") + "Authorization: token person-token\r\n",
        ):
            began = time.monotonic()
            refused = ask(port, headers)
            assert time.monotonic() - began < 2
            head = refused.split(b"\r\n\r\n")[0]
            assert head.startswith(b"HTTP/1.1 503"), (headers, refused[:200])
            assert b"Retry-After: 30" in head and b"Connection: close" in head
            assert b"log in" in refused
        for _ in range(2):
            page = ask(port, "Authorization: token person-token\r\n")
            assert page.startswith(b"HTTP/1.1 200") and page.endswith(b"the lab page")
        assert Hub.asked.count("person-token") == 1  # then from the cache
        # a hub that cannot answer: the token counts as nobody's (fail closed)
        watch.people.url = "http://127.0.0.1:9/hub/api/user"
        assert ask(port, "Authorization: token a-new-token\r\n").startswith(b"HTTP/1.1 503")
    finally:
        for connection, _ in idle:
            connection.close()
    deadline = time.monotonic() + 5  # the bridge sees the closes and gives the places back
    while (page := ask(port)).startswith(b"HTTP/1.1 503") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert page.startswith(b"HTTP/1.1 200"), page[:200]


def test_a_slow_hub_holds_no_other_connection(bridge, monkeypatch) -> None:
    """While the hub takes its time to say whose a token is, the connections waiting for it
    wait alone: the deadlines still cut the others' half heads on time (the thread that cuts
    them waited on each connection's lock, which a connection holds while it asks)."""
    port, watch = bridge
    watch.deadlines.head, watch.deadlines.tick = 0.2, 0.05
    asking = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    try:
        for connection in asking:
            connection.sendall(
                b"GET /lab HTTP/1.1\r\nHost: w\r\nAuthorization: token slow-token\r\n\r\n"
            )
        began = time.monotonic()
        for connection in slow:
            connection.sendall(b"GET /lab HTTP/1.1\r\nHost: w\r\n")  # never ends
        for connection in slow:
            connection.settimeout(SLOW)
            assert connection.recv(4096).startswith(b"HTTP/1.1 408")
        assert time.monotonic() - began < SLOW - 1, "a slow hub held the deadlines"
    finally:
        for connection in asking + slow:
            connection.close()
