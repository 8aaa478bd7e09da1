"""The parts of a pod's spec that decide what a dossier's pod may touch, shared by the
workspace's pod (workspaces/kubespawner.py) and a report run's Job (reports/jobs.py), so the
two cannot drift apart: which folders of HOME's shared volume it mounts, who it runs as, and
how much memory and CPU it gets. Pure functions, tested as values and validated against the
Kubernetes schemas offline (tests/hub/test_kubespawner.py, tests/hub/test_report_jobs.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dossierhub.isolation.environment import DossierEnvironment
from dossierhub.state.home import Home

DOSSIER_LABEL = "dossierhub.io/dossier"
ROLE_LABEL = "dossierhub.io/role"  # workspace, or report
HOME_VOLUME = "dossierhub-home"
TMP_VOLUME = "tmp"

RECORDER = "recorder"  # the workspace pod's second container (netbridge.py in pod mode)
RECORDER_PORT = 80
"""The pod's one way in: the recorder's port. Below 1024, so that with the pod's sysctl
(`UNPRIVILEGED_PORTS`) only a container holding NET_BIND_SERVICE, the recorder, can take it:
a kernel cannot, even when the recorder has died."""
SERVER_PORT = 8888
"""The workspace server's port, on the pod's 127.0.0.1 only: reachable from inside the pod."""
UNPRIVILEGED_PORTS = {"name": "net.ipv4.ip_unprivileged_port_start", "value": "1024"}
"""A safe sysctl (namespaced per pod): container runtimes set it to 0 by default, which
would let any container of the pod take port 80."""
RECORDER_PYTHON = "python-recorder"
"""The recorder's interpreter in the workspace image: a copy of the environment's Python (beside
it, so the environment holds) carrying the file capability cap_net_bind_service=+ep
(deploy/images/Dockerfile). containerd and CRI-O give a non-root container's process an added
capability only through its executable's file capability (kubernetes/kubernetes#56374: no
ambient capabilities), and only within the container's own set: the workspace's container,
which adds none, gets nothing from running it."""
RECORDER_RESOURCES = {"limits": {"memory": "256Mi", "cpu": "1"}, "requests": {"memory": "64Mi"}}


@dataclass(frozen=True)
class PodStorage:
    volumes: list[dict[str, Any]]
    mounts: list[dict[str, Any]]


def home_storage(
    home: Home, claim: str, folders: list[tuple[Path, bool]], tmp_size: str | None = None
) -> PodStorage:
    """HOME's volume claim `claim` (its root is HOME), mounted as `folders` only, each
    (folder, read-only) at the path the hub sees it at (a subPath of the claim: a folder, so
    apply's atomic swap inside it stays visible), plus a private /tmp (the root filesystem
    is read-only) of at most `tmp_size`, so one pod cannot fill the node's disk (the kubelet
    evicts a pod past it)."""
    volumes: list[dict[str, Any]] = [
        {"name": HOME_VOLUME, "persistentVolumeClaim": {"claimName": claim}},
        {"name": TMP_VOLUME, "emptyDir": {"sizeLimit": tmp_size} if tmp_size else {}},
    ]
    mounts: list[dict[str, Any]] = [
        {
            "name": HOME_VOLUME,
            "mountPath": str(folder),
            "subPath": home.relative(folder),
            "readOnly": read_only,
        }
        for folder, read_only in folders
    ]
    # the pod's own /tmp, emptied with it
    mounts.append({"name": TMP_VOLUME, "mountPath": "/tmp"})  # noqa: S108
    return PodStorage(volumes, mounts)


def pod_security(
    number: int, groups: tuple[int, ...] = ()
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(pod, container) security contexts: the restricted Pod Security Standard, running as
    uid and gid `number`, with `groups` as extra groups (a report run reads its dossier's
    extracts through the workspace's group, as a local report kernel does)."""
    pod: dict[str, Any] = {
        "runAsNonRoot": True,
        "runAsUser": number,
        "runAsGroup": number,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if groups:
        pod["supplementalGroups"] = list(groups)
    container = {
        "runAsNonRoot": True,
        "runAsUser": number,
        "runAsGroup": number,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    return pod, container


_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB|Mi|Gi)$")
_UNITS = {
    "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
    "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40, "Mi": 2**20, "Gi": 2**30,
}  # fmt: skip


def size_bytes(size: str) -> int:
    """A DuckDB size (2GB, 1.5GiB) or a Kubernetes one (512Mi, 1Gi) in bytes."""
    match = _SIZE.match(size.strip())
    if match is None:
        raise ValueError(f"'{size}' is not a size such as 2GB, 1.5GiB or 512Mi")
    return int(float(match[1]) * _UNITS[match[2]])


@dataclass(frozen=True)
class PodResources:
    mem_limit: int  # bytes
    mem_guarantee: int
    cpu_limit: float


def pod_resources(environment: DossierEnvironment, overhead: str) -> PodResources:
    """DuckDB's memory is guaranteed; the limit adds the overhead of JupyterLab or papermill
    and the kernels' Python; DuckDB's threads are the pod's CPUs."""
    duckdb = size_bytes(environment.limits.memory)
    return PodResources(
        mem_limit=duckdb + size_bytes(overhead),
        mem_guarantee=duckdb,
        cpu_limit=float(environment.limits.threads),
    )


@dataclass(frozen=True)
class RecorderSpec:
    """What the workspace pod's recorder container is made of (kubespawner.py fills it)."""

    dossier_id: str
    number: int  # isolation/podids.recorder_pod_id: never the workspace's
    image: str
    python: str  # the environment's Python in the image (the recorder runs its RECORDER_PYTHON)
    hub_api: str  # the hub's API as the pod reaches it (the server's JUPYTERHUB_API_URL)
    code: str  # audit.executions_code: hash or full
    auth_cache_seconds: int


def recorder_container(home: Home, spec: RecorderSpec) -> dict[str, Any]:
    """The recorder: the workspace image running netbridge.py in pod mode, as its own number,
    the pod's only port (named as KubeSpawner looks the server's up), able to bind it through
    NET_BIND_SERVICE alone (what the restricted standard allows), on a read-only root, with
    the dossier's spool folder (apply's, isolation/unixusers.own_execution_spool) as the only
    thing of HOME it mounts, at the path the hub sees it at."""
    spool = home.execution_spool_dir(spec.dossier_id)
    _, security = pod_security(spec.number)
    security["capabilities"] = {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}
    return {
        "name": RECORDER,
        "image": spec.image,
        # after the image's entrypoint (tini), which passes the kubelet's SIGTERM on
        "args": [
            str(Path(spec.python).parent / RECORDER_PYTHON),
            "-I",
            "-m",
            "dossierhub.workspaces.netbridge",
            f"--listen=0.0.0.0:{RECORDER_PORT}",
            f"--upstream=127.0.0.1:{SERVER_PORT}",
            f"--home={home.root}",
            f"--dossier={spec.dossier_id}",
            f"--hub-api={spec.hub_api}",
            f"--code={spec.code}",
            f"--auth-cache-seconds={spec.auth_cache_seconds}",
        ],
        "ports": [{"name": "notebook-port", "containerPort": RECORDER_PORT, "protocol": "TCP"}],
        "securityContext": security,
        "resources": RECORDER_RESOURCES,
        "volumeMounts": [
            {
                "name": HOME_VOLUME,
                "mountPath": str(spool),
                "subPath": home.relative(spool),
                "readOnly": False,
            }
        ],
    }
