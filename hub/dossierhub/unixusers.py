"""One Unix identity per dossier workspace, and file modes that confine it.

Run as root, each workspace runs as `dh-<id>`: it can read extracts/<id>, read and write
workspaces/<id>, and nothing else of HOME. Not run as root (a laptop), there is one identity
and isolation is off; `isolation_enabled` says which.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

from .home import Home

NOLOGIN = "/usr/sbin/nologin"


def isolation_enabled() -> bool:
    return os.geteuid() == 0


def unix_name(dossier_id: str) -> str:
    """`dh-<id>`: at most 27 characters, within Linux's 32."""
    return f"dh-{dossier_id}"


def unix_ids(dossier_id: str) -> tuple[int, int] | None:
    try:
        entry = pwd.getpwnam(unix_name(dossier_id))
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


def ensure_unix_user(home: Home, dossier_id: str) -> tuple[int, int]:
    """Create the workspace's system user and group if missing (idempotent)."""
    ids = unix_ids(dossier_id)
    if ids is None:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        subprocess.run(
            [
                useradd,
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                str(home.workspaces_dir / dossier_id),
                "--shell",
                NOLOGIN,
                "--comment",
                f"dossierhub workspace {dossier_id}",
                unix_name(dossier_id),
            ],
            check=True,
            capture_output=True,
        )
        ids = unix_ids(dossier_id)
        assert ids is not None
    return ids


def secure_home(home: Home) -> None:
    """Traversable but not listable; private parts closed to everyone but root."""
    for folder, mode in (
        (home.root, 0o711),
        (home.extracts_dir, 0o711),
        (home.workspaces_dir, 0o711),
        (home.reports_dir, 0o711),
        (home.master_key_file.parent, 0o700),
        (home.hub_dir, 0o700),
        (home.audit_dir, 0o700),
        (home.locks_dir, 0o700),
        (home.dossiers_dir, 0o700),
    ):
        if folder.exists():
            os.chmod(folder, mode)
    for private in (home.catalog_file, home.root / "settings.yaml"):
        if private.exists():
            os.chmod(private, 0o600)
    raw = home.root / "raw"
    if raw.exists():
        os.chmod(raw, 0o700)


def secure_extracts(folder: Path, gid: int | None) -> None:
    """Extracts readable by the dossier's group only; never writable by it."""
    if not folder.exists():
        return
    for path in [folder, *folder.rglob("*")]:
        if path.is_symlink():
            continue
        if gid is not None:
            os.chown(path, 0, gid)
        os.chmod(path, 0o750 if path.is_dir() else 0o640)


def ensure_workspace_dir(home: Home, dossier_id: str, ids: tuple[int, int] | None) -> Path:
    folder = home.workspaces_dir / dossier_id
    folder.mkdir(parents=True, exist_ok=True)
    if ids is not None:
        os.chown(folder, *ids)
        os.chmod(folder, 0o700)
    return folder


def preexec_as_dossier(dossier_id: str, workdir: Path):  # type: ignore[no-untyped-def]
    """A Popen preexec_fn: become the dossier's identity and start in `workdir`."""
    entry = pwd.getpwnam(unix_name(dossier_id))

    def become_dossier() -> None:
        os.setgid(entry.pw_gid)
        os.setgroups([entry.pw_gid])
        os.setuid(entry.pw_uid)
        os.chdir(workdir)

    return become_dossier
