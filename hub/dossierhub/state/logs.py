"""HOME/logs/<id>/: what a dossier's workspace and report kernels print (root only).

Their output never reaches serve's own log, where a line a kernel printed could pass for one
of the hub's (log forging). Each file is opened by root in a folder only root can write,
without following links, and rotated once past LIMIT.
"""

from __future__ import annotations

import contextlib
import os

from dossierhub.state.home import Home, LogKind

LIMIT = 20 * 1024 * 1024


def open_log(home: Home, dossier_id: str, kind: LogKind) -> int:
    """A descriptor appending to logs/<id>/<kind>.log (the caller closes it)."""
    home.logs_dir.mkdir(mode=0o700, exist_ok=True)
    home.dossier_logs_dir(dossier_id).mkdir(mode=0o700, exist_ok=True)
    path = home.dossier_log_file(dossier_id, kind)
    with contextlib.suppress(FileNotFoundError):
        if os.lstat(path).st_size > LIMIT:
            os.replace(path, path.with_name(path.name + ".1"))
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    return os.open(path, flags, 0o600)
