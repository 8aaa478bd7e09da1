"""File access for privileged code in folders that a less privileged identity can write.

The rule (docs/security.md): a privileged process never follows, opens, writes, chowns or
copies a path that a dossier identity can write, unless it acts as that identity or goes
through descriptors opened relative to a folder it holds, refusing at every step symbolic
links, files with more than one link, FIFOs, sockets, devices and files over a size limit.
These helpers are that second way; everything is opened with O_NOFOLLOW relative to a
directory descriptor, and checked on the descriptor (fstat), not on the name.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class UnsafeFile(Exception):
    """A file or folder was not what a privileged step may touch; nothing was read from it."""


@contextlib.contextmanager
def opened_dir(path: Path, *, dir_fd: int | None = None) -> Iterator[int]:
    """A descriptor of the folder `path` (a name relative to `dir_fd` when given), refusing a
    link in its last component."""
    try:
        fd = os.open(path, DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        raise UnsafeFile(f"{path}: {_why(exc, path, dir_fd)}") from None
    try:
        yield fd
    finally:
        os.close(fd)


def read_regular(dir_fd: int, name: str, limit: int) -> bytes:
    """The bytes of the plain file `name` in `dir_fd`: one link, at most `limit` bytes."""
    try:
        fd = os.open(name, READ_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        raise UnsafeFile(f"{name}: {_why(exc, name, dir_fd)}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFile(f"{name}: not a plain file")
        if info.st_nlink != 1:
            raise UnsafeFile(f"{name}: has {info.st_nlink} hard links")
        if info.st_size > limit:
            raise UnsafeFile(f"{name}: {info.st_size} bytes, over the limit of {limit}")
        chunks, total = [], 0
        while chunk := os.read(fd, 1 << 20):
            total += len(chunk)
            if total > limit:  # grew while we read
                raise UnsafeFile(f"{name}: over the limit of {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def write_new(dir_fd: int, name: str, data: bytes, mode: int = 0o600) -> None:
    """Create `name` in `dir_fd` (a folder only root writes); refuses to reuse a name."""
    fd = os.open(
        name,
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
        mode,
        dir_fd=dir_fd,
    )
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _why(exc: OSError, name: os.PathLike[str] | str, dir_fd: int | None) -> str:
    with contextlib.suppress(OSError):
        if stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode):
            return "a symbolic link"
    return exc.strerror or type(exc).__name__


REMOVE_SECONDS = 300  # a tree of millions of files is left for a later try, not waited out


def remove_tree(name: str, *, dir_fd: int | None = None, timeout: float = REMOVE_SECONDS) -> bool:
    """Remove the folder `name` (relative to `dir_fd` when given) and everything in it, as far
    as this process may; True when it is gone. No link is followed (a link is removed, never
    what it names), at any depth: GNU rm's own walk (fts: iterative, by descriptor), not
    shutil.rmtree, which on Python 3.11 recurses one frame per level and dies with a
    RecursionError (which ignore_errors does not swallow) on a chain of folders a kernel makes
    in a second. `dir_fd` is handed to rm as itself (/proc/self/fd/N), so no name above
    `name` is looked up again. Never raises: what is left stays, for a later try."""
    target = f"/proc/self/fd/{dir_fd}/{name}" if dir_fd is not None else os.fspath(name)
    rm = shutil.which("rm") or "/bin/rm"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(
            [rm, "-rf", "--one-file-system", "--", target],
            pass_fds=(dir_fd,) if dir_fd is not None else (),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return True
    except OSError:
        pass
    return False
