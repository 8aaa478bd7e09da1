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
