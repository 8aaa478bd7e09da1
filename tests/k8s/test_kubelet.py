"""The stand-in kubelet runs a pod as Kubernetes would: under its numeric identity, on its pod IP,
with its volumes (read-only ones truly read-only) and nothing else of the host, stopped on delete;
and it refuses a pod that does not validate against the Kubernetes schema."""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubelet import running_processes_of, wait_until
from standin import StandIn

UID, GID, FS_GROUP = 61071, 61072, 61073
HTTP = httpx.Client(timeout=10)  # one client: each new one costs TLS set-up (~0.4 s when busy)
PORT = 8899

# What the pod reports about itself at GET /: who it runs as and what it can touch
PROBE = r"""
import errno, http.server, json, os, pathlib, sys

def attempt(action):
    try:
        action()
        return "ok"
    except OSError as error:
        return errno.errorcode[error.errno]

def facts():
    return {
        "uid": os.getuid(), "gid": os.getgid(), "groups": sorted(os.getgroups()),
        "read_extract": pathlib.Path("/tmp/home/extracts/e.txt").read_text(),
        "write_extracts": attempt(lambda: pathlib.Path("/tmp/home/extracts/new").write_text("x")),
        "write_work": attempt(lambda: pathlib.Path("/tmp/home/work/new").write_text("x")),
        "write_tmp": attempt(lambda: pathlib.Path("/tmp/scratch").write_text("x")),
        "read_outside": attempt(lambda: os.listdir(sys.argv[1])),
        "env": os.environ.get("SERVICE_URL"),
    }

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps(facts()).encode()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)

ip = os.environ["SERVICE_URL"].split("//")[1].split(":")[0]  # 0.0.0.0, as the pod's env says
http.server.HTTPServer((ip, int(sys.argv[2])), Handler).serve_forever()
"""


def pod(name: str, **container_extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "probe"}},
        "spec": {
            "securityContext": {
                "runAsUser": UID,
                "runAsGroup": GID,
                "fsGroup": FS_GROUP,
                "runAsNonRoot": True,
            },
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "probe",
                    "image": "standin/probe:1",
                    "command": [sys.executable, "-c", PROBE],
                    "args": ["/var/lib", str(PORT)],  # /var/lib: on the host, not in the pod
                    "env": [{"name": "SERVICE_URL", "value": f"http://0.0.0.0:{PORT}/"}],
                    "ports": [{"containerPort": PORT, "name": "http"}],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [
                        {
                            "name": "data",
                            "mountPath": "/tmp/home/extracts",
                            "subPath": "extracts",
                            "readOnly": True,
                        },
                        {"name": "data", "mountPath": "/tmp/home/work", "subPath": "work"},
                        # listed last, mounted first (as a container runtime sorts mounts)
                        {"name": "scratch", "mountPath": "/tmp"},
                    ],
                    **container_extra,
                }
            ],
            "volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": "dossiers"}},
                {"name": "scratch", "emptyDir": {}},
            ],
        },
    }


def claim(root: Path) -> Path:
    """A claim folder with an extract the pod may read and a folder it may write.

    Both belong to the pod's uid: only the read-only mount keeps it from writing extracts.
    """
    (root / "extracts").mkdir(parents=True)
    (root / "extracts" / "e.txt").write_text("extract")
    (root / "work").mkdir()
    for folder in ("extracts", "work"):
        os.chown(root / folder, UID, GID)
    return root


def test_pod_runs_as_its_identity_on_its_ip_with_its_volumes_then_stops_on_delete(
    k8s_standin: StandIn, tmp_path: Path
) -> None:
    k8s_standin.kubelet.claims["dossiers"] = claim(tmp_path / "claim")
    started = time.monotonic()
    k8s_standin.create_pod(pod("probe-a"))
    wait_until(
        lambda: (
            (k8s_standin.get_pod("default", "probe-a") or {}).get("status", {}).get("phase")
            == "Running"
        ),
        what="pod probe-a Running",
    )
    status = k8s_standin.get_pod("default", "probe-a")["status"]  # type: ignore[index]
    ip = status["podIP"]
    assert ip.startswith("127.0.8.") and ip != "127.0.0.1"
    assert status["containerStatuses"][0]["ready"] is True
    url = f"http://{ip}:{PORT}/"
    wait_until(lambda: _answers(url), what=f"the pod answering on {url}")
    ready = time.monotonic() - started
    facts = HTTP.get(url).json()
    print(f"stand-in pod: created to answering in {ready:.2f} s")

    assert (facts["uid"], facts["gid"]) == (UID, GID)
    assert facts["groups"] == sorted({GID, FS_GROUP})
    assert facts["read_extract"] == "extract"
    assert facts["write_extracts"] == "EROFS"  # the read-only mount
    assert facts["write_work"] == "ok"
    assert facts["write_tmp"] == "ok"  # the emptyDir
    assert (tmp_path / "claim" / "work" / "new").read_text() == "x"
    assert not (tmp_path / "claim" / "extracts" / "new").exists()
    assert facts["read_outside"] == "ENOENT"  # the host's other folders are not there
    assert facts["env"] == f"http://0.0.0.0:{PORT}/"  # as given: the pod has its own network
    assert running_processes_of(UID)

    k8s_standin.delete_pod("default", "probe-a")
    wait_until(lambda: k8s_standin.get_pod("default", "probe-a") is None, what="pod gone")
    assert not running_processes_of(UID), "the pod's processes outlived its deletion"
    assert not _answers(url)


def test_pod_that_does_not_validate_is_refused_and_never_runs(
    k8s_standin: StandIn, tmp_path: Path
) -> None:
    k8s_standin.kubelet.claims["dossiers"] = claim(tmp_path / "claim")
    k8s_standin.create_pod(pod("probe-bad", readOnlyRootFilesytem=True))  # misspelt: unknown field
    wait_until(
        lambda: (
            (k8s_standin.get_pod("default", "probe-bad") or {}).get("status", {}).get("phase")
            == "Failed"
        ),
        what="pod probe-bad Failed",
    )
    status = k8s_standin.get_pod("default", "probe-bad")["status"]  # type: ignore[index]
    assert status["reason"] == "Invalid"
    assert "readOnlyRootFilesytem" in status["message"]
    assert "podIP" not in status
    assert not running_processes_of(UID)


def test_root_pod_with_run_as_non_root_is_refused(k8s_standin: StandIn) -> None:
    manifest = pod("probe-root")
    del manifest["spec"]["securityContext"]["runAsUser"]
    manifest["spec"]["containers"][0]["volumeMounts"] = []
    del manifest["spec"]["volumes"]
    k8s_standin.create_pod(manifest)
    wait_until(
        lambda: (
            (k8s_standin.get_pod("default", "probe-root") or {}).get("status", {}).get("reason")
            is not None
        ),
        what="pod probe-root refused",
    )
    status = k8s_standin.get_pod("default", "probe-root")["status"]  # type: ignore[index]
    assert (status["phase"], status["reason"]) == ("Failed", "CreateContainerConfigError")
    assert "runAsNonRoot" in status["message"]


def _answers(url: str) -> bool:
    try:
        return HTTP.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


# --- a pod's network, its containers' sandboxes, capabilities and sysctls (podnet.py) ---

# Each container answers GET / on its facts port with what it sees from inside the pod; with
# --private it also serves 127.0.0.1:PRIVATE (a server meant for its pod alone) and an
# undeclared port on 0.0.0.0.
POD_PROBE = r"""
import errno, http.server, json, os, signal, socket, sys, threading, urllib.request

signal.signal(signal.SIGTERM, lambda *_: os._exit(0))  # PID 1 ignores what it does not handle

name, port, peers = sys.argv[1], int(sys.argv[2]), [int(p) for p in sys.argv[3].split(",")]

def attempt(action):
    try:
        return action()
    except OSError as error:
        return errno.errorcode.get(error.errno, str(error))

def bind(port):
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", port))
    return "ok"

def reach(port):
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        return "ok"

def cmdlines():
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            found.append(attempt(lambda: open(f"/proc/{pid}/cmdline", "rb").read().decode()))
    return found

def facts():
    private = f"http://127.0.0.1:{PRIVATE}/"
    return {
        "name": name, "uid": os.getuid(), "bind80": attempt(lambda: bind(80)),
        "private": attempt(lambda: urllib.request.urlopen(private, timeout=5).read().decode()),
        "reach": {p: attempt(lambda: reach(p)) for p in peers},
        "processes": cmdlines(),
    }

class Facts(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps(facts()).encode()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)

class Private(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(f"{name}'s own".encode())

if "--private" in sys.argv:
    for address in (("127.0.0.1", PRIVATE), ("0.0.0.0", UNDECLARED)):
        server = http.server.HTTPServer(address, Private)
        threading.Thread(target=server.serve_forever, daemon=True).start()
http.server.HTTPServer(("0.0.0.0", port), Facts).serve_forever()
"""
PRIVATE, UNDECLARED = 7001, 7002
UID_B, UID_C = 61074, 61075


def probe_container(
    name: str, port: int, peers: list[int], *extra: str, python: str = sys.executable
) -> dict[str, Any]:
    script = POD_PROBE.replace("PRIVATE", str(PRIVATE)).replace("UNDECLARED", str(UNDECLARED))
    return {
        "name": name,
        "image": "standin/probe:1",
        "command": [python, "-c", script, name, str(port), ",".join(map(str, peers)), *extra],
        "ports": [{"containerPort": port}],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }


def network_pod(name: str, containers: list[dict[str, Any]], **context: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "securityContext": {"runAsUser": UID, "runAsGroup": GID, "runAsNonRoot": True}
            | context,
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 1,
            "containers": containers,
        },
    }


def facts_of(k8s: StandIn, pod_name: str, port: int) -> dict[str, Any]:
    wait_until(
        lambda: (
            (k8s.get_pod("default", pod_name) or {}).get("status", {}).get("phase")
            in ("Running", "Failed")
        ),
        what=f"pod {pod_name} started",
    )
    status = k8s.get_pod("default", pod_name)["status"]  # type: ignore[index]
    assert status["phase"] == "Running", status
    url = f"http://{status['podIP']}:{port}/"
    wait_until(lambda: _answers(url), what=f"{pod_name} answering on {url}")
    return dict(HTTP.get(url, timeout=10).json())


def test_a_pod_s_containers_share_its_network_and_nothing_else(
    k8s_standin_module: StandIn,
) -> None:
    """Container b reaches container a's 127.0.0.1 server; the host reaches only the declared
    ports served on 0.0.0.0; neither container sees the other's processes; with the safe
    sysctl at 1024 a non-root container binds port 80 only with NET_BIND_SERVICE from its
    executable's file capability (as on containerd), and the pod reaches the host only at the
    ports the kubelet makes its way out."""
    k8s = k8s_standin_module
    python_with_capability = str(Path(sys.executable).resolve())  # the "image" file with it
    k8s.kubelet.file_capabilities[python_with_capability] = {"NET_BIND_SERVICE"}
    with socket.socket() as host_only:  # a host server no pod was given a way to
        host_only.bind(("127.0.0.1", 0))
        host_only.listen()
        outside = host_only.getsockname()[1]
        peers = [PRIVATE, k8s.port, outside]
        a = probe_container("a", 8801, peers, "--private")
        a["ports"] += [{"containerPort": PRIVATE}]  # declared, yet bound to 127.0.0.1 inside
        b = probe_container("b", 8802, peers, python=python_with_capability)
        c = probe_container("c", 8803, peers)
        for container, uid in ((b, UID_B), (c, UID_C)):
            container["securityContext"]["runAsUser"] = uid
            container["securityContext"]["capabilities"]["add"] = ["NET_BIND_SERVICE"]
        sysctls = [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "1024"}]
        started = time.monotonic()
        k8s.create_pod(network_pod("net", [a, b, c], sysctls=sysctls))
        # and one without the sysctl: the runtime's default (0) lets any container bind 80
        k8s.create_pod(network_pod("plain", [probe_container("a", 8801, [PRIVATE])]))
        seen = {name: facts_of(k8s, "net", port) for name, port in (("a", 8801), ("b", 8802))}
        print(f"stand-in: three-container pod answering in {time.monotonic() - started:.2f} s")
        seen["c"] = facts_of(k8s, "net", 8803)
    ip = k8s.kubelet.pods[("default", "net")].ip

    # the pod's loopback is its containers' own: b reaches a's private server
    assert seen["b"]["private"] == seen["c"]["private"] == "a's own"
    # the host reaches the declared port served on 0.0.0.0, not a's private one nor an
    # undeclared port
    assert HTTP.get(f"http://{ip}:8801/", timeout=5).status_code == 200
    for port in (PRIVATE, UNDECLARED):
        with pytest.raises(httpx.TransportError):
            HTTP.get(f"http://{ip}:{port}/", timeout=5)
    # out: the API server's port, which the kubelet forwards; not another host port
    for facts in seen.values():
        assert facts["reach"] == {
            str(PRIVATE): "ok",
            str(k8s.port): "ok",
            str(outside): "ECONNREFUSED",
        }
    # each container's processes are its own
    for name, facts in seen.items():
        assert facts["processes"], name
        assert all(f"\0{name}\0" in line for line in facts["processes"]), (name, facts)
    # port 80 with the sysctl at 1024: only b's executable carries the capability
    assert (seen["a"]["uid"], seen["b"]["uid"], seen["c"]["uid"]) == (UID, UID_B, UID_C)
    assert (seen["a"]["bind80"], seen["b"]["bind80"], seen["c"]["bind80"]) == (
        "EACCES",
        "ok",
        "EACCES",
    )
    statuses = k8s.get_pod("default", "net")["status"]["containerStatuses"]  # type: ignore[index]
    assert [(s["name"], s["ready"]) for s in statuses] == [("a", True), ("b", True), ("c", True)]
    assert facts_of(k8s, "plain", 8801)["bind80"] == "ok"


def test_what_the_restricted_standard_and_the_kubelet_forbid_fails_the_pod(
    k8s_standin_module: StandIn,
) -> None:
    k8s = k8s_standin_module
    raw = probe_container("a", 8801, [PRIVATE])
    raw["securityContext"]["capabilities"]["add"] = ["NET_RAW"]
    shared = network_pod("shared", [probe_container("a", 8801, [PRIVATE])])
    shared["spec"]["shareProcessNamespace"] = True
    unsafe = [{"name": "net.core.somaxconn", "value": "1024"}]
    pods = {
        "raw": (network_pod("raw", [raw]), "Forbidden", "NET_RAW"),
        "shared": (shared, "Unsupported", "shareProcessNamespace"),
        "unsafe": (
            network_pod("unsafe", [probe_container("a", 8801, [PRIVATE])], sysctls=unsafe),
            "SysctlForbidden",
            "net.core.somaxconn",
        ),
    }
    for manifest, _, _ in pods.values():
        k8s.create_pod(manifest)
    for name, (_, reason, named) in pods.items():
        wait_until(
            lambda n=name: (k8s.get_pod("default", n) or {}).get("status", {}).get("reason"),
            what=f"pod {name} refused",
        )
        status = k8s.get_pod("default", name)["status"]  # type: ignore[index]
        assert (status["phase"], status["reason"]) == ("Failed", reason), status
        assert named in status["message"]
        assert "podIP" not in status and ("default", name) not in k8s.kubelet.pods
