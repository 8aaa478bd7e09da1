"""Who ran what, on the session hub's running armoede workspace (issue 16): the workspace's
bridge records each execution under the person whose credential opened the websocket, never
the name a message claims, on either channel and in either wire format, and keeps a
workspace's own token off kernel channels. Read as root from the spool and the audit log
(the service takes batches from the one into the other)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection

from dossierhub.state.audit import AuditLog
from dossierhub.state.executions import ACTION

import kernelclient
from e2e_hub import Hub
from kernelclient import V1, frame, message, run

ARMOEDE = "dossier-armoede"


@pytest.fixture(scope="module")
def tokens(hub: Hub) -> dict[str, str]:
    made = {name: hub.token(name) for name in ("a.jansen", "b.devries")}
    hub.ensure_running(ARMOEDE, made["a.jansen"])
    return made


@pytest.fixture(scope="module")
def kernel(hub: Hub, tokens: dict[str, str]) -> Iterator[str]:
    """One kernel of the running workspace, started by a.jansen, for every test here."""
    base = f"{hub.url}user/{ARMOEDE}/api/kernels"
    headers = {"Authorization": f"token {tokens['a.jansen']}"}
    started = httpx.post(base, headers=headers, json={"name": "dossier"}, timeout=60)
    assert started.status_code == 201, started.text
    kernel_id = started.json()["id"]
    yield kernel_id
    httpx.delete(f"{base}/{kernel_id}", headers=headers, timeout=60)


def channels(hub: Hub, kernel_id: str, token: str, *, v1: bool = False) -> ClientConnection:
    """The kernel's websocket in armoede's workspace, opened with `token`."""
    return kernelclient.channels(hub.url, ARMOEDE, kernel_id, token, v1=v1)


def events_of(hub: Hub, kernel_id: str) -> list[dict[str, Any]]:
    """The events about a kernel, spooled or already in the audit log, oldest first."""
    events: list[dict[str, Any]] = []
    for record in AuditLog(hub.home).read():
        if record.get("action") == ACTION:
            events += record["details"]["events"]
    for path in sorted(hub.home.execution_spool_dir("armoede").glob("*.json")):
        with contextlib.suppress(OSError, ValueError):  # taken in by the service meanwhile
            events += json.loads(path.read_text())["events"]
    return [event for event in events if event.get("kernel") == kernel_id]


def executions(hub: Hub, kernel_id: str, msg_ids: set[str]) -> dict[str, dict[str, Any]]:
    """msg_id -> its execute event, the outcome joined, once all of `msg_ids` have one."""
    deadline = time.monotonic() + 10
    while True:
        found: dict[str, dict[str, Any]] = {}
        for event in events_of(hub, kernel_id):
            if event["event"] == "execute" and event["msg_id"] in msg_ids:
                found[event["msg_id"]] = {
                    "outcome": None,
                    **found.get(event["msg_id"], {}),
                    **{k: v for k, v in event.items() if k != "outcome"},
                }
                found[event["msg_id"]]["outcome"] = (
                    event.get("outcome") or found[event["msg_id"]]["outcome"]
                )
            elif event["event"] == "outcome" and event["msg_id"] in found:
                found[event["msg_id"]]["outcome"] = event["outcome"]
        done = set(found) == msg_ids and all(e["outcome"] for e in found.values())
        if done or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_executions_are_recorded_under_the_person_of_the_connection(
    hub: Hub, tokens: dict[str, str], kernel: str
) -> None:
    with channels(hub, kernel, tokens["a.jansen"]) as legacy:
        forged_legacy, _, status = run(legacy, "x = 1", claimed="b.devries")
        assert status == "ok"
        on_control, _, status = run(legacy, "y = 2", claimed="nobody", channel="control")
        assert status == "ok"
    with channels(hub, kernel, tokens["b.devries"], v1=True) as binary:
        assert binary.subprotocol == V1
        forged_v1, _, status = run(binary, "z = 3\nprint(z)", claimed="a.jansen")
        assert status == "ok"
    events = executions(hub, kernel, {forged_legacy, on_control, forged_v1})
    people = {msg_id: events[msg_id]["person"] for msg_id in events}
    assert people == {forged_legacy: "a.jansen", on_control: "a.jansen", forged_v1: "b.devries"}
    assert events[on_control]["channel"] == "control"
    assert events[forged_v1]["first_line"] == "z = 3"
    assert events[forged_v1]["cell_id"] == f"cell-{forged_v1}"
    assert all(events[m]["kernel"] == kernel and events[m]["outcome"] == "ok" for m in events)


def test_a_debugger_request_is_recorded_as_debug(
    hub: Hub, tokens: dict[str, str], kernel: str
) -> None:
    """ipykernel passes DAP commands it does not handle (evaluate, setVariable) to debugpy:
    code too. Recorded whether or not the debugger answers."""
    msg_id = uuid.uuid4().hex
    request = {
        "type": "request",
        "seq": 1,
        "command": "evaluate",
        "arguments": {"expression": "x + 1", "context": "repl"},
    }
    with channels(hub, kernel, tokens["b.devries"]) as socket:
        socket.send(
            frame(message("debug_request", request, claimed="nobody", msg_id=msg_id), "control")
        )
    deadline = time.monotonic() + 10
    while not (found := [e for e in events_of(hub, kernel) if e.get("msg_id") == msg_id]):
        assert time.monotonic() < deadline, "the debug request was not recorded"
        time.sleep(0.1)
    assert (found[0]["person"], found[0]["kind"]) == ("b.devries", "debug")
    assert (found[0]["channel"], found[0]["first_line"]) == ("control", "evaluate x + 1")


def test_the_workspace_token_from_a_kernel_opens_no_kernel_channel(
    hub: Hub, tokens: dict[str, str], kernel: str
) -> None:
    with channels(hub, kernel, tokens["a.jansen"]) as socket:
        code = "import os; print(os.environ['JUPYTERHUB_API_TOKEN'])"
        _, out, status = run(socket, code, claimed="a.jansen")
    assert status == "ok"
    stolen = out.strip()
    assert stolen and stolen != tokens["a.jansen"]
    with pytest.raises(InvalidStatus) as refused:
        channels(hub, kernel, stolen)
    assert refused.value.response.status_code == 403
    deadline = time.monotonic() + 10
    while not (refusals := [e for e in events_of(hub, kernel) if e["event"] == "refused"]):
        assert time.monotonic() < deadline, "no refusal recorded"
        time.sleep(0.1)
    assert refusals[-1]["person"] is None
    assert "person's own credential" in refusals[-1]["reason"]


def test_a_debug_request_spelled_with_escapes_is_recorded_whole(
    hub: Hub, tokens: dict[str, str], kernel: str
) -> None:
    """JSON lets a message type be spelled `debug\\u005frequest`: the kernel reads
    debug_request all the same. The bridge recorded it under the right person, but with its
    content unread: an `evaluate` of any expression left the first line "None" and the hash
    of `{}` (red team, issue 16)."""
    msg_id = uuid.uuid4().hex
    request = {
        "type": "request",
        "seq": 1,
        "command": "evaluate",
        "arguments": {"expression": "hidden_from_the_record()", "context": "repl"},
    }
    debug = message("debug_request", request, claimed="nobody", msg_id=msg_id)
    text = frame(debug, "control")
    assert isinstance(text, str)
    escaped = text.replace("debug_request", "debug\\u005frequest")
    assert b"debug_request" not in escaped.encode()
    with channels(hub, kernel, tokens["a.jansen"]) as socket:
        socket.send(escaped)
    deadline = time.monotonic() + 10
    while not (found := [e for e in events_of(hub, kernel) if e.get("msg_id") == msg_id]):
        assert time.monotonic() < deadline, "the debug request was not recorded"
        time.sleep(0.1)
    assert (found[0]["person"], found[0]["kind"]) == ("a.jansen", "debug")
    assert found[0]["first_line"] == "evaluate hidden_from_the_record()"
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert found[0]["code_sha256"] == hashlib.sha256(canonical.encode()).hexdigest()


def test_a_message_nested_too_deep_ends_its_connection(
    hub: Hub, tokens: dict[str, str], kernel: str
) -> None:
    """JSON nested past Python's recursion limit raised a RecursionError in the bridge's
    reader, which ended the reading thread but not the connection: it stayed open, nothing
    of it read or passed on, its slot never freed (256 such sockets and the team's workspace
    took no connection at all). Now it is refused like any unreadable message."""
    with channels(hub, kernel, tokens["b.devries"]) as socket:
        socket.send("[" * 5000 + "]" * 5000)
        deadline = time.monotonic() + 10
        with pytest.raises(ConnectionClosed) as closed:
            while time.monotonic() < deadline:
                socket.recv(timeout=deadline - time.monotonic())  # the kernel's broadcasts
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
    assert "could not be read" in closed.value.rcvd.reason


def stdin_reply(value: str) -> str | bytes:
    return frame(message("input_reply", {"value": value}, claimed="nobody"), "stdin")


def test_an_answer_to_input_is_recorded_under_the_person_who_sent_it(
    hub: Hub, tokens: dict[str, str], kernel: str
) -> None:
    asked = "answer = input('?')\nprint('answered:', answer)"
    by_other = len([e for e in events_of(hub, kernel) if e.get("person") == "b.devries"])
    with (
        channels(hub, kernel, tokens["a.jansen"]) as asker,
        channels(hub, kernel, tokens["b.devries"]) as other,
    ):
        request = kernelclient.execute_request(asked, claimed="a.jansen", allow_stdin=True)
        msg_id = request["header"]["msg_id"]
        asker.send(frame(request))
        while json.loads(asker.recv(timeout=30))["msg_type"] != "input_request":
            pass
        other.send(stdin_reply("typed on b.devries's socket"))
        answered = ""
        while "answered:" not in answered:
            got = json.loads(asker.recv(timeout=30))
            if got["msg_type"] == "stream" and got["parent_header"].get("msg_id") == msg_id:
                answered = got["content"]["text"]
        assert "typed on b.devries's socket" in answered  # the kernel took the other's answer
        marker, _, _ = run(other, "pass", claimed="b.devries")  # recorded after the answer
    seen = executions(hub, kernel, {marker})
    assert marker in seen
    now_by_other = [e for e in events_of(hub, kernel) if e.get("person") == "b.devries"]
    assert len(now_by_other) - by_other > 1, "b.devries's answer to input() was not recorded"
    answer = next(e for e in now_by_other if e.get("kind") == "input")
    assert (answer["channel"], answer["first_line"]) == ("stdin", "typed on b.devries's socket")


def test_a_colleague_s_message_id_is_not_taken_with_their_outcome(
    hub: Hub, tokens: dict[str, str], kernel: str
) -> None:
    """Every message of a kernel reaches every connection to it, so a.jansen sees the msg_id
    of each run of b.devries; an execute_reply names its request by msg_id alone. A run of
    a.jansen's own under b's msg_id, failing after the bridge had spooled both, made b's run
    that succeeded show as an error on the audit page and in the API (red team C, measured
    on the code before: b's `print('b ok')` listed with outcome "error"). Now such a request
    is refused before it reaches the kernel."""
    with (
        channels(hub, kernel, tokens["b.devries"]) as theirs,
        channels(hub, kernel, tokens["a.jansen"]) as mine,
    ):
        taken, _, status = run(theirs, "print('b ok')", claimed="b.devries")
        assert status == "ok"
        mine.send(frame(kernelclient.execute_request("reused = 1/0", msg_id=taken)))
        deadline = time.monotonic() + 10
        with pytest.raises(ConnectionClosed) as closed:
            while time.monotonic() < deadline:
                mine.recv(timeout=deadline - time.monotonic())  # b's broadcasts, then the close
        _, out, _ = run(theirs, "print('reused' in dir())", claimed="b.devries")
    assert closed.value.rcvd is not None and "already used" in closed.value.rcvd.reason
    assert out.strip() == "False"  # it never ran
    recorded = executions(hub, kernel, {taken})[taken]  # once spooled, its outcome joined
    assert (recorded["person"], recorded["outcome"]) == ("b.devries", "ok")
    events = [e for e in events_of(hub, kernel) if e.get("msg_id") == taken]
    # a.jansen's request is no execution of record
    assert [e["person"] for e in events if e["event"] == "execute"] == ["b.devries"]


def test_a_kernel_interrupted_over_its_websocket_is_recorded_under_the_person(
    hub: Hub, tokens: dict[str, str], kernel: str
) -> None:
    """The REST calls that start, restart, interrupt or shut down a kernel are recorded;
    the same asked over the kernel's websocket (a shutdown_request ends a colleague's kernel
    and its state) was not (red team C)."""

    def interrupts() -> list[dict[str, Any]]:
        return [e for e in events_of(hub, kernel) if e.get("action") == "interrupt"]

    before = len(interrupts())
    with channels(hub, kernel, tokens["b.devries"]) as socket:
        interrupt = message("interrupt_request", {}, claimed="a.jansen")
        socket.send(frame(interrupt, "control", v1=socket.subprotocol == V1))
        # its reply first: an execute already queued when the interrupt lands is aborted,
        # with no idle status to wait for
        while True:
            got = kernelclient.unframe(socket.recv(timeout=60), v1=socket.subprotocol == V1)
            ours = got["parent_header"].get("msg_id") == interrupt["header"]["msg_id"]
            if ours and got["msg_type"] == "interrupt_reply":
                break
        kernelclient.send_and_collect(socket, kernelclient.execute_request("1"))  # still alive
    deadline = time.monotonic() + 10
    while len(found := interrupts()) == before:
        assert time.monotonic() < deadline, "the interrupt was not recorded"
        time.sleep(0.1)
    assert (found[-1]["person"], found[-1]["action"]) == ("b.devries", "interrupt")


def test_frames_a_parser_could_read_otherwise_run_nothing_unrecorded(
    hub: Hub, tokens: dict[str, str], kernel: str
) -> None:
    """A person's frames are read by the bridge's own reader (red team D): an execution in
    fragments with a ping and a pong between them, and one sent right after a close frame in
    the same write. Whatever the kernel ran is recorded under the sender; what follows the
    close reaches no kernel."""
    from websockets.frames import CLOSE, CONT, PING, PONG, TEXT, Close, Frame

    def request(marker: str) -> tuple[str, bytes]:
        msg_id = uuid.uuid4().hex
        body = kernelclient.execute_request(f"{marker} = 1", msg_id=msg_id)
        return msg_id, str(frame(body)).encode()

    fragmented, first = request("redd_fragmented")
    after_close, second = request("redd_after_close")
    masked = [
        Frame(TEXT, first[:20], fin=False),
        Frame(PING, b"p"),
        Frame(CONT, first[20:40], fin=False),
        Frame(PONG, b""),
        Frame(CONT, first[40:]),
    ]
    with channels(hub, kernel, tokens["b.devries"]) as socket:
        socket.socket.sendall(b"".join(f.serialize(mask=True) for f in masked))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the fragmented execution's reply
            got = kernelclient.unframe(socket.recv(timeout=30))
            if got["parent_header"].get("msg_id") == fragmented and got["msg_type"] == (
                "execute_reply"
            ):
                break
        close = Frame(CLOSE, Close(1000, "").serialize()).serialize(mask=True)
        socket.socket.sendall(close + Frame(TEXT, second).serialize(mask=True))
        time.sleep(0.5)  # were it passed on, it would be in the kernel before the check
    with channels(hub, kernel, tokens["a.jansen"]) as check:
        _, ran, status = run(
            check, "print(sorted(k for k in globals() if k.startswith('redd_')))", claimed="x"
        )
    assert status == "ok"
    assert ran.strip() == "['redd_fragmented']"
    events = executions(hub, kernel, {fragmented})
    assert events[fragmented]["person"] == "b.devries"
    assert events[fragmented]["first_line"] == "redd_fragmented = 1"
    assert not [e for e in events_of(hub, kernel) if e.get("msg_id") == after_close]
