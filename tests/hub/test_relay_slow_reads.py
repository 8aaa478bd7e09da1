"""The workspace bridge's limits on the client's reading (netbridge.py, issue 16, red team C):
a client that asks for a large answer and never reads it does not hold its connection for
good, nor, with no room left for a 408, the thread that cuts every slow connection.

Anyone who reaches the hub's proxy may fetch a workspace's static bundles without logging in
(`static/lab/jlab_core.*.js`, 2.5 MB), and the proxy passes pipelined requests on to the
bridge in parallel: measured on the session hub, one connection with ten requests for it that
read nothing held ten of the bridge's connections, each with 2.2 MB it could not send. The
deadlines covered only the client's sending.

netbridge's own connection class, in this process, between socket pairs whose client end
reads nothing: milliseconds, and a fraction of a second of the send deadline."""

from __future__ import annotations

import argparse
import contextlib
import socket
import threading
import time

import pytest

from dossierhub.workspaces import netbridge

SEND = 0.3  # a send that moves nothing for this long ends the connection (60 s in use)


@pytest.fixture
def watch(tmp_path) -> netbridge.Watch:
    args = argparse.Namespace(
        home=str(tmp_path),
        dossier="armoede",
        hub_api="http://127.0.0.1:9/hub/api",  # asked only for kernel websockets: none here
        code="hash",
        auth_cache_seconds=5.0,
    )
    return netbridge._recording(args)[1]


def test_a_client_that_never_reads_its_answer_gives_its_connection_back(
    watch: netbridge.Watch, monkeypatch
) -> None:
    """The client asked for a large answer and reads none of it: the bridge's send to it
    stands still. It ends after SEND_SECONDS and the slot is given back (the code before
    waited for good: INBOUND_LIMIT such clients locked the team out)."""
    monkeypatch.setattr(netbridge, "SEND_SECONDS", SEND, raising=False)
    client, a = socket.socketpair()
    server, b = socket.socketpair()
    given_back = threading.Event()
    netbridge._Watched(a, b, given_back.set, watch).start()
    try:
        client.sendall(b"GET /static/lab/jlab_core.js HTTP/1.1\r\nHost: w\r\n\r\n")
        server.recv(65536)  # the request reached the workspace
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: 8388608\r\n\r\n"
        server.settimeout(10 * SEND)
        with contextlib.suppress(OSError):  # the bridge stops reading once it cannot send
            server.sendall(answer + b"x" * 8388608)
        assert given_back.wait(10 * SEND), "the connection of a client that reads nothing is held"
    finally:
        for end in (client, server):
            end.close()


def test_a_client_with_no_room_for_its_408_does_not_hold_the_deadlines(
    watch: netbridge.Watch,
) -> None:
    """Deadlines cuts every slow connection from one thread, with a 408 when a request was
    started and not answered. A client that left an earlier answer unread (its buffers full)
    and then stalled in its next request's head made that 408 wait: the thread stood still
    (for good, or SEND_SECONDS each), and no other slow connection was cut meanwhile."""
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
