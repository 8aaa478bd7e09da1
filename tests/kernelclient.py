"""Run code in a workspace kernel through the hub's proxy, as a person's browser would.

One place for the raw kernel websocket of the tests and benches: the execute_request a
browser sends (JupyterLab's fields), its frame in either of Jupyter's websocket formats
(legacy JSON text or the binary v1 subprotocol), a connection with a person's token, and
reading the answers to one request until the kernel is idle for it."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from jupyter_server.services.kernels.connection.base import (
    deserialize_msg_from_ws_v1,
    serialize_msg_to_ws_v1,
)
from websockets.sync.client import ClientConnection, connect

V1 = "v1.kernel.websocket.jupyter.org"  # jupyter_server's binary kernel websocket protocol


@dataclass
class Execution:
    stdout: str
    result: str
    error: dict | None
    status: str | None = None  # execute_reply's: ok, error or aborted
    msg_id: str = ""


def message(
    msg_type: str,
    content: dict[str, Any],
    *,
    claimed: str = "test",
    metadata: dict[str, Any] | None = None,
    msg_id: str | None = None,
) -> dict[str, Any]:
    """A Jupyter message as a browser builds it, without its channel; its header names
    `claimed` as the user (which the relay must not believe)."""
    return {
        "header": {
            "msg_id": msg_id or uuid.uuid4().hex,
            "username": claimed,
            "session": uuid.uuid4().hex,
            "msg_type": msg_type,
            "version": "5.3",
            "date": dt.datetime.now(dt.UTC).isoformat(),
        },
        "parent_header": {},
        "metadata": metadata or {},
        "content": content,
    }


def execute_request(
    code: str,
    *,
    claimed: str = "test",
    cell_id: str | None = None,
    allow_stdin: bool = False,
    msg_id: str | None = None,
) -> dict[str, Any]:
    """An execute_request with JupyterLab's fields; `cell_id` goes in metadata as its cellId."""
    content = {
        "code": code,
        "silent": False,
        "store_history": False,
        "user_expressions": {},
        "allow_stdin": allow_stdin,
        "stop_on_error": True,
    }
    metadata = None if cell_id is None else {"cellId": cell_id}
    return message("execute_request", content, claimed=claimed, metadata=metadata, msg_id=msg_id)


def frame(message: dict[str, Any], channel: str = "shell", *, v1: bool = False) -> str | bytes:
    """`message` as one websocket frame on `channel`: legacy JSON text, or v1 binary."""
    if v1:
        return serialize_msg_to_ws_v1(message, channel, lambda part: json.dumps(part).encode())
    return json.dumps({**message, "channel": channel, "buffers": []})


def unframe(received: str | bytes, *, v1: bool = False) -> dict[str, Any]:
    """A frame the server sent, as a message: msg_type, header, parent_header, content."""
    if not v1:
        message: dict[str, Any] = json.loads(received)
        return message
    _, parts = deserialize_msg_from_ws_v1(received)
    header = json.loads(parts[0])
    return {
        "msg_type": header["msg_type"],
        "header": header,
        "parent_header": json.loads(parts[1]),
        "content": json.loads(parts[3]),
    }


def channels(
    public_url: str, server: str, kernel_id: str, token: str, *, v1: bool = False
) -> ClientConnection:
    """The kernel's websocket through the hub's proxy, opened with `token` (a person's)."""
    base = public_url.rstrip("/").replace("http://", "ws://")
    return connect(
        f"{base}/user/{server}/api/kernels/{kernel_id}/channels",
        additional_headers={"Authorization": f"token {token}"},
        subprotocols=[V1] if v1 else None,  # type: ignore[list-item]
        open_timeout=30,
    )


def send_and_collect(
    socket: ClientConnection,
    message: dict[str, Any],
    channel: str = "shell",
    timeout: float = 60,
) -> Execution:
    """Send `message` and read the answers to it until both its execute_reply and the
    kernel's idle status for it came (the reply on shell may come before the output on
    iopub); other messages (a colleague's, the kernel's broadcasts) are passed over."""
    v1 = socket.subprotocol == V1
    msg_id = message["header"]["msg_id"]
    socket.send(frame(message, channel, v1=v1))
    stdout, result, error, status, idle = [], [], None, None, False
    while status is None or not idle:
        got = unframe(socket.recv(timeout=timeout), v1=v1)
        if got["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = got["msg_type"], got["content"]
        if kind == "stream":
            stdout.append(content["text"])
        elif kind == "execute_result":
            result.append(content["data"].get("text/plain", ""))
        elif kind == "error":
            error = content
        elif kind == "execute_reply":
            status = content["status"]
        elif kind == "status" and content["execution_state"] == "idle":
            idle = True
    return Execution("".join(stdout), "".join(result), error, status, msg_id)


def run(
    socket: ClientConnection, code: str, *, claimed: str, channel: str = "shell"
) -> tuple[str, str, str | None]:
    """Send an execute_request whose header names `claimed`, with a cell id of its own;
    (its msg_id, its stdout, its reply's status)."""
    msg_id = uuid.uuid4().hex
    request = execute_request(code, claimed=claimed, cell_id=f"cell-{msg_id}", msg_id=msg_id)
    done = send_and_collect(socket, request, channel)
    return msg_id, done.stdout, done.status


def execute(
    public_url: str,
    server: str,
    token: str,
    code: str,
    kernel: str = "dossier",
    timeout: float = 60,
    notebook: str | None = None,
) -> Execution:
    """Run `code` in a new kernel; with `notebook`, the kernel of a session for that path
    (as opening a notebook starts it: in the notebook's folder)."""
    base = f"{public_url.rstrip('/')}/user/{server}"
    headers = {"Authorization": f"token {token}"}
    if notebook is None:
        response = httpx.post(
            f"{base}/api/kernels", headers=headers, json={"name": kernel}, timeout=timeout
        )
        response.raise_for_status()
        kernel_id, ended = response.json()["id"], f"{base}/api/kernels/{response.json()['id']}"
    else:
        session = {"path": notebook, "type": "notebook", "kernel": {"name": kernel}}
        response = httpx.post(
            f"{base}/api/sessions", headers=headers, json=session, timeout=timeout
        )
        response.raise_for_status()
        kernel_id = response.json()["kernel"]["id"]
        ended = f"{base}/api/sessions/{response.json()['id']}"
    try:
        ws_url = base.replace("http://", "ws://") + f"/api/kernels/{kernel_id}/channels"
        with connect(ws_url, additional_headers=headers, open_timeout=timeout) as socket:
            return send_and_collect(socket, execute_request(code), timeout=timeout)
    finally:
        httpx.delete(ended, headers=headers, timeout=timeout)
