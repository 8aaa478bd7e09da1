"""The recording bridge reads the workspace's frames for outcomes after they have gone on, in a
batch (netbridge._Watched.read_replies, issue 16): read one by one as they passed, that reading
cost the bridge's thread more than passing them on (bench_attribution.py's cpu_per_execution).

A real _Watched connection (both its threads, netbridge's Recorder and Watch) between two
socket pairs: this test is the browser on one and the workspace's server on the other, the
kernel websocket already open. Under a second."""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from websockets.frames import Frame, Opcode

from dossierhub.workspaces import execwatch, netbridge

from kernelclient import execute_request, frame

KERNEL = "0b6a4f1e-7d0c-4c55-9f53-2a1d3c4b5e6f"


@dataclass
class Ends:
    browser: socket.socket
    server: socket.socket
    connection: netbridge._Watched
    recorder: netbridge.Recorder
    batches: list[list[dict[str, Any]]] = field(default_factory=list)

    def events(self) -> list[dict[str, Any]]:
        return [event for batch in self.batches for event in batch]

    def run(self, code: str) -> str:
        """Send an execute_request as a browser does; the server receives it. Its msg_id."""
        request = execute_request(code, claimed="someone-else")
        sent = client_frame(frame(request))
        self.browser.sendall(sent)
        assert receive(self.server, len(sent)) == sent  # passed on as it came
        return str(request["header"]["msg_id"])

    def reply(self, msg_id: str, status: str) -> bytes:
        """The server's execute_reply to `msg_id`; the browser receives it at once."""
        return self.send(server_frame(reply(msg_id, status)))

    def send(self, sent: bytes) -> bytes:
        """Bytes from the server: the browser receives them at once, unread by the bridge;
        returns once the bridge holds them to be read (it sends on before it keeps them)."""
        total = self.connection.queued + len(sent)
        self.server.sendall(sent)
        assert receive(self.browser, len(sent)) == sent
        deadline = time.monotonic() + 10
        while self.connection.queued < total and time.monotonic() < deadline:
            time.sleep(0.001)
        return sent


def client_frame(text: str | bytes) -> bytes:
    payload = text.encode() if isinstance(text, str) else text
    return Frame(Opcode.TEXT, payload).serialize(mask=True)


def server_frame(message: dict[str, Any]) -> bytes:
    return Frame(Opcode.TEXT, json.dumps(message).encode()).serialize(mask=False)


def reply(msg_id: str, status: str) -> dict[str, Any]:
    return {
        "header": {"msg_id": "r-" + msg_id, "msg_type": "execute_reply", "session": "k"},
        "msg_type": "execute_reply",
        "parent_header": {"msg_id": msg_id, "msg_type": "execute_request"},
        "metadata": {},
        "content": {"status": status, "execution_count": 1},
        "channel": "shell",
        "buffers": [],
    }


def output(size: int) -> dict[str, Any]:
    """A stream message of about `size` bytes (what a kernel's print sends)."""
    return {
        "header": {"msg_id": "o", "msg_type": "stream", "session": "k"},
        "msg_type": "stream",
        "parent_header": {"msg_id": "x"},
        "metadata": {},
        "content": {"name": "stdout", "text": "y" * size},
        "channel": "iopub",
        "buffers": [],
    }


def receive(sock: socket.socket, size: int) -> bytes:
    data = b""
    sock.settimeout(10)
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def recording() -> tuple[netbridge.Watch, list[list[dict[str, Any]]]]:
    """A bridge's Watch and Recorder; the batches it writes."""
    batches: list[list[dict[str, Any]]] = []
    recorder = netbridge.Recorder(lambda batch, events: batches.append(list(events)), "relay")
    args = argparse.Namespace(dossier="armoede", code="hash")
    nobody = netbridge.People("http://127.0.0.1:9/hub/api", 300.0, "dossier-")  # never asked
    return netbridge.Watch(args, recorder, nobody), batches


@contextlib.contextmanager
def kernel_websocket(
    watch: netbridge.Watch, batches: list[list[dict[str, Any]]], person: str = "a.jansen"
) -> Iterator[Ends]:
    """One connection of the bridge, its kernel websocket open for `person`."""
    browser, a = socket.socketpair()
    b, server = socket.socketpair()
    released = threading.Event()
    connection = netbridge._Watched(a, b, released.set, watch)
    # the kernel websocket as the switch opens it (the HTTP before it is other tests' part)
    connection.socket = execwatch.KernelSocket(KERNEL, person, None, code_full=False)
    watch.replying.add(connection)
    connection.start()
    try:
        yield Ends(browser, server, connection, watch.recorder, batches)
    finally:
        browser.close()
        server.close()
        released.wait(10)


@pytest.fixture
def ends() -> Iterator[Ends]:
    with kernel_websocket(*recording()) as opened:
        yield opened


def test_an_outcome_joins_its_execution_in_the_batch(ends: Ends) -> None:
    msg_id = ends.run("1 / 0")
    ends.reply(msg_id, "error")
    ends.recorder.flush()  # the recorder's thread does so every FLUSH_SECONDS
    (execution,) = ends.events()
    assert (execution["person"], execution["msg_id"]) == ("a.jansen", msg_id)
    assert execution["outcome"] == "error"


def test_an_outcome_after_its_batch_is_an_event_timed_when_the_reply_passed(ends: Ends) -> None:
    msg_id = ends.run("import time; time.sleep(10)")
    ends.recorder.flush()  # the execution's batch leaves before the kernel answers
    ends.reply(msg_id, "ok")
    passed = time.time()
    time.sleep(0.3)
    ends.recorder.flush()
    first, outcome = ends.events()
    assert first["outcome"] is None
    assert (outcome["event"], outcome["msg_id"], outcome["outcome"]) == ("outcome", msg_id, "ok")
    when = netbridge.datetime.fromisoformat(outcome["at"]).timestamp()
    assert abs(when - passed) < 0.2  # not when it was read, 0.3 s later


def test_replies_waiting_when_the_connection_ends_are_read(ends: Ends) -> None:
    ids = [ends.run("pass") for _ in range(3)]
    for msg_id in ids:
        ends.reply(msg_id, "ok")
    ends.browser.close()  # the browser leaves before any batch: the connection's end reads
    deadline = time.monotonic() + 10
    while not ends.batches and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [(e["msg_id"], e["outcome"]) for e in ends.events()] == [(i, "ok") for i in ids]


def test_a_flood_of_output_waits_in_bounded_memory(ends: Ends) -> None:
    """A kernel's output, many small frames and some large: what waits to be read for
    outcomes stays under SKIM_LATER bytes and SKIM_CHUNKS chunks, and a reply among it is
    still read."""
    msg_id = ends.run("while True: print('y')")
    most = 0
    for size in [10] * 2000 + [20_000] * 20:
        ends.send(server_frame(output(size)))
        waiting = ends.connection.queued - ends.connection.skimmed
        most = max(most, waiting)
        assert len(ends.connection.unread) <= netbridge.SKIM_CHUNKS
    assert 0 < most <= netbridge.SKIM_LATER
    ends.reply(msg_id, "aborted")
    ends.recorder.flush()
    assert [e["outcome"] for e in ends.events()] == ["aborted"]


def test_a_masked_frame_from_the_workspace_ends_the_connection(ends: Ends) -> None:
    """A workspace's frames out of step (a masked one: never a server's) make outcomes
    unreadable: the connection ends when they are read, in the batch."""
    ends.run("pass")
    masked = Frame(Opcode.TEXT, json.dumps(reply("x", "ok")).encode()).serialize(mask=True)
    ends.send(masked)  # passed on before it was read
    ends.recorder.flush()
    ends.browser.settimeout(10)
    assert ends.browser.recv(100) == b""  # closed


def test_a_reading_that_fails_ends_its_connection_not_the_recorder(ends: Ends, monkeypatch) -> None:
    """Read in the recorder's batch, an unexpected error (a MemoryError) must not end the
    recorder's thread: every later execution would wait unspooled, then be refused."""
    msg_id = ends.run("pass")

    def fails(data: bytes) -> list[tuple[str, str]]:
        raise MemoryError

    monkeypatch.setattr(ends.connection.socket, "from_server", fails)
    ends.reply(msg_id, "ok")
    ends.recorder.flush()  # does not raise
    assert [e["msg_id"] for e in ends.events()] == [msg_id]
    ends.browser.settimeout(10)
    assert ends.browser.recv(100) == b""  # that connection ended


def test_the_first_reply_to_pass_is_the_outcome_whichever_connection_carried_it() -> None:
    """A kernel's messages reach every connection to it. a.jansen's real reply (error) passes
    first on her connection, a forged `ok` for her request later on b.devries's: read in one
    batch, hers is the outcome, as when each was read as it passed. Ten times: the order the
    batch visits connections in changes from one set of connections to the next."""
    for _ in range(10):
        watch, batches = recording()
        with (
            kernel_websocket(watch, batches, "a.jansen") as hers,
            kernel_websocket(watch, batches, "b.devries") as his,
        ):
            msg_id = hers.run("1 / 0")
            hers.reply(msg_id, "error")
            his.reply(msg_id, "ok")
            watch.recorder.flush()
            (execution,) = hers.events()
            assert (execution["person"], execution["outcome"]) == ("a.jansen", "error")


def test_a_reading_that_fails_at_the_end_still_writes_and_lets_go(ends: Ends, monkeypatch) -> None:
    """The same error when the connection's end reads what waits: its batch is still written
    and the connection is no longer read (it stayed in the bridge, read at every batch,
    holding its buffers: red team E)."""
    msg_id = ends.run("pass")
    monkeypatch.setattr(ends.connection.socket, "from_server", lambda data: 1 / 0)
    ends.reply(msg_id, "ok")
    ends.browser.close()
    deadline = time.monotonic() + 10
    while ends.connection in ends.connection.watch.replying and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ends.connection not in ends.connection.watch.replying
    assert [e["msg_id"] for e in ends.events()] == [msg_id]
