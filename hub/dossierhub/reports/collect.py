"""A run's folder and who may touch it: made root's alone when the run is queued (papermill
writes the notebook there, from this process), filled with the tables the kernel published in
its scratch folder (copied through descriptors that follow no link, safefs.py), hashed, and
locked down when the run is finished: root's, read-only to the workspace's group."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from dossier_kernel.published import PUBLISHED_FILE
from dossierhub.isolation.safefs import UnsafeFile, opened_dir, read_regular, write_new
from dossierhub.isolation.unixusers import identities, isolation_enabled
from dossierhub.state.home import Home, RunFolder

PUBLISHED_FILES = 300  # publish() writes up to three files a table, publish_chart() one
PUBLISHED_BYTES = 64 * 1024 * 1024  # per file; the checks refuse far smaller tables


def make_run_folder(home: Home, dossier_id: str, run: RunFolder) -> None:
    """The new run's folder, root's alone until the run is finished and locked down."""
    parent = home.runs_dir(dossier_id)
    parent.mkdir(parents=True, exist_ok=True)
    run.path.mkdir(mode=0o700)
    ids = identities(home, dossier_id) if isolation_enabled() else None
    if ids is not None:
        os.chown(parent, 0, ids.workspace.gid)
        os.chmod(parent, 0o750)  # noqa: S103 - the workspace's group reads finished runs


def collect_published(scratch: Path, run: RunFolder) -> list[str]:
    """Copy the tables publish() wrote from the scratch folder (the report identity's) into
    the run folder (root's): names as publish() makes them, plain files only, read through
    descriptors that follow no link. Anything else there fails the run (UnsafeFile).
    Returns the copied files, relative to the run folder."""
    source_name = run.published.name  # publish() writes the same name under its run dir
    if not (scratch / source_name).exists() and not (scratch / source_name).is_symlink():
        return []
    copied = []
    run.published.mkdir(mode=0o700)
    with (
        opened_dir(scratch) as scratch_fd,
        opened_dir(Path(source_name), dir_fd=scratch_fd) as source,
        opened_dir(run.published) as target,
    ):
        names = sorted(os.listdir(source))
        if len(names) > PUBLISHED_FILES:
            raise UnsafeFile(f"published/ holds {len(names)} files (at most {PUBLISHED_FILES})")
        for name in names:
            if not PUBLISHED_FILE.fullmatch(name):
                raise UnsafeFile(f"published/{name}: not a file publish() writes")
            write_new(target, name, read_regular(source, name, PUBLISHED_BYTES))
            copied.append(f"{source_name}/{name}")
    return copied


def file_hashes(run: RunFolder) -> dict[str, str]:
    """sha256 of every file of the run (but the records and review.html, RunFolder.unhashed),
    by path relative to the folder: recorded when the run ends, compared before a review is
    drawn or a release made, so neither works from files changed since."""
    left_out = set(run.unhashed())
    hashes = {}
    for path in sorted(run.path.rglob("*")):
        if path.is_file() and path not in left_out:
            hashes[str(path.relative_to(run.path))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


def lock_down(home: Home, run: RunFolder, dossier_id: str) -> None:
    """Root's, readable by the workspace's group. (Only root ever wrote in the folder.)"""
    ids = identities(home, dossier_id) if isolation_enabled() else None
    for path in [run.path, *run.path.rglob("*")]:
        if ids is not None:
            os.chown(path, 0, ids.workspace.gid, follow_symlinks=False)
        os.chmod(path, 0o750 if path.is_dir() else 0o640)
