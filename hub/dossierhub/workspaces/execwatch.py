"""What a person's connection to a workspace carries, read from its bytes (no sockets here).

netbridge.py, the one way into a workspace sandbox, forwards every byte untouched and hands
them to these readers first, so that an execution is recorded before the frame that completes
it reaches the workspace (issue 16, notes: the design §3). The readers read exactly what the
workspace server reads:

- HTTP request heads of a keep-alive connection, with h11; a request two parsers could read
  differently (Content-Length and Transfer-Encoding, two `token` parameters, two Authorization
  headers, two workspace cookies) is refused;
- the credential, in jupyterhub's order (services/auth.py `HubAuth.get_token`): `?token=`,
  `Authorization: token|bearer`, the `[__Host-]jupyterhub-user-<server>` cookie (a tornado
  signed value; the token inside is what the hub checks, the signature is not ours to check);
- after the 101, the client's websocket frames with a strict reader of its own (`Frames`,
  checked against websockets' parser); the workspace's skimmed by their heads for
  execute_replies (`Replies`: their outcome is all that is read from them);
- the Jupyter messages in them, as jupyter_server's kernel connection reads them
  (services/kernels/connection/base.py, channels.py): v1 (`v1.kernel.websocket.jupyter.org`,
  binary with offsets, the parts passed to the kernel as sent), legacy JSON text, legacy
  binary with buffers; JSON as the kernel's Session reads it (`_json`: orjson, and Python's
  json where orjson refuses), which gives every string as Python's json, the server's, does.

Anything a reader cannot read is `Refused`: the bridge then closes the connection.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import json
import re
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import h11
import orjson
from tornado.httputil import parse_cookie

# websockets.frames takes apply_mask from its C speedups where built (its utils has Python only)
from websockets.frames import CLOSE, Close, Frame, apply_mask  # type: ignore[attr-defined]  # re-exported, not in __all__

V1 = "v1.kernel.websocket.jupyter.org"
# tornado's websocket_max_message_size default, which the workspace server keeps: a client
# message larger than that never reaches a kernel
MAX_MESSAGE = 10 * 1024 * 1024
MAX_SESSIONS_BODY = 4 * 1024 * 1024  # an /api/sessions answer read for kernel -> path
FIRST_LINE = 120
# with audit.executions_code: full, at most this much of one execution's code is kept (a
# batch of 200 messages of 10 MiB made one 2 GB audit record: red team); the hash covers all
FULL_CODE = 64 * 1024
CLAIM = 200  # the most kept of a client's msg_id, cell id, a kernel id or path (the spool's 400)
# the most characters of text a draft keeps until the recorder's batch formats it: a longer
# execution is formatted on the message's path, as before drafts (hashing some KiB costs
# microseconds). Drafts of 10 MiB executions each held their code until the batch (200 of
# them, or 2 s, or up to MAX_WAITING while the batch lags): a member's flood made the root
# bridge hold gigabytes, and what it holds is lost with it (red team D)
DRAFT_CHARS = 16 * 1024

# What ipykernel 7 handles (kernelbase.py msg_types / control_msg_types; comm_* are shell
# handlers of ipkernel.py; input_reply is the only message read on stdin): nothing else is
# passed on, so a new kind of message that might run code is refused until it is read here.
_SHELL = {
    "execute_request",
    "complete_request",
    "inspect_request",
    "history_request",
    "comm_info_request",
    "kernel_info_request",
    "connect_request",
    "shutdown_request",
    "is_complete_request",
    "interrupt_request",
}
_CONTROL = _SHELL | {
    "debug_request",
    "usage_request",
    "create_subshell_request",
    "delete_subshell_request",
    "list_subshell_request",
}
ALLOWED = {
    "shell": frozenset(_SHELL | {"comm_open", "comm_msg", "comm_close"}),
    "control": frozenset(_CONTROL),
    "stdin": frozenset({"input_reply"}),
}
# input_reply: an answer to input() is data, but under pdb (breakpoint(), %debug, %pdb) it is
# code; the kernel takes it from any connection, not only the asker's (red team): recorded
RECORDED = {"execute_request": "execute", "debug_request": "debug", "input_reply": "input"}
_REPLY = b"execute_reply"
# a kernel ended, restarted or interrupted over its websocket (ipykernel takes them on shell and
# control): recorded as the REST calls that do the same are, as a `kernel` event (red team C:
# a member shut a colleague's kernel down, its state lost, and nothing said who)
LIFECYCLE = {"shutdown_request", "interrupt_request"}
SKIM_MAX = 1024 * 1024  # a server's message larger than this is output: never read
_EXECUTE, _DEBUG, _INPUT = (name.encode() for name in RECORDED)
_KERNEL_CHANNELS = re.compile(r".*/api/kernels/([^/]+)/channels")
_SESSIONS = re.compile(r".*/api/sessions(?:/[^/]+)?")
# jupyter_server's kernels and sessions handlers (services/kernels/handlers.py,
# services/sessions/handlers.py): the calls that start, restart, interrupt or end a kernel
_KERNEL_CALL = re.compile(r".*/api/kernels(?:/([^/]+)(?:/(restart|interrupt))?)?")
_SESSION_CALL = re.compile(r".*/api/sessions(?:/([^/]+))?")
# a request read whole, waiting for its answer (MIGHT_SWITCH: an upgrade, waiting for its 101)
_WAITING = (h11.DONE, h11.MIGHT_SWITCH_PROTOCOL)  # type: ignore[attr-defined]  # documented, not in __all__
_AUTH_HEADER = re.compile(r"(?:token|bearer)\s+(.+)", re.IGNORECASE)  # auth.py auth_header_pat


class Refused(Exception):
    """What a reader would not pass on; `reason` is one sentence a person can read."""

    def __init__(self, reason: str, status: int = 400):
        super().__init__(reason)
        self.reason = reason
        self.status = status


def recordable(text: str) -> str:
    """`text` as the audit trail can hold it. JSON may escape a lone surrogate (`\\udc80`):
    Python's reader takes it, the service's strict reader refuses the batch holding it, which
    was set aside whole, so one such message hid every execution spooled with it. Each lone
    surrogate becomes U+FFFD (a pair stays the one character it names)."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def claim(value: Any) -> str | None:
    """A client's or the workspace's string as recorded: cut to CLAIM characters (one way for
    every side, so an execute_reply's parent msg_id still finds its request)."""
    return recordable(value[:CLAIM]) if isinstance(value, str) else None


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


# --- HTTP ------------------------------------------------------------------------------


def workspace_cookies(server_user: str) -> tuple[str, str]:
    """The cookie names the workspace server reads its OAuth token from: jupyterhub's
    `oauth_client_id` (user.py: `jupyterhub-user-<quoted name>`), with or without the
    `__Host-` prefix (`cookie_host_prefix_enabled`)."""
    name = f"jupyterhub-user-{quote(server_user)}"
    return name, f"__Host-{name}"


def kernel_of(target: bytes) -> str | None:
    """The kernel id when `target` asks for a kernel's channels websocket (jupyter_server
    routes on the raw path, before `?`)."""
    path = urlsplit(target.decode("latin-1")).path
    found = _KERNEL_CHANNELS.fullmatch(path)
    return claim(found.group(1)) if found else None


def is_sessions(target: bytes) -> bool:
    return _SESSIONS.fullmatch(urlsplit(target.decode("latin-1")).path) is not None


@dataclass(frozen=True)
class KernelCall:
    """A REST call that starts, restarts, interrupts or shuts down a kernel: the contract's
    `kernel` event once the workspace has answered it with success. A session's start
    (POST, or PATCH changing its kernel) starts a kernel only when its answer names one not
    seen before; a session's DELETE shuts its kernel down."""

    action: str
    kernel: str | None  # named in the path
    session: str | None  # named in the path (sessions)
    of_session: bool


def kernel_call(method: bytes, target: bytes) -> KernelCall | None:
    path = urlsplit(target.decode("latin-1")).path
    found = _KERNEL_CALL.fullmatch(path)
    if found:
        kernel, verb = found.groups()
        if kernel is None:
            action = "start" if method == b"POST" else None
        elif verb is not None:
            action = verb if method == b"POST" else None
        else:
            action = "shutdown" if method == b"DELETE" else None
        return KernelCall(action, claim(kernel), None, False) if action else None
    found = _SESSION_CALL.fullmatch(path)
    if found:
        session = found.group(1)
        if session is None:
            action = "start" if method == b"POST" else None
        else:
            action = {b"PATCH": "start", b"DELETE": "shutdown"}.get(method)
        return KernelCall(action, None, claim(session), True) if action else None
    return None


def _headers(request: h11.Request, name: bytes) -> list[str]:
    return [value.decode("latin-1") for key, value in request.headers if key == name]


def check_request(request: h11.Request, server_user: str) -> None:
    """Refuse a request head two HTTP parsers could read differently (h11 has refused the
    rest: conflicting lengths, obs-folds, bad header names)."""
    names = [key for key, _ in request.headers]
    if b"content-length" in names and b"transfer-encoding" in names:
        raise Refused("a request with both Content-Length and Transfer-Encoding is refused")
    if names.count(b"authorization") > 1:
        raise Refused("a request with two Authorization headers is refused")
    query = urlsplit(request.target.decode("latin-1")).query
    if len(parse_qs(query, keep_blank_values=True).get("token", [])) > 1:
        raise Refused("a request with two token parameters is refused")
    cookies = workspace_cookies(server_user)
    seen = 0
    for header in _headers(request, b"cookie"):
        for chunk in header.split(";"):
            key = chunk.split("=", 1)[0].strip() if "=" in chunk else ""
            seen += key in cookies
    if seen > 1:
        raise Refused("a request with two workspace cookies is refused")


def signed_value_payload(value: str) -> str | None:
    """The payload of a tornado signed value (version 2, tornado/web.py
    `create_signed_value`: `2|len:key|len:time|len:name|len:base64 value|signature`), not
    verified: only the hub can say whether the token inside is anyone's."""
    raw = value.encode("latin-1", "replace")
    if not raw.startswith(b"2|"):
        return None
    rest = raw[2:]
    fields = []
    try:
        for _ in range(4):
            length, _, rest = rest.partition(b":")
            size = int(length)
            if rest[size : size + 1] != b"|":
                return None
            fields.append(rest[:size])
            rest = rest[size + 1 :]
        return base64.b64decode(fields[3], validate=True).decode("ascii")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None


def credentials(request: h11.Request, server_user: str) -> list[str]:
    """Every token the request carries, in jupyterhub's order (`get_token`): which one the
    server uses depends on `Sec-Fetch-Mode` and its settings, so the bridge asks the hub
    about each and accepts the request only when they all name one person."""
    found: list[str] = []
    query = urlsplit(request.target.decode("latin-1")).query
    found += [t.strip() for t in parse_qs(query, keep_blank_values=True).get("token", [])]
    for header in _headers(request, b"authorization"):
        matched = _AUTH_HEADER.match(header.strip())
        if matched:
            found.append(matched.group(1).strip())
    for header in _headers(request, b"cookie"):
        jar = parse_cookie(header)
        for name in workspace_cookies(server_user):
            if name in jar:
                found.append(signed_value_payload(jar[name]) or "")
    return list(dict.fromkeys(token for token in found if token))


class Exchange:
    """One inbound connection's HTTP, both ways, as h11 reads it: the client's requests
    (`inbound`, h11 as the server) and the server's answers (`outbound`, h11 as the client),
    each mirrored into the other so both keep the same request/response cycle."""

    def __init__(self) -> None:
        self.inbound = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
        self.outbound = h11.Connection(h11.CLIENT, max_incomplete_event_size=64 * 1024)
        self.request: h11.Request | None = None
        self.switched = False
        self.subprotocol: str | None = None
        self.sessions: list[tuple[str, str]] = []  # kernel id -> path, as the server answered
        self._body: bytearray | None = None
        self._gzip = False
        self.received = 0  # the client's bytes fed so far
        self.answered = 0  # request/response cycles done
        # kernel calls the server answered with success: the call, and the sessions (id,
        # kernel, path) or kernel id its answer named
        self.calls: list[tuple[KernelCall, list[tuple[str | None, str, str | None]]]] = []
        self._call: KernelCall | None = None
        self.seen: list[tuple[str | None, str, str | None]] = []  # every model answered

    def client_events(self, data: bytes) -> Iterator[h11.Request]:
        """Feed the client's bytes; yield each request head (the caller checks it before
        its bytes go on). Stops when h11 needs more or the cycle waits for the answer."""
        self.received += len(data)
        try:
            self.inbound.receive_data(data)
            while True:
                event = self.inbound.next_event()
                if event is h11.NEED_DATA or event is h11.PAUSED:
                    return
                if isinstance(event, h11.Request):
                    self.request = event
                    yield event
                if isinstance(event, h11.ConnectionClosed):
                    return
                self.outbound.send(event)  # type: ignore[arg-type]  # h11 types send() for the own role's events; a peer's pass through
                if isinstance(event, h11.EndOfMessage):
                    self._next_cycle()
        except h11.ProtocolError as exc:
            raise Refused(f"the request could not be read: {exc}") from None

    def unread(self) -> int:
        """How many of the client's bytes h11 has not read yet (held back by the bridge)."""
        if self.switched:
            return 0
        return len(self.inbound.trailing_data[0])

    def waiting_for(self) -> str:
        """What the connection waits for from the client, for the bridge's deadlines:
        "head" (a request's head, started or not yet), "idle" (nothing, between keep-alive
        requests), "body" (the rest of a request's body), or "" (the server's turn, or a
        websocket, which stays open by design)."""
        if self.switched:
            return ""
        state = self.inbound.their_state
        if state is h11.SEND_BODY:
            return "body"
        if state is h11.IDLE:
            return "idle" if self.answered and not self.unread() else "head"
        return ""

    @property
    def answering(self) -> bool:
        """Whether the server has begun its answer to the request of this cycle."""
        return self.outbound.their_state not in (h11.IDLE, h11.SEND_RESPONSE)

    @property
    def consumed(self) -> int:
        """How many of the client's bytes h11 has read (a body's progress)."""
        return self.received - self.unread()

    @property
    def paused(self) -> bool:
        """h11's PAUSED: the client sent more while its request waits for the answer."""
        return self.inbound.their_state in _WAITING and bool(self.unread())

    def server_bytes(self, data: bytes) -> bytes:
        """Feed the server's bytes; return what follows a 101 (websocket frames), if any."""
        try:
            self.outbound.receive_data(data)
            while not self.switched:
                event = self.outbound.next_event()
                if event is h11.NEED_DATA or event is h11.PAUSED:
                    return b""
                if isinstance(event, h11.ConnectionClosed):
                    return b""
                self._answer(event)
                self.inbound.send(event)  # type: ignore[arg-type]  # h11 types send() for the own role's events; a peer's pass through
                if isinstance(event, h11.InformationalResponse) and event.status_code == 101:
                    self.switched = True
                    return self.outbound.trailing_data[0]
                if isinstance(event, h11.EndOfMessage):
                    self._next_cycle()
            return b""
        except h11.ProtocolError as exc:
            raise Refused(f"the workspace's answer could not be read: {exc}") from None

    def _answer(self, event: Any) -> None:
        if isinstance(event, h11.InformationalResponse) and event.status_code == 101:
            for key, value in event.headers:
                if key == b"sec-websocket-extensions":
                    raise Refused("the workspace negotiated a websocket extension")
                if key == b"sec-websocket-protocol":
                    self.subprotocol = value.decode("latin-1").strip()
            if self.subprotocol not in (None, V1):
                raise Refused(f"the workspace chose an unknown protocol {self.subprotocol!r}")
        elif isinstance(event, h11.Response):
            request = self.request
            call = kernel_call(request.method, request.target) if request is not None else None
            self._call = call if 200 <= event.status_code < 300 else None
            watched = (
                request is not None
                and request.method in (b"GET", b"POST", b"PATCH")
                and event.status_code in (200, 201)
                and (is_sessions(request.target) or self._call is not None)
            )
            self._body = bytearray() if watched else None
            self._gzip = any(
                key == b"content-encoding" and value.strip().lower() == b"gzip"
                for key, value in event.headers
            )
        elif isinstance(event, h11.Data) and self._body is not None:
            if len(self._body) + len(event.data) > MAX_SESSIONS_BODY:
                self._body = None
            else:
                self._body += event.data
        elif isinstance(event, h11.EndOfMessage):
            body = bytes(self._body) if self._body is not None else b""
            models = session_models(body, gzipped=self._gzip) if body else []
            self.sessions += [(kernel, path) for _, kernel, path in models if path is not None]
            self.seen += models
            if self._call is not None:
                self.calls.append((self._call, models))
            self._body, self._call = None, None

    def _next_cycle(self) -> None:
        done = (h11.DONE, h11.DONE)
        states = (self.inbound.our_state, self.inbound.their_state)
        if states == done and (self.outbound.our_state, self.outbound.their_state) == done:
            self.inbound.start_next_cycle()
            self.outbound.start_next_cycle()
            self.answered += 1


def session_models(
    body: bytes, *, gzipped: bool = False
) -> list[tuple[str | None, str, str | None]]:
    """(session id, kernel id, notebook path) of each session in an /api/sessions answer (one
    or a list); a kernel's own model (an /api/kernels answer) gives (None, its id, None)."""
    try:
        if gzipped:
            body = gzip.decompress(body)
        models = json.loads(body)
    except (OSError, EOFError, zlib.error, ValueError, RecursionError):
        return []
    found: list[tuple[str | None, str, str | None]] = []
    for model in models if isinstance(models, list) else [models]:
        if not isinstance(model, dict):
            continue
        kernel, path = model.get("kernel"), model.get("path")
        if isinstance(kernel, dict) and isinstance(kernel.get("id"), str):
            session = claim(model.get("id"))
            found.append((session, claim(kernel["id"]) or "", claim(path)))
        elif "kernel" not in model and isinstance(model.get("id"), str):
            found.append((None, claim(model["id"]) or "", None))
    return found


def sessions_of(body: bytes, *, gzipped: bool = False) -> list[tuple[str, str]]:
    """(kernel id, notebook path) from an /api/sessions answer (one session or a list)."""
    models = session_models(body, gzipped=gzipped)
    return [(kernel, path) for _, kernel, path in models if path is not None]


# --- websocket frames -------------------------------------------------------------------


def _frame_head(buffer: bytes | bytearray, at: int) -> tuple[int, bool, int, int] | None:
    """(first byte, masked, payload length, head length with the mask key) of the frame at
    `at` (RFC 6455 5.2), or None while its head is not all there."""
    if len(buffer) - at < 2:
        return None
    second = buffer[at + 1]
    length, head = second & 0x7F, 2
    if length == 126:
        head = 4
    elif length == 127:
        head = 10
    masked = bool(second & 0x80)
    if masked:
        head += 4
    if len(buffer) - at < head:
        return None
    if head - 4 * masked > 2:
        length = int.from_bytes(buffer[at + 2 : at + head - 4 * masked], "big")
    return buffer[at], masked, length, head


_WHOLE = (0x81, 0x82)  # the first byte's FIN and opcode of a whole text or binary message


class Frames:
    """A person's websocket frames, assembled into messages. Only what the workspace server
    (tornado) reads the same way is taken, so the bridge never records one message and lets
    the server read another: frames masked (5.1), no reserved bit (no extension is
    negotiated), known opcodes, control frames whole and short, fragments in order, at most
    `max_size` a message. Anything else is refused, which ends the connection. Pings and
    pongs are passed over (the real ends answer them); nothing is read past a close, and
    `dropped` says how many bytes of the last chunk came after it (not to be passed on).

    Checked against websockets' parser, split at every byte (tests/hub/test_execwatch.py).
    It replaced that parser here: its generators, run once per execute_request on a bridge
    thread that had slept meanwhile, were a third of the recording path's cost
    (bench_relay_pumps.py)."""

    def __init__(self, max_size: int):
        self.max_size = max_size
        self.buffer = bytearray()
        # a message being assembled, its fragments' bytes only: a list of them held ~40 bytes
        # a fragment, and empty fragments (which no size limit counts) without end (red team D)
        self.parts: bytearray | None = None
        self.size = 0
        self.text = False
        self.closed = False
        self.dropped = 0

    def feed(self, data: bytes) -> list[tuple[bool, bytes]]:
        """(is text, payload) of each message `data` completes."""
        if self.closed:
            self.dropped = len(data)
            return []
        if not self.buffer and self.parts is None:
            # a chunk that is one whole frame, one whole message (as browsers send them):
            # read without the buffer
            one = _frame_head(data, 0)
            if one is not None and one[2] + one[3] == len(data) and one[0] & 0x8F in _WHOLE:
                first, masked, length, size = one
                self._check(first, masked, length)
                return [(first & 0x0F == 1, apply_mask(data[size:], data[size - 4 : size]))]
        buffer = self.buffer
        buffer += data
        messages: list[tuple[bool, bytes]] = []
        at = 0
        while (head := _frame_head(buffer, at)) is not None:
            first, masked, length, size = head
            opcode, fin = first & 0x0F, bool(first & 0x80)
            self._check(first, masked, length)
            end = at + size + length
            if len(buffer) < end:
                break
            key, at = buffer[at + size - 4 : at + size], end
            if opcode == 8:
                self.closed, self.dropped = True, len(buffer) - at
                break
            if opcode >= 8:
                continue  # ping, pong
            if opcode and self.parts is not None:
                raise Refused("a websocket message began inside another")
            if not opcode and self.parts is None:
                raise Refused("a websocket continuation frame came without a message")
            payload = apply_mask(bytes(buffer[end - length : end]), bytes(key))
            if opcode and fin:  # a message in one frame, as browsers send them
                messages.append((opcode == 1, payload))
                continue
            if opcode:
                self.parts, self.size, self.text = bytearray(), 0, opcode == 1
            assert self.parts is not None
            self.size += length
            self.parts += payload
            if fin:
                messages.append((self.text, bytes(self.parts)))
                self.parts = None
        del buffer[: len(buffer) if self.closed else at]
        return messages

    def _check(self, first: int, masked: bool, length: int) -> None:
        opcode = first & 0x0F
        if first & 0x70:
            raise Refused("a websocket frame used a reserved bit (no extension was agreed)")
        if not masked:
            raise Refused("a client's websocket frame was not masked")
        if opcode not in (0, 1, 2, 8, 9, 10):
            raise Refused(f"a websocket frame had the unknown opcode {opcode}")
        if opcode >= 8 and (not first & 0x80 or length > 125):
            raise Refused("a websocket control frame was fragmented or too long")
        if (self.size if not opcode else 0) + length > self.max_size:
            raise Refused(f"a websocket message was larger than {self.max_size} bytes")


class Replies:
    """The workspace's frames, skimmed for the messages that may be execute_replies (the
    only thing read from them: the outcome). websockets' parser reads every frame whole,
    and under load that was most of what the recording path cost: a `pass` sends four
    frames back, one of them a reply (bench_relay_pumps.py, bench_attribution.py).
    websockets has no way to step over a frame, so this reads only the frame heads (RFC
    6455 5.2: a server's frames are never masked, 5.1) and hands on the messages whose
    bytes hold "execute_reply". Only outcomes come from here: a frame misread costs an
    outcome, never a record. A message larger than SKIM_MAX is stepped over unread."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.skip = 0  # bytes of a large frame still to step over
        self.parts: list[bytes] | None = None  # a fragmented message being kept
        self.kept = 0
        self.text = False

    def feed(self, data: bytes) -> list[tuple[bool, bytes]]:
        """(is text, payload) of each message `data` completes that may be a reply."""
        if not self.buffer and not self.skip and self.parts is None and _REPLY not in data:
            # most chunks are one whole frame, a whole message (the server sends each message
            # as it comes, TCP_NODELAY): one without "execute_reply" is stepped over unread
            # and uncopied (three of the four frames a `pass` sends back)
            one = _frame_head(data, 0)
            if one is not None and one[0] & 0x80 and not one[1] and one[2] + one[3] == len(data):
                return []
        if self.skip:
            stepped = min(self.skip, len(data))
            self.skip -= stepped
            data = data[stepped:]
        buffer = self.buffer
        buffer += data
        messages: list[tuple[bool, bytes]] = []
        at = 0
        while (found := _frame_head(buffer, at)) is not None:
            first, masked, length, head = found
            if masked:
                raise Refused("the workspace sent a masked frame")
            opcode, fin, start = first & 0x0F, first & 0x80, at + head
            if length > SKIM_MAX:  # output, never read: stepped over as it passes
                if opcode in (0, 1, 2):
                    self.parts = None
                at, self.skip = min(len(buffer), start + length), start + length - len(buffer)
                self.skip = max(self.skip, 0)
                continue
            end = start + length
            if len(buffer) < end:
                break
            if opcode in (1, 2):  # a message begins
                self.text, self.parts, self.kept = opcode == 1, [], 0
            if opcode in (0, 1, 2) and self.parts is not None:
                self.kept += length
                if self.kept > SKIM_MAX:
                    self.parts = None
                else:
                    self.parts.append(bytes(buffer[start:end]))
                    if fin:
                        payload = b"".join(self.parts)
                        if _REPLY in payload:
                            messages.append((self.text, payload))
                        self.parts = None
            at = end
        del buffer[:at]
        return messages


def close_frame(reason: str, *, masked: bool) -> bytes:
    """A close frame (1011) with `reason`, to end a websocket the bridge will not carry on."""
    return Frame(CLOSE, Close(1011, reason[:120]).serialize()).serialize(mask=masked)


# --- Jupyter messages -------------------------------------------------------------------


def _json(data: bytes, errors: str = "strict") -> Any:
    """JSON as the kernel's Session reads it (jupyter_client's session.orjson_unpacker, with
    orjson installed, as here): orjson, and where it refuses (NaN, Infinity, lone surrogates,
    bytes that are not UTF-8, nesting past 1024), Python's json on the text decoded with
    `errors`. Every string, key and nesting comes out as Python's json (the server's) reads
    it; an integer past 64 bits comes out as a float, as the kernel reads it
    (tests/hub/test_execwatch.py compares the two). In a loop, 3.8 -> 0.9 us for a `pass`."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data.decode("utf-8", errors))


def _kernel_json(part: bytes) -> Any:
    """A message part as the kernel reads it (jupyter_client session: undecodable bytes
    replaced)."""
    return _json(part, "replace")


def _v1_parts(payload: bytes) -> tuple[str, list[bytes]]:
    """jupyter_server's deserialize_msg_from_ws_v1, with bounds the server lacks."""
    count = int.from_bytes(payload[:8], "little")
    if not 6 <= count <= len(payload) // 8:
        raise ValueError("a v1 message needs a channel and four parts")
    offsets = [int.from_bytes(payload[8 * (i + 1) : 8 * (i + 2)], "little") for i in range(count)]
    channel = payload[offsets[0] : offsets[1]].decode("utf-8")
    return channel, [payload[offsets[i] : offsets[i + 1]] for i in range(1, count - 1)]


def _legacy_binary(payload: bytes) -> dict[str, Any]:
    """jupyter_server's deserialize_binary_message (buffers left out)."""
    count = struct.unpack("!i", payload[:4])[0]
    if not 1 <= count <= len(payload) // 4:
        raise ValueError("bad buffer count")
    offsets = list(struct.unpack("!" + "I" * count, payload[4 : 4 * (count + 1)]))
    end = offsets[1] if count > 1 else None
    message = _json(payload[offsets[0] : end])
    if not isinstance(message, dict):
        raise ValueError("not an object")
    return message


@dataclass
class Message:
    channel: str
    header: dict[str, Any]
    parent: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    content: dict[str, Any] = field(default_factory=dict)

    @property
    def msg_type(self) -> str:
        return str(self.header.get("msg_type"))


def _dict(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError("not an object")
    return value


def read_message(text: bool, payload: bytes, *, v1: bool, whole: bool) -> Message:
    """One Jupyter message as the server passes it to the kernel. Only the header is read
    unless `whole` (the metadata and content of a message that is recorded)."""
    if v1:
        if text:
            raise ValueError("a v1 message is binary")
        channel, parts = _v1_parts(payload)
        message = Message(channel, _dict(_kernel_json(parts[0])))
        if whole:
            message.parent = _dict(_kernel_json(parts[1]))
            message.metadata = _dict(_kernel_json(parts[2]))
            message.content = _dict(_kernel_json(parts[3]))
        return message
    data = _dict(_json(payload)) if text else _legacy_binary(payload)
    named = data.get("channel")
    if named is None:
        named = "shell"  # as the server assumes
    if not isinstance(named, str):
        raise ValueError("bad channel")
    message = Message(named, _dict(data.get("header")))
    if whole:
        message.parent = _dict(data.get("parent_header") or {})
        message.metadata = _dict(data.get("metadata") or {})
        message.content = _dict(data.get("content") or {})
    return message


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:FIRST_LINE]
    return ""


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def execute_event(
    message: Message,
    *,
    person: str,
    kernel: str,
    path: str | None,
    code_full: bool,
    draft: bool = False,
) -> dict[str, Any]:
    """The contract's `execute` event for an execute_request or debug_request. Everything
    that can refuse the message is read here. With `draft`, what only formats (the time, the
    hash, the first line, the kept code) is left to `finish`, which the recorder runs off
    the message's path, in its batch (bench_relay_pumps.py: done before the frame went on,
    that formatting was a quarter of what the recording path cost), when its texts are at
    most DRAFT_CHARS: a larger one is finished here."""
    kind = RECORDED[message.msg_type]
    content = message.content
    extra: str | None = None  # the first line's user_expressions, or a debug command
    if kind == "execute":
        code = content.get("code")
        if not isinstance(code, str):
            raise ValueError("execute_request without code")
        lead = hashed = code
        expressions = content.get("user_expressions") or {}
        if expressions:
            # evaluated after the code and answered in the reply: `pass` with
            # {"x": "open(...).read()"} read a file under the first line "pass" (red team).
            # The line names them; `code` (full) is the text hashed, so the hash checks out
            extra = canonical(expressions)
            hashed = code + extra
    elif kind == "input":
        value = content.get("value")
        lead = hashed = value if isinstance(value, str) else canonical(value)
    else:
        hashed = canonical(content)
        arguments = content.get("arguments") if isinstance(content.get("arguments"), dict) else {}
        expression = arguments.get("expression") if arguments else None
        lead, extra = str(expression or ""), str(content.get("command"))
    event: dict[str, Any] = {
        "event": "execute",
        "at": time.time(),
        "person": person,
        "kernel": kernel,
        "channel": message.channel,
        "kind": kind,
        "msg_id": claim(message.header.get("msg_id")) or "",
        # cut now: a draft kept a 10 MiB cell id whole until its batch, which DRAFT_CHARS
        # does not count
        "cell_id": claim(message.metadata.get("cellId")),
        "path": path,
        "outcome": None,
        _PENDING: (lead, extra, hashed, code_full),
    }
    small = len(lead) + len(extra or "") + len(hashed) <= DRAFT_CHARS
    return event if draft and small else finish(event)


_PENDING = "_pending"  # a draft's texts still to be formatted: (lead, extra, hashed, full)


def finish(event: dict[str, Any]) -> dict[str, Any]:
    """`event` as the spool takes it: a draft's time, hash, first line and kept code
    formatted (in place; an event already finished is returned as it is)."""
    if isinstance(at := event.get("at"), float):
        event["at"] = datetime.fromtimestamp(at, UTC).isoformat(timespec="microseconds")
    pending = event.pop(_PENDING, None)
    if pending is None:
        return event
    lead, extra, hashed, code_full = pending
    first = _first_line(lead)
    if event["kind"] == "execute" and extra is not None:
        first = f"{first} + user_expressions {extra}"
    elif event["kind"] == "debug":
        first = f"{extra} {first}".strip()
    event["code_sha256"] = _sha256(hashed)
    event["first_line"] = recordable(first[:FIRST_LINE])
    if code_full:
        kept = recordable(hashed)
        event["code"] = kept[:FULL_CODE]
        if len(kept) > FULL_CODE:
            event["code_length"] = len(kept)  # cut: the hash still covers all of it
    return event


def _state_only(message: Message) -> bool:
    """A debugger's `debugInfo`: ipykernel answers it from its own state (debugger.py), no
    code runs. JupyterLab sends one at every kernel status change: recording them would bury
    the executions."""
    return message.msg_type == "debug_request" and message.content.get("command") == "debugInfo"


# What reading a message can raise. RecursionError: JSON nested deeper than Python's
# recursion limit (a client's `[[[…`, or a kernel's output in v1, which the server passes as
# sent) is no ValueError; uncaught, it ended the bridge's thread and left the connection hung.
_UNREADABLE = (ValueError, UnicodeDecodeError, struct.error, IndexError, RecursionError)


class KernelSocket:
    """One kernel channels websocket, both ways: `from_client` returns the execute events of
    the messages a chunk completes (raising `Refused` on anything not allowed or not
    readable); `from_server` returns (msg_id, outcome) of the execute_replies."""

    def __init__(self, kernel: str, person: str, subprotocol: str | None, *, code_full: bool):
        self.kernel, self.person, self.code_full = kernel, person, code_full
        self.v1 = subprotocol == V1
        self.client = Frames(MAX_MESSAGE)
        self.server = Replies()
        self.path: str | None = None

    def from_client(self, data: bytes, *, draft: bool = False) -> list[dict[str, Any]]:
        """With `draft`, execute events are left to `finish` (the recorder does)."""
        events = []
        for text, payload in self.client.feed(data):
            # only what runs code is read whole: the rest costs one header parse
            # (three substring tests: the alternation's regular expression took 3 us a `pass`)
            whole = _EXECUTE in payload or _DEBUG in payload or _INPUT in payload
            try:
                message = read_message(text, payload, v1=self.v1, whole=whole)
                if not whole and (message.msg_type in RECORDED or message.msg_type in LIFECYCLE):
                    # the type spelled with JSON escapes ("debug\u005frequest") passes the
                    # byte test: its content would go unread and unrecorded
                    message = read_message(text, payload, v1=self.v1, whole=True)
            except _UNREADABLE as exc:
                raise Refused(f"a kernel message could not be read ({exc})") from None
            allowed = ALLOWED.get(message.channel)
            if allowed is None or message.msg_type not in allowed:
                raise Refused(
                    f"a {message.msg_type[:40]!r} message on channel "
                    f"{message.channel[:20]!r} is not passed to kernels"
                )
            if message.msg_type in RECORDED and not _state_only(message):
                try:
                    events.append(
                        execute_event(
                            message,
                            person=self.person,
                            kernel=self.kernel,
                            path=self.path,
                            code_full=self.code_full,
                            draft=draft,
                        )
                    )
                except (ValueError, RecursionError) as exc:  # user_expressions too deep
                    raise Refused(f"a kernel message could not be read ({exc})") from None
            elif message.msg_type in LIFECYCLE:
                events.append(self._lifecycle(message))
        return events

    def _lifecycle(self, message: Message) -> dict[str, Any]:
        """The `kernel` event of a shutdown_request (a restart when its content says so) or
        an interrupt_request."""
        if message.msg_type == "interrupt_request":
            action = "interrupt"
        else:
            action = "restart" if message.content.get("restart") is True else "shutdown"
        return {
            "event": "kernel",
            "at": now(),
            "person": self.person,
            "kernel": self.kernel,
            "action": action,
            "path": self.path,
        }

    def from_server(self, data: bytes) -> list[tuple[str, str]]:
        outcomes = []
        for text, payload in self.server.feed(data):
            try:
                message = read_message(text, payload, v1=self.v1, whole=True)
            except _UNREADABLE:
                continue  # an answer the relay cannot read costs an outcome, nothing else
            if message.msg_type == "execute_reply":
                status = message.content.get("status")
                outcome = status if status in ("ok", "error", "aborted") else "error"
                outcomes.append((claim(message.parent.get("msg_id")) or "", outcome))
        return outcomes
