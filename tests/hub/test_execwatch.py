"""The relay's readers (workspaces/execwatch.py) on real bytes: frames made by websockets' own
serialisation, Jupyter messages by jupyter_server's own serialize functions, cookies by
tornado's own signing; the recorder's batching (netbridge.Recorder). Milliseconds."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import subprocess
import uuid

import h11
import pytest
from jupyter_server.services.kernels.connection.base import (
    deserialize_binary_message,
    deserialize_msg_from_ws_v1,
    serialize_binary_message,
    serialize_msg_to_ws_v1,
)
from tornado.web import create_signed_value
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import BINARY, CLOSE, CONT, PING, PONG, TEXT, Close, Frame
from websockets.protocol import Protocol, Side

from dossierhub.state.executions import batch_of
from dossierhub.workspaces import execwatch, netbridge
from dossierhub.workspaces.execwatch import V1, Exchange, KernelSocket, Refused

KERNEL = "0b6a4f1e-7d0c-4c55-9f53-2a1d3c4b5e6f"
SERVER = "dossier-armoede"


def message(msg_type: str, content: dict, *, username: str = "b.devries", **extra) -> dict:
    header = {
        "msg_id": uuid.uuid4().hex,
        "username": username,
        "session": "s",
        "msg_type": msg_type,
        "version": "5.3",
        "date": "2026-12-02T01:00:00Z",
    }
    return {
        "header": header,
        "parent_header": extra.pop("parent", {}),
        "metadata": extra.pop("metadata", {}),
        "content": content,
        "buffers": [],
        **extra,
    }


def v1(msg: dict, channel: str) -> bytes:
    return serialize_msg_to_ws_v1(msg, channel, lambda part: json.dumps(part).encode())


def legacy_text(msg: dict, channel: str) -> bytes:
    return json.dumps({**msg, "channel": channel}).encode()


def masked(payload: bytes, *, text: bool = False, pieces: int = 1) -> bytes:
    """A browser's frames: masked, the message in `pieces` fragments."""
    size = -(-len(payload) // pieces)
    chunks = [payload[i : i + size] for i in range(0, len(payload), size)]
    frames = []
    for i, chunk in enumerate(chunks):
        opcode = (TEXT if text else BINARY) if i == 0 else CONT
        frames.append(Frame(opcode, chunk, fin=i == len(chunks) - 1).serialize(mask=True))
    return b"".join(frames)


def unmasked(payload: bytes, *, text: bool = False) -> bytes:
    return Frame(TEXT if text else BINARY, payload).serialize(mask=False)


def socket(subprotocol: str | None = V1, *, full: bool = False) -> KernelSocket:
    return KernelSocket(KERNEL, "a.jansen", subprotocol, code_full=full)


def execute(code: str, **extra) -> dict:
    return message(
        "execute_request",
        {"code": code, "silent": False, "user_expressions": extra.pop("expressions", {})},
        **extra,
    )


def test_v1_execute_is_recorded_with_the_connection_person_not_the_header():
    msg = execute("\n\nx = 1  # first\ny = 2", metadata={"cellId": "cell-7"})
    events = socket().from_client(masked(v1(msg, "shell"), pieces=3))
    assert len(events) == 1
    event = events[0]
    assert event["person"] == "a.jansen"  # the header says b.devries
    assert (event["kind"], event["channel"], event["kernel"]) == ("execute", "shell", KERNEL)
    assert event["msg_id"] == msg["header"]["msg_id"]
    assert event["cell_id"] == "cell-7"
    assert event["first_line"] == "x = 1  # first"
    assert event["code_sha256"] == hashlib.sha256(msg["content"]["code"].encode()).hexdigest()
    assert "code" not in event and event["outcome"] is None


def test_frames_split_anywhere_give_the_message_once():
    watched = socket(None)
    data = masked(legacy_text(execute("print(1)"), "shell"), text=True, pieces=2)
    data = Frame(PING, b"hi").serialize(mask=True) + data
    events = [e for i in range(len(data)) for e in watched.from_client(data[i : i + 1])]
    assert [e["first_line"] for e in events] == ["print(1)"]


def test_legacy_text_and_binary_and_control_and_full_code():
    watched = socket(None, full=True)
    text = watched.from_client(masked(legacy_text(execute("a = 1"), "control"), text=True))
    with_buffers = {
        **execute("b = 2", expressions={"n": "len(a)"}),
        "channel": "shell",
        "buffers": [b"\x00\x01binary"],
    }
    binary = watched.from_client(masked(serialize_binary_message(with_buffers)))
    assert [(e["channel"], e["code"]) for e in text + binary] == [
        ("control", "a = 1"),
        ("shell", 'b = 2{"n":"len(a)"}'),
    ]
    # user_expressions are code too (evaluated, answered in the reply): in the hash, the kept
    # code and the first line, so "pass" cannot stand for what they run
    assert binary[0]["code_sha256"] == hashlib.sha256(binary[0]["code"].encode()).hexdigest()
    assert binary[0]["first_line"] == 'b = 2 + user_expressions {"n":"len(a)"}'


def test_lone_surrogates_are_recorded_as_the_services_reader_takes_them(tmp_path):
    """JSON escapes a lone surrogate (`\\udc80`); Python reads it, the service's strict reader
    refused the whole batch holding it (red team B): each becomes U+FFFD, in every string a
    client or the workspace names, and the batch is taken in whole."""
    from dossierhub.state.executions import _read_batch, write_batch
    from dossierhub.state.home import Home

    msg = execute("# \udc80 \U0001f600\nx = 1", metadata={"cellId": "c\udc80"})
    msg["header"]["msg_id"] = "m\ud800"
    events = socket(None, full=True).from_client(masked(legacy_text(msg, "shell"), text=True))
    (event,) = events
    assert (event["msg_id"], event["cell_id"]) == ("m\ufffd", "c\ufffd")
    assert event["first_line"] == "# \ufffd \U0001f600"  # a pair stays its one character
    assert event["code"] == "# \ufffd \U0001f600\nx = 1"
    event["path"] = execwatch.sessions_of(
        json.dumps({"kernel": {"id": KERNEL}, "path": "\udc80.ipynb"}).encode()
    )[0][1]
    assert event["path"] == "\ufffd.ipynb"
    home = Home(tmp_path)
    home.execution_spool_root.parent.mkdir()  # HOME/audit, as init makes it
    spooled = write_batch(home, "armoede", "relay-00000001", events)
    batch = _read_batch(spooled)
    assert batch is not None and batch.events[0].cell_id == "c\ufffd"


def test_debug_evaluate_is_recorded_as_debug():
    request = {
        "type": "request",
        "seq": 3,
        "command": "evaluate",
        "arguments": {"expression": "secret = open('/etc/x').read()"},
    }
    events = socket().from_client(masked(v1(message("debug_request", request), "control")))
    assert events[0]["kind"] == "debug"
    assert events[0]["first_line"] == "evaluate secret = open('/etc/x').read()"


def test_an_answer_to_input_is_recorded_it_is_code_under_pdb():
    answer = message("input_reply", {"value": "import os; os.remove('x')\nmore"})
    events = socket().from_client(masked(v1(answer, "stdin")))
    assert [(e["kind"], e["channel"], e["first_line"]) for e in events] == [
        ("input", "stdin", "import os; os.remove('x')")
    ]


def test_other_allowed_messages_pass_unrecorded():
    watched = socket()
    for msg_type, channel in (
        ("kernel_info_request", "shell"),
        ("comm_msg", "shell"),
        ("is_complete_request", "control"),
    ):
        assert watched.from_client(masked(v1(message(msg_type, {}), channel))) == []
    # JupyterLab asks the debugger's state at every kernel status change: no code runs
    info = message("debug_request", {"type": "request", "seq": 1, "command": "debugInfo"})
    assert watched.from_client(masked(v1(info, "control"))) == []


def test_a_kernel_shut_down_restarted_or_interrupted_over_its_websocket_is_recorded():
    """As the REST calls that do the same (red team C: a member's shutdown_request on the
    websocket ended a colleague's kernel, its state lost, and nothing said who), whichever
    channel and however the type is spelled."""
    watched = socket(None)
    asked = [
        (message("shutdown_request", {"restart": False}), "control"),
        (message("shutdown_request", {"restart": True}), "shell"),
        (message("interrupt_request", {}), "control"),
    ]
    events = []
    for msg, channel in asked:
        events += watched.from_client(masked(legacy_text(msg, channel), text=True))
    escaped = legacy_text(message("shutdown_request", {"restart": True}), "control")
    escaped = escaped.replace(b'"shutdown_request"', b'"shutdown\\u005frequest"')
    events += watched.from_client(masked(escaped, text=True))
    assert [(e["event"], e["person"], e["kernel"], e["action"]) for e in events] == [
        ("kernel", "a.jansen", KERNEL, "shutdown"),
        ("kernel", "a.jansen", KERNEL, "restart"),
        ("kernel", "a.jansen", KERNEL, "interrupt"),
        ("kernel", "a.jansen", KERNEL, "restart"),
    ]
    batch_of("armoede", "r-00000001", events)  # as the service takes them


@pytest.mark.parametrize(
    "data",
    [
        masked(v1(message("apply_request", {}), "shell")),  # not handled by ipykernel 7
        masked(v1(message("debug_request", {}), "shell")),  # control only
        masked(v1(execute("x"), "iopub")),
        masked(b"\x07" + b"\x00" * 60),  # offsets that point nowhere
        masked(legacy_text(execute("x"), "shell"), text=True),  # text on a v1 socket
        unmasked(v1(execute("x"), "shell")),  # a client frame must be masked
        # permessage-deflate was not negotiated: a compressed frame is refused
        Frame(BINARY, v1(execute("x"), "shell")).serialize(
            mask=True, extensions=[PerMessageDeflate(False, False, 15, 15)]
        ),
        masked(v1({**execute(1), "content": {"code": 1}}, "shell")),
    ],
)
def test_what_cannot_be_read_or_is_not_allowed_is_refused(data):
    with pytest.raises(Refused):
        socket().from_client(data)


def test_too_large_a_message_is_refused():
    big = masked(v1(execute("x" * (execwatch.MAX_MESSAGE + 1)), "shell"))
    with pytest.raises(Refused):
        socket().from_client(big)


def test_relay_reads_what_jupyter_server_reads():
    msg = execute("z = 3", metadata={"cellId": "c"})
    for payload, v1_ in (
        (v1(msg, "control"), True),
        (serialize_binary_message({**msg, "channel": "shell", "buffers": [b"buf"]}), False),
    ):
        read = execwatch.read_message(False, payload, v1=v1_, whole=True)
        if v1_:
            channel, parts = deserialize_msg_from_ws_v1(payload)
            header = json.loads(parts[0])
        else:
            server = deserialize_binary_message(payload)
            channel, header = server["channel"], server["header"]
        assert (read.channel, read.header["msg_id"]) == (channel, header["msg_id"])


def test_execute_reply_gives_the_outcome():
    for subprotocol in (V1, None):
        watched = socket(subprotocol)
        reply = message("execute_reply", {"status": "error"}, parent={"msg_id": "m1"})
        busy = message("status", {"execution_state": "busy"}, parent={"msg_id": "m1"})
        encode = (lambda m: v1(m, "shell")) if subprotocol else (lambda m: legacy_text(m, "shell"))
        data = unmasked(encode(busy), text=not subprotocol)
        data += unmasked(encode(reply), text=not subprotocol)
        assert watched.from_server(data) == [("m1", "error")]


def websockets_reads(data: bytes, side: Side, max_size: int | None = None) -> list:
    """(is text, payload) of each message websockets' own parser reads from `data` as
    `side`; raises on what it refuses."""
    protocol = Protocol(side, max_size=max_size)
    protocol.receive_data(data)
    messages, parts, text = [], [], False
    for frame in protocol.events_received():
        if frame.opcode in (TEXT, BINARY):
            parts, text = [frame.data], frame.opcode is TEXT
        elif frame.opcode is CONT:
            parts.append(frame.data)
        else:
            continue
        if frame.fin:
            messages.append((text, b"".join(parts)))
    if protocol.parser_exc is not None:
        raise protocol.parser_exc
    return messages


def browser_frames() -> bytes:
    """A person's frames of every kind: 7-, 16- and 64-bit lengths, text and binary,
    a message in fragments with a ping and a pong between them, then a close and bytes
    after it (read by nobody)."""
    frames = [
        Frame(TEXT, b'{"a": 1}'),
        Frame(BINARY, bytes(range(256)) * 2),
        Frame(TEXT, b"x" * 70_000),
        Frame(TEXT, b'{"first": ', fin=False),
        Frame(PING, b"are you there"),
        Frame(CONT, b'"piece"', fin=False),
        Frame(PONG, b""),
        Frame(CONT, b"}"),
        Frame(BINARY, b""),
        Frame(CLOSE, Close(1000, "bye").serialize()),
        Frame(TEXT, b"after the close"),
    ]
    return b"".join(frame.serialize(mask=True) for frame in frames)


def test_a_persons_frames_are_read_as_websockets_reads_them():
    """The bridge's reader of a person's frames (execwatch.Frames) against websockets' own
    parser: the same messages whole, and split at every byte."""
    data = browser_frames()
    after_close = len(Frame(TEXT, b"after the close").serialize(mask=True))
    expected = websockets_reads(data, Side.SERVER)
    assert len(expected) == 5
    frames = execwatch.Frames(execwatch.MAX_MESSAGE)
    assert frames.feed(data) == expected
    assert frames.dropped == after_close  # what follows a close is not passed on
    frames, found, dropped = execwatch.Frames(execwatch.MAX_MESSAGE), [], 0
    for i in range(len(data)):
        found += frames.feed(data[i : i + 1])
        dropped += frames.dropped
    assert found == expected and dropped == after_close


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 200_000])
@pytest.mark.parametrize("kind", [TEXT, BINARY])
def test_a_whole_message_in_one_chunk_is_read_as_websockets_reads_it(kind, size):
    """One frame, one message, one chunk: as browsers send them, read without the buffer
    (Frames' fast path); then a fragmented message still reads as a whole one."""
    whole = Frame(kind, bytes(range(256)) * (size // 256) + bytes(size % 256)).serialize(mask=True)
    fragments = Frame(TEXT, b'{"a"', fin=False).serialize(mask=True) + Frame(
        CONT, b": 1}"
    ).serialize(mask=True)
    frames = execwatch.Frames(execwatch.MAX_MESSAGE)
    assert frames.feed(whole) == websockets_reads(whole, Side.SERVER)
    assert frames.feed(fragments) == websockets_reads(fragments, Side.SERVER)
    assert frames.feed(whole) == websockets_reads(whole, Side.SERVER)
    assert not frames.buffer


def raw_frame(first: int, payload: bytes, *, mask: bool = True, length: int | None = None) -> bytes:
    """A frame with any first byte (FIN, reserved bits, opcode) and length, as an attacker
    writes it."""
    size = len(payload) if length is None else length
    if size < 126:
        head = bytes([first, size | 0x80 * mask])
    elif size < 65536:
        head = bytes([first, 126 | 0x80 * mask]) + size.to_bytes(2, "big")
    else:
        head = bytes([first, 127 | 0x80 * mask]) + size.to_bytes(8, "big")
    key = b"\x01\x02\x03\x04" if mask else b""
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload)) if mask else payload
    return head + key + body


@pytest.mark.parametrize(
    "data",
    [
        raw_frame(0x81, b"{}", mask=False),  # not masked
        raw_frame(0xC1, b"{}"),  # RSV1: compressed, not agreed
        raw_frame(0xA1, b"{}"),  # RSV2
        raw_frame(0x83, b"{}"),  # opcode 3
        raw_frame(0x8B, b""),  # opcode 11
        raw_frame(0x09, b"p"),  # a ping in fragments
        raw_frame(0x89, b"p" * 126),  # a ping too long
        raw_frame(0x80, b"{}"),  # a continuation without a message
        raw_frame(0x01, b"{") + raw_frame(0x81, b"{}"),  # a message inside another
        raw_frame(0x82, b"", length=execwatch.MAX_MESSAGE + 1),  # too large, said in the head
        raw_frame(0x02, b"x" * 70_000) + raw_frame(0x80, b"", length=execwatch.MAX_MESSAGE),
    ],
)
def test_frames_websockets_refuses_are_refused(data):
    """Whatever websockets' parser refuses (as the server's side of a connection with no
    extension), the bridge refuses too, before the frame's payload is waited for."""
    with pytest.raises(Exception):  # noqa: B017  websockets raises its own ProtocolError kinds
        websockets_reads(data, Side.SERVER, execwatch.MAX_MESSAGE)
    with pytest.raises(Refused):
        execwatch.Frames(execwatch.MAX_MESSAGE).feed(data)


def test_replies_are_found_in_the_servers_frames_as_websockets_reads_them():
    """The skim of the server's frames (execwatch.Replies) against websockets' own parser:
    frames of every length encoding, a fragmented reply with a ping inside it, output
    larger than SKIM_MAX stepped over, all split at every byte (the large one in pieces)."""
    frames = []
    for i, text in enumerate(("x" * 10, "y" * 200, "z" * 70_000)):  # 7-, 16-, 64-bit lengths
        out = message("stream", {"name": "stdout", "text": text}, parent={"msg_id": f"m{i}"})
        frames.append(unmasked(legacy_text(out, "iopub"), text=True))
        reply = message("execute_reply", {"status": "ok"}, parent={"msg_id": f"m{i}"})
        frames.append(unmasked(legacy_text(reply, "shell"), text=True))
    reply = legacy_text(
        message("execute_reply", {"status": "error"}, parent={"msg_id": "f"}), "shell"
    )
    frames.append(Frame(TEXT, reply[:30], fin=False).serialize(mask=False))
    frames.append(Frame(PING, b"p").serialize(mask=False))
    frames.append(Frame(CONT, reply[30:]).serialize(mask=False))
    data = b"".join(frames)
    expected = [m for m in websockets_reads(data, Side.CLIENT) if b"execute_reply" in m[1]]
    assert len(expected) == 4
    replies = execwatch.Replies()
    assert replies.feed(data) == expected
    replies, found = execwatch.Replies(), []
    for i in range(len(data)):
        found += replies.feed(data[i : i + 1])
    assert found == expected
    replies, found = execwatch.Replies(), []
    for whole in frames:  # one frame a read, as the server's sends mostly arrive
        found += replies.feed(whole)
    assert found == expected
    huge = message("stream", {"text": "w" * (execwatch.SKIM_MAX + 10)}, parent={"msg_id": "h"})
    data = unmasked(legacy_text(huge, "iopub"), text=True) + frames[1]
    watched, found = socket(None), []
    for i in range(0, len(data), 65536):
        found += watched.from_server(data[i : i + 65536])
    assert found == [("m0", "ok")] and len(watched.server.buffer) == 0
    with pytest.raises(Refused):
        execwatch.Replies().feed(Frame(TEXT, b"{}").serialize(mask=True))


# --- HTTP -------------------------------------------------------------------------------


def request(target: str, *headers: tuple[str, str], body: bytes = b"") -> bytes:
    lines = [f"GET {target} HTTP/1.1", "Host: x", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def read(data: bytes) -> list[h11.Request]:
    return list(Exchange().client_events(data))


UPGRADE = (
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ("Sec-WebSocket-Version", "13"),
)
CHANNELS = f"/user/{SERVER}/api/kernels/{KERNEL}/channels"


@pytest.mark.parametrize(
    "headers, target",
    [
        ((("Content-Length", "3"), ("Transfer-Encoding", "chunked")), "/api"),
        ((("Authorization", "token a"), ("Authorization", "token b")), CHANNELS),
        ((), CHANNELS + "?token=a&token=b"),
        (
            (("Cookie", f"jupyterhub-user-{SERVER}=a"), ("Cookie", f"jupyterhub-user-{SERVER}=b")),
            CHANNELS,
        ),
        ((("Cookie", f"jupyterhub-user-{SERVER}=a; __Host-jupyterhub-user-{SERVER}=b"),), CHANNELS),
    ],
)
def test_requests_two_parsers_could_read_differently_are_refused(headers, target):
    (head,) = read(request(target, *headers))
    with pytest.raises(Refused):
        execwatch.check_request(head, SERVER)


def test_credentials_in_jupyterhubs_order_cookie_decoded():
    cookie = create_signed_value("secret", f"jupyterhub-user-{SERVER}", "cookie-token").decode()
    (head,) = read(
        request(
            CHANNELS + "?session_id=1&token=url-token",
            ("Authorization", "Bearer header-token"),
            ("Cookie", f"other=1; jupyterhub-user-{SERVER}={cookie}"),
        )
    )
    execwatch.check_request(head, SERVER)
    assert execwatch.credentials(head, SERVER) == ["url-token", "header-token", "cookie-token"]
    assert execwatch.kernel_of(head.target) == KERNEL
    assert execwatch.kernel_of(b"/user/x/api/kernels/k1/channels/x") is None


def test_keep_alive_upgrade_after_a_request_and_frames_after_the_101():
    exchange = Exchange()
    first = request("/user/x/api/status")
    assert [r.target for r in exchange.client_events(first)] == [b"/user/x/api/status"]
    assert exchange.unread() == 0
    upgrade = request(CHANNELS, *UPGRADE)
    # the upgrade waits until the first request is answered
    assert list(exchange.client_events(upgrade)) == []
    assert exchange.paused and exchange.unread() == len(upgrade)
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
    assert exchange.server_bytes(answer) == b""
    assert [r.target for r in exchange.client_events(b"")] == [CHANNELS.encode()]
    frame = unmasked(v1(message("status", {}), "iopub"))
    switch = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
        b"Sec-WebSocket-Protocol: " + V1.encode() + b"\r\n\r\n"
    )
    assert exchange.server_bytes(switch + frame) == frame
    assert exchange.switched and exchange.subprotocol == V1


def test_a_101_with_an_extension_is_refused():
    exchange = Exchange()
    list(exchange.client_events(request(CHANNELS, *UPGRADE)))
    with pytest.raises(Refused):
        exchange.server_bytes(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\n"
            b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
        )


def test_sessions_answers_chunked_and_gzipped_give_paths():
    exchange = Exchange()
    list(exchange.client_events(request("/user/x/api/sessions")))
    body = gzip.compress(
        json.dumps([{"id": "s", "path": "work/poverty.ipynb", "kernel": {"id": KERNEL}}]).encode()
    )
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:10], body[10:])) + b"0\r\n\r\n"
    exchange.server_bytes(
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked
    )
    assert exchange.sessions == [(KERNEL, "work/poverty.ipynb")]


@pytest.mark.parametrize(
    ("method", "target", "expected"),
    [
        (b"POST", "/user/x/api/kernels", ("start", None, None, False)),
        (b"POST", f"/user/x/api/kernels/{KERNEL}/restart?x=1", ("restart", KERNEL, None, False)),
        (b"POST", f"/user/x/api/kernels/{KERNEL}/interrupt", ("interrupt", KERNEL, None, False)),
        (b"DELETE", f"/user/x/api/kernels/{KERNEL}", ("shutdown", KERNEL, None, False)),
        (b"POST", "/user/x/api/sessions", ("start", None, None, True)),
        (b"PATCH", "/user/x/api/sessions/s1", ("start", None, "s1", True)),
        (b"DELETE", "/user/x/api/sessions/s1", ("shutdown", None, "s1", True)),
        (b"GET", "/user/x/api/kernels", None),
        (b"GET", f"/user/x/api/kernels/{KERNEL}", None),
        (b"GET", f"/user/x/api/kernels/{KERNEL}/channels", None),
        (b"POST", f"/user/x/api/kernels/{KERNEL}/channels", None),
        (b"GET", "/user/x/api/sessions", None),
        (b"POST", "/user/x/api/contents/a.ipynb", None),
    ],
)
def test_kernel_calls_are_the_routes_that_start_or_end_kernels(method, target, expected):
    call = execwatch.kernel_call(method, target.encode())
    found = (call.action, call.kernel, call.session, call.of_session) if call else None
    assert found == expected


def test_a_kernel_call_answered_with_success_names_its_kernel_and_session():
    exchange = Exchange()
    post = request("/user/x/api/sessions").replace(b"GET", b"POST", 1)
    list(exchange.client_events(post))
    model = {"id": "s1", "path": "a.ipynb", "kernel": {"id": KERNEL, "name": "dossier"}}
    body = json.dumps(model).encode()
    exchange.server_bytes(
        b"HTTP/1.1 201 Created\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    [(call, models)] = exchange.calls
    assert (call.action, call.of_session, models) == ("start", True, [("s1", KERNEL, "a.ipynb")])
    assert exchange.sessions == [(KERNEL, "a.ipynb")]
    # refused by the workspace: nothing happened, nothing to record
    exchange = Exchange()
    list(
        exchange.client_events(
            request(f"/user/x/api/kernels/{KERNEL}").replace(b"GET", b"DELETE", 1)
        )
    )
    exchange.server_bytes(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
    assert exchange.calls == []


def test_the_deadlines_phases_of_a_connection():
    exchange = Exchange()
    assert exchange.waiting_for() == "head"  # nothing yet
    list(exchange.client_events(b"POST /x HTTP/1.1\r\nHost: x\r\n"))
    assert exchange.waiting_for() == "head"
    list(exchange.client_events(b"Content-Length: 4\r\n\r\nab"))
    assert (exchange.waiting_for(), exchange.consumed) == ("body", exchange.received)
    list(exchange.client_events(b"cd"))
    assert exchange.waiting_for() == ""  # the server's turn
    exchange.server_bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert exchange.waiting_for() == "idle"  # kept alive
    list(exchange.client_events(b"GET /y HT"))
    assert exchange.waiting_for() == "head"


# --- the recorder -----------------------------------------------------------------------


def test_recorder_batches_in_order_keeps_what_cannot_be_written_and_fails_closed(monkeypatch):
    written: list[tuple[str, list]] = []
    broken = True

    def write(batch: str, events: list) -> None:
        if broken:
            raise OSError("disk full")
        written.append((batch, events))

    recorder = netbridge.Recorder(write, "r1")
    event = {"event": "execute", "kernel": "k", "msg_id": "m", "outcome": None}
    assert recorder.record([dict(event)])
    recorder.outcome("k", "m", "ok")  # still in memory: joined
    monkeypatch.setattr(netbridge, "MAX_WAITING", 2)
    assert recorder.record([{**event, "msg_id": "m2"}])
    assert not recorder.record([{**event, "msg_id": "m3"}])  # full: refused
    recorder.flush()  # cannot be written: kept
    recorder.outcome("k", "m", "error")  # already answered
    broken = False
    recorder.flush()
    recorder.outcome("k", "m2", "aborted")  # its event left: an outcome event
    recorder.flush()
    assert [batch for batch, _ in written] == ["r1-00000001", "r1-00000002"]
    assert [e["msg_id"] for e in written[0][1]] == ["m", "m2"]
    assert written[0][1][0]["outcome"] == "ok"
    assert written[1][1][0] == {
        **written[1][1][0],
        "event": "outcome",
        "msg_id": "m2",
        "outcome": "aborted",
    }
    assert recorder.record([{**event, "msg_id": "m4"}])  # room again


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a filesystem of its own (root)")
def test_executions_are_refused_while_the_spool_cannot_be_written(tmp_path):
    """A kernel fills the filesystem its workspace folder shares with the spool (a pod's
    recorder is not root and has no reserve; on one machine root has none of inodes).
    Executions then waited in memory, up to MAX_WAITING, and were lost when the workspace
    stopped with the disk still full: run, never recorded (red team C; accepted on the code
    before). Now a batch that cannot be written makes the bridge refuse executions until one
    can. A real full filesystem: a tmpfs of the spool whose every inode is taken."""
    from dossierhub.state.executions import write_batch
    from dossierhub.state.home import Home

    def ran(code: str) -> list[dict]:
        return socket(None).from_client(masked(legacy_text(execute(code), "shell"), text=True))

    home = Home(tmp_path)
    spool = home.execution_spool_dir("armoede")
    spool.mkdir(parents=True)
    mount = ["mount", "-t", "tmpfs", "-o", "size=1m,nr_inodes=16,mode=0700", "tmpfs", spool]
    subprocess.run(mount, check=True)
    try:
        taken = 0
        with contextlib.suppress(OSError):  # as a kernel's loop of empty files does
            while True:
                (spool / f"fill-{taken}").touch()
                taken += 1
        recorder = netbridge.Recorder(
            lambda batch, events: write_batch(home, "armoede", batch, events), "r1"
        )
        assert recorder.record(ran("x = 1"))
        recorder.flush()  # ENOSPC: kept in memory, said on stderr
        assert not recorder.record(ran("unrecorded = 1"))  # refused: the kernel never gets it
        for name in ("fill-0", "fill-1"):  # room again, for two batches
            (spool / name).unlink()
        recorder.flush()
        assert recorder.record(ran("y = 2"))
        recorder.flush()
        spooled = [json.loads(path.read_text()) for path in sorted(spool.glob("r1-*.json"))]
    finally:
        subprocess.run(["umount", "-l", spool], check=False)
    firsts = [event["first_line"] for batch in spooled for event in batch["events"]]
    assert firsts == ["x = 1", "y = 2"]


def test_full_code_is_kept_up_to_a_cap_and_hashed_whole(tmp_path):
    """audit.executions_code: full keeps at most FULL_CODE characters of one execution (a
    batch of 10 MiB messages made one audit record of gigabytes); the hash is of all of it."""
    code = "x = 1\n" + "#" * (execwatch.FULL_CODE * 2)
    (event,) = socket(None, full=True).from_client(
        masked(legacy_text(execute(code), "shell"), text=True)
    )
    assert len(event["code"]) == execwatch.FULL_CODE and event["code_length"] == len(code)
    assert event["code_sha256"] == hashlib.sha256(code.encode()).hexdigest()
    from dossierhub.state.executions import write_batch
    from dossierhub.state.home import Home

    home = Home(tmp_path)
    home.execution_spool_root.parent.mkdir()
    write_batch(home, "armoede", "relay-00000001", [event])  # the spool takes it as it is
