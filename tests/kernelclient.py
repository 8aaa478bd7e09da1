"""Run code in a workspace kernel through the hub's proxy, as a person's browser would."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass

import httpx
from websockets.sync.client import connect


@dataclass
class Execution:
    stdout: str
    result: str
    error: dict | None


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
            msg_id = uuid.uuid4().hex
            socket.send(
                json.dumps(
                    {
                        "header": {
                            "msg_id": msg_id,
                            "username": "test",
                            "session": uuid.uuid4().hex,
                            "msg_type": "execute_request",
                            "version": "5.3",
                            "date": dt.datetime.now(dt.UTC).isoformat(),
                        },
                        "parent_header": {},
                        "metadata": {},
                        "channel": "shell",
                        "buffers": [],
                        "content": {
                            "code": code,
                            "silent": False,
                            "store_history": False,
                            "user_expressions": {},
                            "allow_stdin": False,
                            "stop_on_error": True,
                        },
                    }
                )
            )
            return _collect(socket, msg_id, timeout)
    finally:
        httpx.delete(ended, headers=headers, timeout=timeout)


def _collect(socket, msg_id: str, timeout: float) -> Execution:  # type: ignore[no-untyped-def]
    stdout, result, error = [], [], None
    replied = idle = False
    while not (replied and idle):
        message = json.loads(socket.recv(timeout=timeout))
        if message.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind, content = message["msg_type"], message["content"]
        if kind == "stream":
            stdout.append(content["text"])
        elif kind == "execute_result":
            result.append(content["data"].get("text/plain", ""))
        elif kind == "error":
            error = content
        elif kind == "execute_reply":
            replied = True
        elif kind == "status" and content["execution_state"] == "idle":
            idle = True
    return Execution("".join(stdout), "".join(result), error)
