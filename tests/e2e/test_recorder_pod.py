"""The recorder as a workspace pod runs it (netbridge.py in pod mode, issue 16), in a network
namespace made here as a pod's is: loopback up, the pod's sysctl
`net.ipv4.ip_unprivileged_port_start=1024`. It runs as its own number with NET_BIND_SERVICE
alone, listens on 0.0.0.0:80 and sees of HOME only its spool folder, mounted as the kubelet
mounts a subPath. Its upstream, the pod's 127.0.0.1:8888, and the hub's API lead out to the
session hub's proxy (the running armoede workspace behind it), as the stand-in kubelet's
egress ports do: so a person's execute really runs, through the recorder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from test_relay import ARMOEDE, channels, run
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from dossierhub.isolation.podids import pod_id, recorder_pod_id
from dossierhub.isolation.podspec import RECORDER_PORT, SERVER_PORT
from dossierhub.isolation.unixusers import own_execution_spool
from dossierhub.state.home import Home
from dossierhub.state.settings import load_settings
from dossierhub.workspaces import netbridge

from e2e_hub import Hub
from podview import VENV_PYTHON, container_command, pod_view

POD_IP = "127.0.0.2"  # the pod's address as its peers dial it (loopback covers 127/8)


@dataclass
class Pod:
    holder: subprocess.Popen  # holds the network namespace, as a pod's pause process
    inside: netbridge.Sandboxed  # makes sockets in it
    listeners: list[socket.socket]


def _egress(pod: Pod, port_inside: int, host_port: int) -> None:
    """The pod's 127.0.0.1:`port_inside` joined to the machine's 127.0.0.1:`host_port` with
    netbridge's own pump (the stand-in kubelet's egress)."""
    listener = pod.inside.call(lambda: netbridge._listener(port_inside))
    assert isinstance(listener, socket.socket)
    pod.listeners.append(listener)

    def accept() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed at the end of the module
            upstream = netbridge._connector(host_port)()
            netbridge._Joined(client, upstream, lambda: None).start()

    threading.Thread(target=accept, daemon=True).start()


@pytest.fixture(scope="module")
def pod(hub: Hub) -> Iterator[Pod]:
    script = (
        "ip link set lo up; sysctl -qw net.ipv4.ip_unprivileged_port_start=1024; exec sleep 600"
    )
    holder = subprocess.Popen(["unshare", "--net", "sh", "-ec", script])
    deadline = time.monotonic() + 10
    while Path(f"/proc/{holder.pid}/ns/net").resolve() == Path("/proc/self/ns/net").resolve():
        assert time.monotonic() < deadline, "the pod's namespace did not come up"
        time.sleep(0.02)
    time.sleep(0.1)  # lo up and the sysctl set before `sleep` starts
    netns = os.open(f"/proc/{holder.pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    inside = netbridge.Sandboxed(netns)
    inside.start()
    inside.ready.wait()
    made = Pod(holder, inside, [])
    proxy = urlsplit(hub.url).port
    assert proxy is not None
    _egress(made, SERVER_PORT, proxy)  # "the server": the proxy, the workspace behind it
    _egress(made, proxy, proxy)  # the hub's API, at the address the spawner gives the pod
    yield made
    for listener in made.listeners:
        listener.close()
    holder.kill()
    holder.wait()
    os.close(netns)


@dataclass
class Recorder:
    home: Home
    process: subprocess.Popen
    number: int


@pytest.fixture(scope="module")
def recorder(hub: Hub, pod: Pod) -> Iterator[Recorder]:
    """The recorder on a HOME of its own applied for pods: its spool folder as apply makes it
    (HOME's path passable by any uid, as a pod's mount of it is)."""
    parent = Path(tempfile.mkdtemp(prefix="dossierhub-recorder-pod-"))
    os.chmod(parent, 0o711)
    root = parent / "home"
    root.mkdir()
    home = Home(root)
    home.settings_file.write_text(
        yaml.safe_dump(
            {"hub": {"spawner": "kubernetes"}, "kubernetes": {"image": "registry.example.org/w:1"}}
        )
    )
    number = recorder_pod_id(home, "armoede")
    own_execution_spool(home, "armoede", number)
    argv = [
        VENV_PYTHON,
        "-I",
        "-m",
        "dossierhub.workspaces.netbridge",
        f"--listen=0.0.0.0:{RECORDER_PORT}",
        f"--upstream=127.0.0.1:{SERVER_PORT}",
        f"--home={root}",
        "--dossier=armoede",
        f"--hub-api={hub.url}hub/api",
    ]
    command = container_command(
        number,
        argv,
        mounts=pod_view(home, "armoede", root.parent / "staging"),
        capabilities=("net_bind_service",),
        netns=pod.holder.pid,
    )
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    started = process.stdout.readline()
    assert "recording executions" in started, process.stderr.read() if process.stderr else ""
    yield Recorder(home, process, number)
    if process.poll() is None:
        process.kill()
    process.communicate()
    shutil.rmtree(parent)


def through_recorder(pod: Pod, kernel: str, token: str) -> ClientConnection:
    """A kernel websocket opened as a peer of the pod opens it: at podIP:80."""
    made = pod.inside.call(lambda: socket.create_connection((POD_IP, RECORDER_PORT), timeout=10))
    assert isinstance(made, socket.socket)
    url = f"ws://{POD_IP}/user/{ARMOEDE}/api/kernels/{kernel}/channels"
    return connect(
        url, sock=made, additional_headers={"Authorization": f"token {token}"}, open_timeout=30
    )


@pytest.fixture(scope="module")
def kernel(hub: Hub) -> Iterator[tuple[str, str]]:
    import httpx

    token = hub.token("a.jansen")
    hub.ensure_running(ARMOEDE, token)
    base = f"{hub.url}user/{ARMOEDE}/api/kernels"
    headers = {"Authorization": f"token {token}"}
    started = httpx.post(base, headers=headers, json={"name": "dossier"}, timeout=60)
    assert started.status_code == 201, started.text
    kernel_id = started.json()["id"]
    yield kernel_id, token
    httpx.delete(f"{base}/{kernel_id}", headers=headers, timeout=60)


def spooled_events(home: Home) -> list[dict[str, Any]]:
    events = []
    for path in sorted(home.execution_spool_dir("armoede").glob("*.json")):
        events += json.loads(path.read_text())["events"]
    return events


def test_the_workspace_token_opens_no_kernel_through_the_recorder(
    hub: Hub, pod: Pod, recorder: Recorder, kernel: tuple[str, str]
) -> None:
    kernel_id, token = kernel
    with channels(hub, kernel_id, token) as through_proxy:  # the kernel reads its own env
        code = "import os; print(os.environ['JUPYTERHUB_API_TOKEN'])"
        _, out, _ = run(through_proxy, code, claimed="a.jansen")
    workspace_token = out.strip()
    assert workspace_token
    with pytest.raises(InvalidStatus) as refused:
        through_recorder(pod, kernel_id, workspace_token)
    assert refused.value.response.status_code == 403


def test_a_person_s_execute_is_recorded_and_spooled_as_the_recorder_s_even_at_sigterm(
    pod: Pod, recorder: Recorder, kernel: tuple[str, str]
) -> None:
    """a.jansen's execute goes through the recorder and runs; the recorder is stopped as the
    kubelet stops it (SIGTERM) while her socket is still open, before its 2 s flush: the
    execution is in its spool, under her name, as a batch the service's group may read."""
    kernel_id, token = kernel
    code = "print(6 * 7)"
    with through_recorder(pod, kernel_id, token) as socket_:
        msg_id, out, status = run(socket_, code, claimed="b.devries")
        assert (out.strip(), status) == ("42", "ok")
        recorder.process.send_signal(signal.SIGTERM)
        assert recorder.process.wait(timeout=10) == 0
    said = recorder.process.stderr.read() if recorder.process.stderr else ""
    found = [
        e
        for e in spooled_events(recorder.home)
        if e.get("msg_id") == msg_id and e["event"] == "execute"  # its outcome may follow apart
    ]
    assert len(found) == 1, said
    (event,) = found
    assert event["person"] == "a.jansen"  # never the name the message claims
    assert event["code_sha256"] == hashlib.sha256(code.encode()).hexdigest()
    assert event["kernel"] == kernel_id
    for batch in recorder.home.execution_spool_dir("armoede").glob("*.json"):
        info = batch.stat()
        assert (info.st_uid, info.st_mode & 0o777) == (recorder.number, 0o640)
        # the control identity's group (the service's), through the folder's setgid bit
        assert info.st_gid == load_settings(recorder.home).kubernetes.control_uid


def test_no_other_container_takes_the_recorder_s_port_even_when_it_is_gone(
    pod: Pod, recorder: Recorder
) -> None:
    """The recorder stopped (the test before): the workspace's number, without the
    capability, cannot bind port 80 in the pod (the sysctl), only ports from 1024 on."""
    assert recorder.process.poll() is not None
    workspace = pod_id(recorder.home, "armoede")
    code = (
        "import socket\n"
        "for port in (80, 1024):\n"
        "    s = socket.socket()\n"
        "    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the recorder's TIME_WAIT\n"
        "    try:\n"
        "        s.bind(('0.0.0.0', port)); print('bound', port)\n"
        "    except PermissionError:\n"
        "        print('refused', port)\n"
    )
    argv = [VENV_PYTHON, "-I", "-c", code]

    def bind_as(number: int, *capabilities: str) -> list[str]:
        command = container_command(number, argv, capabilities=capabilities, netns=pod.holder.pid)
        result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
        assert result.returncode == 0, result.stderr
        return result.stdout.split("\n")[:2]

    assert bind_as(workspace) == ["refused 80", "bound 1024"]
    # the recorder's number itself only through its capability: it is the capability that
    # holds the port, and the workspace's container has none (kubespawner.py)
    assert bind_as(recorder.number) == ["refused 80", "bound 1024"]
    assert bind_as(recorder.number, "net_bind_service") == ["bound 80", "bound 1024"]
