"""A person's websocket frames, as the recording bridge passes them on, read by the workspace
server's own websocket reader (tornado's, which jupyter_server's kernel channels use): an
attacker's byte sequences (issue 16, red team D). The bridge reads a person's frames with its
own reader (execwatch.Frames); whatever message tornado delivers from the bytes the bridge
passed on must be one the bridge read first, in order, or an execution runs unrecorded.
tests/hub/test_execwatch.py checks that reader against websockets' parser; this checks it
against the server's. One tornado server in a thread, one connection a case: milliseconds."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import random
import socket
import threading
from collections.abc import Iterator

import pytest
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application
from tornado.websocket import WebSocketHandler

from dossierhub.workspaces import execwatch
from dossierhub.workspaces.execwatch import MAX_MESSAGE, Refused

EXEC = b'{"header": {"msg_type": "execute_request"}, "content": {"code": "hidden()"}}'
HANDSHAKE = (
    b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def frame(
    first: int, payload: bytes, *, mask: bool = True, length: int | None = None, key: bytes = b""
) -> bytes:
    """A frame as an attacker writes it: any first byte, any length field (`length` may say
    more than the payload holds, or be written in a longer form than needed: see `wide`)."""
    size = len(payload) if length is None else length
    if size < 126:
        head = bytes([first, size | 0x80 * mask])
    elif size < 65536:
        head = bytes([first, 126 | 0x80 * mask]) + size.to_bytes(2, "big")
    else:
        head = bytes([first, 127 | 0x80 * mask]) + size.to_bytes(8, "big")
    if not mask:
        return head + payload
    if key == bytes(4):  # masks nothing: a large payload needs no masking by hand
        return head + key + payload
    key = key or b"\x5a\x17\xc3\x08"
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def wide(first: int, payload: bytes, bits: int) -> bytes:
    """A masked frame whose length is written in 16 or 64 bits however short it is."""
    field = (126).to_bytes(1, "big") if bits == 16 else (127).to_bytes(1, "big")
    size = len(payload).to_bytes(bits // 8, "big")
    key = b"\x01\x02\x03\x04"
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes([first, field[0] | 0x80]) + size + key + body


class Tornado:
    """A tornado websocket server on a thread of its own; `read(data)` is the messages one
    connection's handler received from `data` (sent after the handshake, then EOF)."""

    def __init__(self) -> None:
        self.done: queue.Queue[list[tuple[bool, bytes]]] = queue.Queue()
        self.loop = asyncio.new_event_loop()
        self.port = 0
        started = threading.Event()
        threading.Thread(target=self._serve, args=(started,), daemon=True).start()
        assert started.wait(10), "tornado did not start"

    def _serve(self, started: threading.Event) -> None:
        done = self.done

        class Handler(WebSocketHandler):
            def open(self) -> None:
                self.got: list[tuple[bool, bytes]] = []

            def on_message(self, message: str | bytes) -> None:
                text = isinstance(message, str)
                self.got.append((text, message.encode() if text else message))

            def on_close(self) -> None:
                done.put(self.got)

        async def serve() -> None:
            listeners = bind_sockets(0, "127.0.0.1")
            self.port = listeners[0].getsockname()[1]
            HTTPServer(Application([("/ws", Handler)])).add_sockets(listeners)
            self.stopping = asyncio.Event()
            started.set()
            await self.stopping.wait()

        self.loop.run_until_complete(serve())

    def read(self, data: bytes) -> list[tuple[bool, bytes]]:
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as client:
            client.sendall(HANDSHAKE)
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += client.recv(4096)
            assert answer.startswith(b"HTTP/1.1 101"), answer
            with contextlib.suppress(OSError):  # tornado may have closed it already
                client.sendall(data)
                client.shutdown(socket.SHUT_WR)
            return self.done.get(timeout=10)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.stopping.set)


@pytest.fixture(scope="module")
def tornado() -> Iterator[Tornado]:
    server = Tornado()
    yield server
    server.stop()


def bridged(chunks: list[bytes]) -> tuple[list[tuple[bool, bytes]], bytes]:
    """What the bridge read from `chunks` (as the client's reads came) and the bytes it
    passed on: a chunk goes on once read, minus what follows a close; a refused chunk never
    goes on and ends the connection (netbridge._Watched._client_frames)."""
    frames = execwatch.Frames(MAX_MESSAGE)
    read: list[tuple[bool, bytes]] = []
    sent = bytearray()
    for chunk in chunks:
        try:
            read += frames.feed(chunk)
        except Refused:
            break
        sent += chunk[: len(chunk) - frames.dropped] if frames.closed else chunk
    return read, bytes(sent)


def splits(data: bytes, how: str) -> list[bytes]:
    if how == "whole":
        return [data]
    if how == "bytes":
        return [data[i : i + 1] for i in range(len(data))]
    cuts = sorted(random.Random(len(data)).sample(range(1, len(data)), min(12, len(data) - 1)))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


ATTACKS = {
    "plain": frame(0x81, EXEC),
    "unmasked, which tornado takes": frame(0x81, EXEC, mask=False),
    "unmasked after a masked one": frame(0x81, b"{}") + frame(0x81, EXEC, mask=False),
    "after a close": frame(0x88, b"\x03\xe8") + frame(0x81, EXEC),
    "after an empty close": frame(0x88, b"") + frame(0x81, EXEC),
    "after a one-byte close": frame(0x88, b"\x03") + frame(0x81, EXEC),
    "close inside fragments": frame(0x01, EXEC[:9]) + frame(0x88, b"") + frame(0x80, EXEC[9:]),
    "ping and pong inside fragments": frame(0x01, EXEC[:9])
    + frame(0x89, b"p" * 125)
    + frame(0x8A, b"")
    + frame(0x80, EXEC[9:]),
    "empty fragments": frame(0x01, b"") + frame(0x00, EXEC) + frame(0x80, b""),
    "lengths written long": wide(0x81, EXEC, 16) + wide(0x81, EXEC, 64),
    "a 64-bit length with its top bit": frame(0x81, EXEC[:4], length=1 << 63) + EXEC[4:],
    "reserved bit on a continuation": frame(0x01, EXEC[:9]) + frame(0xC0, EXEC[9:]),
    "opcode 3 in fragments": frame(0x03, EXEC[:9]) + frame(0x80, EXEC[9:]),
    "opcode 11 then a message": frame(0x8B, b"") + frame(0x81, EXEC),
    "a fragmented ping": frame(0x09, b"") + frame(0x80, EXEC),
    "a continuation first": frame(0x80, b"x") + frame(0x81, EXEC),
    "a message inside another": frame(0x01, b"{") + frame(0x81, EXEC),
    "a ping's 126-byte length": frame(0x89, b"p" * 126) + frame(0x81, EXEC),
}


@pytest.mark.parametrize("how", ["whole", "bytes", "random"])
@pytest.mark.parametrize("attack", ATTACKS)
def test_the_server_gets_no_message_the_bridge_did_not_read(tornado, attack, how):
    read, sent = bridged(splits(ATTACKS[attack], how))
    got = tornado.read(sent)
    assert got == read[: len(got)], f"{attack}: tornado ran {got!r}, the bridge read {read!r}"


def test_a_message_at_the_size_limit_and_past_it_across_a_ping(tornado):
    """10 MiB whole reaches both; a ping inside fragments at the limit: tornado counts it
    against the message (and drops the connection), the bridge does not (it passes on what
    tornado then refuses: recorded, never run, the safe side)."""
    body = b"x" * (MAX_MESSAGE - 16)
    zero = bytes(4)
    at_limit = frame(0x82, body + b"y" * 16, key=zero)
    read, sent = bridged(splits(at_limit, "random"))
    assert tornado.read(sent) == read == [(False, body + b"y" * 16)]
    across = frame(0x02, body, key=zero) + frame(0x89, b"p" * 100) + frame(0x80, b"y" * 16)
    read, sent = bridged([across])
    assert read == [(False, body + b"y" * 16)]
    assert tornado.read(sent) == []
