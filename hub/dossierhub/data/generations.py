"""Atomic generations of a folder: readers see one complete build, whatever moment a writer dies.

The atomic-writer pattern Kubernetes uses for volumes, for a folder such as extracts/<id>/:

    ..<generation>/          one complete, immutable build
    ..data -> ..<generation> the current build; swapped with one rename(2)
    <name> -> ..data/<name>  a stable path for each file of a build, for readers
    ..tmp-<generation>/      a build in progress; removed by the next writer if it was killed

A reader that opens `<name>` (or `..data/<name>`) gets the old build's file or the new one's,
never a mix and never a half-written file. The build before the current one is kept, so a
reader that resolved the old link mid-query can finish; older ones are removed at each swap.
Writers of one folder are serialised by a lock file (`writer_lock`). What goes into a build is
the caller's business (data/extracts.py builds a dossier's extracts this way).
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from filelock import FileLock, Timeout

DATA_LINK = "..data"
GEN_PREFIX = ".."
TMP_PREFIX = "..tmp-"
STAGED_SUFFIX = ".new"

_T = TypeVar("_T")


@contextmanager
def writer_lock(lock_file: Path, on_wait: Callable[[], None]) -> Iterator[None]:
    """Hold the one writer's lock of a folder; `on_wait` is called once if another holds it."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_file))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        on_wait()
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def current(folder: Path) -> Path:
    """The current build, through the link a swap replaces."""
    return folder / DATA_LINK


def kept_generation(folder: Path, generation: str) -> Path | None:
    """The build named `generation` if it is still kept (the current one or the one before),
    else None. `generation` comes from a record, so a name that could leave `folder` is None."""
    if not generation or "/" in generation or generation.startswith("."):
        return None
    path = folder / f"{GEN_PREFIX}{generation}"
    return path if path.is_dir() and not path.is_symlink() else None


def clean_leftovers(folder: Path) -> None:
    """Remove what a killed writer left: half-built generations and half-made links."""
    if not folder.exists():
        return
    for entry in folder.iterdir():
        if entry.name.startswith(TMP_PREFIX) and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        elif entry.name.endswith(STAGED_SUFFIX) and entry.is_symlink():
            entry.unlink(missing_ok=True)


def new_generation_name() -> str:
    """Sortable by time (the previous build is the newest older name) and unique."""
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ-") + secrets.token_hex(3)


def build_generation(folder: Path, fill: Callable[[Path, str], _T]) -> tuple[str, _T]:
    """Make a new build of `folder` current: `fill(build_folder, generation)` writes its files,
    then they are flushed to disk, linked by name and swapped in with one rename. Returns the
    generation and what `fill` returned. If `fill` (or anything before the swap) fails, the
    half build is removed and the previous build stays current. Hold `writer_lock` around it,
    and call `clean_leftovers` first."""
    generation = new_generation_name()
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"{TMP_PREFIX}{generation}"
    tmp.mkdir()
    try:
        result = fill(tmp, generation)
        _fsync_tree(tmp)
        final = folder / f"{GEN_PREFIX}{generation}"
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _swap_in(folder, final)
    return generation, result


def _swap_in(folder: Path, final: Path) -> None:
    """Stable links first (they point through ..data, so they are right before and after),
    then the one atomic step readers can observe, then the pruning."""
    names = sorted(entry.name for entry in final.iterdir())
    for name in names:
        _replace_link(folder / name, f"{DATA_LINK}/{name}")
    _replace_link(folder / DATA_LINK, final.name)
    _fsync_dir(folder)
    keep = set(names) | {DATA_LINK, final.name, _previous_generation(folder, final.name)}
    for entry in folder.iterdir():
        if entry.name in keep:
            continue
        if entry.is_symlink():
            entry.unlink()  # a stable link of a file the new build no longer has
        elif entry.is_dir() and entry.name.startswith(GEN_PREFIX):
            shutil.rmtree(entry, ignore_errors=True)


def _replace_link(link: Path, target: str) -> None:
    if link.is_symlink() and os.readlink(link) == target:
        return
    staged = link.with_name(link.name + STAGED_SUFFIX)
    staged.unlink(missing_ok=True)
    os.symlink(target, staged)
    os.replace(staged, link)


def _previous_generation(folder: Path, current_name: str) -> str:
    """The newest build before `current_name`: kept so readers mid-query can finish."""
    older = sorted(
        e.name
        for e in folder.iterdir()
        if e.is_dir()
        and not e.is_symlink()
        and e.name.startswith(GEN_PREFIX)
        and not e.name.startswith(TMP_PREFIX)
        and e.name < current_name
    )
    return older[-1] if older else current_name


def _fsync_tree(folder: Path) -> None:
    for entry in folder.iterdir():
        if entry.is_file():
            fd = os.open(entry, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
