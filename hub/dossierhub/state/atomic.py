"""Writing a file under HOME so that a reader sees the old content or the new, never a torn
file: a temporary file beside it, flushed to disk, then renamed over it. The one way files
under HOME are replaced (extract generations, which swap whole folders, are
data/generations.py's).

Written by root, the new file takes its folder's owner and group when that folder is not
root's: on Kubernetes HOME's control folders belong to the control identity (the hub's and
the service's pods, isolation/unixusers.py control_owner), and a file apply replaces there,
such as hub/pod-ids.json or the audit log's head, must never be root's and unreadable to them,
not even between the rename and apply's end. On one machine those folders are root's, so
nothing changes. (Privileged code writes by name only in folders root or the control
identity holds, never in one a dossier can write: isolation/safefs.py.)"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any


def write_atomic(
    path: Path, data: str | bytes, *, mode: int | None = None, durable: bool = True
) -> None:
    """Replace `path` with `data` (text is UTF-8). `mode` None: as a new file gets it (the
    umask applies). `durable`: on disk before the rename, so a crash leaves one of the two.
    The temporary name is unique and never follows a link, so two writers or a planted
    link cannot meet in it; on any failure it is removed and the old file stays."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    fd = os.open(tmp, flags, 0o666 if mode is None else mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            take_folder_owner(handle.fileno(), path.parent)
            if mode is not None:
                os.fchmod(handle.fileno(), mode)  # the umask may have narrowed it
            handle.write(raw)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def take_folder_owner(fd: int, folder: Path) -> None:
    """Root's new file (by its descriptor: the name could be swapped) gets the owner and
    group of its folder when that is not root's (also for a file appended to in place, such
    as the audit log: state/auditstore.py)."""
    if os.geteuid() != 0:
        return
    info = os.stat(folder)
    if info.st_uid != 0:
        os.fchown(fd, info.st_uid, info.st_gid)


def write_json(
    path: Path, data: Any, *, indent: int | None = None, mode: int | None = None
) -> None:
    """`data` as JSON (dates and paths as text), one line or indented, ending in a newline."""
    write_atomic(path, json.dumps(data, indent=indent, default=str) + "\n", mode=mode)
