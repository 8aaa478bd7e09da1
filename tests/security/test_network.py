"""A workspace has no network of the machine's: it cannot listen on the ports the hub, the
service and the proxy leave free while they restart (and so catch the service's token the next
start sends there), reach the service or the proxy's API, or send data elsewhere. Only the
proxy's way in and the hub's API (for its own limited token) are joined to it."""

from __future__ import annotations

import os
import signal
import time

from dossierhub.state.settings import load_settings
from dossierhub.workspaces.hubconfig import ports
from dossierhub.workspaces.servestate import read_serve_state

from e2e_hub import Hub

GRAB = """
import os, socket, subprocess, sys, time
script = '''
import os, socket, sys, time, select
ports, out = [int(p) for p in sys.argv[1].split(",")], sys.argv[2]
held, done, end = {}, set(), time.time() + @SECONDS@
while time.time() < end and not os.path.exists(out + '.stop'):
    for port in ports:
        if port in held or port in done:
            continue
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port)); s.listen(8); held[port] = s
        except OSError:
            s.close()
    ready = select.select(list(held.values()), [], [], 0.05)[0]
    for s in ready:
        conn, _ = s.accept(); conn.settimeout(1)
        try:
            data = conn.recv(65536)
        except OSError:
            data = b""
        with open(out, "ab") as f:
            f.write(data + b"\\\\n----\\\\n")
        conn.close()
        # one request is enough: the real server gets its port back, all looks well
        port = s.getsockname()[1]
        s.close(); del held[port]; done.add(port)
'''
subprocess.Popen([sys.executable, "-c", script, @PORTS@, @OUT@], start_new_session=True,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print("started")
"""

PROBE = """
import socket
print("interfaces", sorted(name for _, name in socket.if_nameindex()))
for port in {ports!r}:
    s = socket.socket(); s.settimeout(2)
    try:
        s.connect(("127.0.0.1", port)); print(port, "open")
    except OSError:
        print(port, "closed")
    s.close()
"""


def test_the_workspace_sees_no_network_but_its_own(hub: Hub, workspace) -> None:
    public, proxy_api, hub_port, service = ports(load_settings(hub.home))
    seen = workspace.run(PROBE.format(ports=[public, proxy_api, service, hub_port]))
    lines = dict(line.split(" ", 1) for line in seen.splitlines())
    assert lines["interfaces"] == "['lo']", seen
    # only the hub's API is joined in (for the server's own limited token)
    assert lines[str(public)] == lines[str(proxy_api)] == lines[str(service)] == "closed", seen
    assert lines[str(hub_port)] == "open", seen


def test_the_workspace_cannot_catch_what_is_sent_to_the_hub(hub: Hub, workspace) -> None:
    public, proxy_api, hub_port, service = ports(load_settings(hub.home))
    out = str(workspace.folder / ".caught")
    started = workspace.run(
        GRAB.replace("@SECONDS@", "60")
        .replace("@PORTS@", repr(f"{hub_port},{service},{proxy_api},{public}"))
        .replace("@OUT@", repr(out))
    )
    assert "started" in started
    time.sleep(1)
    state = read_serve_state(hub.home)
    assert state is not None
    os.kill(state.serve_pid, signal.SIGHUP)  # what apply of a new dossier does
    deadline = time.monotonic() + 90
    while (now := read_serve_state(hub.home)) is None or now.started == state.started:
        assert time.monotonic() < deadline, "the hub did not come back"
        time.sleep(0.2)
    time.sleep(2)
    caught = workspace.folder / ".caught"
    data = caught.read_bytes() if caught.exists() else b""
    token = (hub.home.service_token_file).read_text().strip()
    assert token.encode() not in data, "a workspace caught the service token of the hub's restart"
    assert b"Authorization" not in data, data[:500]
    assert workspace.status() == 200  # and the workspace is still served
    (workspace.folder / ".caught.stop").touch()
