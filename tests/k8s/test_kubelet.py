"""The stand-in kubelet runs a pod as Kubernetes would: under its numeric identity, on its pod IP,
with its volumes (read-only ones truly read-only) and nothing else of the host, stopped on delete;
and it refuses a pod that does not validate against the Kubernetes schema."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from kubelet import running_processes_of, wait_until
from standin import StandIn

UID, GID, FS_GROUP = 61071, 61072, 61073
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

ip = os.environ["SERVICE_URL"].split("//")[1].split(":")[0]
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
    facts = httpx.get(url).json()
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
    assert facts["env"] == f"http://{ip}:{PORT}/"
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
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False
