"""Strangers cannot lock a team out of its workspace (issue 16, red team C), on the session
hub's running armoede workspace: requests without a login hold at most
netbridge.ANONYMOUS_LIMIT of the bridge's connections, and a member's browser, with its
workspace cookie, still gets JupyterLab through the proxy. A few seconds.

The strangers' connections go straight to the bridge's port, as the proxy's connections for
their requests arrive there. Through the proxy (red team C's measurement: pipelined requests
for the 2.5 MB bundle, read by nobody) how many bridge connections they hold depends on how
many requests node passes on at once and on what the loopback's buffers take whole: one run
in three held too few to reach the limit, and the test read nothing."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

from test_workspaces import login

from dossierhub.workspaces.netbridge import ANONYMOUS_LIMIT

from e2e_hub import PASSWORD, Hub

ARMOEDE = "dossier-armoede"


def bridge_port(hub: Hub) -> int:
    """The port of the armoede workspace's bridge (its command line, as the spawner ran it)."""
    for entry in Path("/proc").iterdir():
        try:
            args = (entry / "cmdline").read_bytes().decode().split("\0")
        except (OSError, UnicodeDecodeError):
            continue
        ours = {"dossierhub.workspaces.netbridge", f"--home={hub.home.root}", "--dossier=armoede"}
        if ours <= set(args):
            return int(next(a for a in args if a.startswith("--port=")).split("=")[1])
    raise AssertionError("no bridge of the armoede workspace runs")


def stranger(port: int, path: str) -> socket.socket:
    """A connection to the bridge that asks for `path` without a login and reads nothing."""
    held = socket.create_connection(("127.0.0.1", port))
    held.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    held.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    return held


def head_of(port: int, path: str) -> bytes:
    """The head of the bridge's answer to a request without a login."""
    with stranger(port, path) as asking:
        asking.settimeout(10)
        return asking.recv(4096).split(b"\r\n\r\n")[0]


def test_strangers_past_the_limit_get_503_and_a_member_still_gets_the_lab(hub: Hub) -> None:
    """The attack for real: strangers ask for the 2.5 MB bundle on more connections than
    ANONYMOUS_LIMIT and read nothing; past the limit they get 503 at once, and a member's
    browser still loads the lab."""
    hub.ensure_running(ARMOEDE, hub.token("a.jansen"))
    static = Path(sys.prefix, "share", "jupyter", "lab", "static")
    bundle = next(static.glob("jlab_core.*.js")).name  # served without a login
    path = f"/user/{ARMOEDE}/static/lab/{bundle}"
    port = bridge_port(hub)
    with login(hub, "a.jansen", PASSWORD) as member:
        first = member.get(f"user/{ARMOEDE}/lab")  # the hub's OAuth gives the workspace cookie
        assert first.status_code == 200 and "jupyter-config-data" in first.text
        assert any(name.startswith(f"jupyterhub-user-{ARMOEDE}") for name in member.cookies)
        held = [stranger(port, path) for _ in range(ANONYMOUS_LIMIT)]
        try:
            deadline = time.monotonic() + 20  # until the bridge has read all their heads
            while not (refused := head_of(port, path)).startswith(b"HTTP/1.1 503"):
                assert time.monotonic() < deadline, f"no stranger was refused: {refused!r}"
                time.sleep(0.1)
            assert b"retry-after: 30" in refused.lower()
            lab = member.get(f"user/{ARMOEDE}/lab", follow_redirects=False)
            assert lab.status_code == 200 and "jupyter-config-data" in lab.text
        finally:
            for connection in held:
                connection.close()
    # the places come back with the strangers' connections
    deadline = time.monotonic() + 10
    while head_of(port, path).startswith(b"HTTP/1.1 503") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert head_of(port, path).startswith(b"HTTP/1.1 200")
