"""A pod's container as the kubelet runs it, for tests on one machine as root: a process of
its own uid and gid (no other group), optionally with capabilities (as `capabilities.add`),
in a mount namespace that sees HOME as a pod does (only the subPath folders the container
mounts) and in a pod's network namespace."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dossierhub.state.home import Home

VENV_PYTHON = str(Path(sys.executable).parent / "python")  # dossierhub importable, any uid


def container_command(
    number: int,
    argv: list[str],
    *,
    mounts: list[str] | None = None,
    capabilities: tuple[str, ...] = (),
    netns: int | None = None,
) -> list[str]:
    """`argv` run as uid and gid `number` with no other group and only `capabilities`
    (lower case, such as net_bind_service); with `mounts` (shell commands, `pod_view`) in a
    mount namespace of its own; with `netns` in the network namespace of that process."""
    wanted = "".join(f",+{cap}" for cap in capabilities)
    ids = ["--reuid", str(number), "--regid", str(number), "--clear-groups"]
    caps = ["--inh-caps", f"-all{wanted}", "--bounding-set", f"-all{wanted}"]
    if capabilities:
        caps += ["--ambient-caps", f"-all{wanted}"]
    command = ["setpriv", *ids, *caps, *argv]
    if mounts is not None:
        script = "; ".join([*mounts, 'exec "$@"'])
        command = ["unshare", "--mount", "sh", "-ec", script, "pod", *command]
    if netns is not None:
        command = ["nsenter", f"--net=/proc/{netns}/ns/net", *command]
    return command


def as_number(
    number: int, code: str, mounts: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Python `code` with dossierhub, as `container_command` runs it."""
    command = container_command(number, [VENV_PYTHON, "-I", "-c", code], mounts=mounts)
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False, cwd="/")


def pod_view(home: Home, dossier_id: str, staging: Path) -> list[str]:
    """The recorder container's view of HOME as the kubelet makes it: its spool folder
    (HOME's subPath audit/spool/<id>) mounted at the path the hub sees it at, the folders
    above it the container's own (made by the runtime), nothing else of audit/."""
    folder = home.execution_spool_dir(dossier_id)
    staging.mkdir(exist_ok=True)
    return [
        f"mount --bind {folder} {staging}",
        f"mount -t tmpfs -o mode=0755 pod {home.audit_dir}",
        f"mkdir -p {folder}",
        f"mount --bind {staging} {folder}",
    ]
