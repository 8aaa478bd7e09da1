"""Start jupyterhub-singleuser in a process its own kernels cannot read, trace or write.

A workspace's kernels run as the same Unix identity as their server. As long as the server is
"dumpable" (Linux's default), any kernel may open `/proc/<server>/mem` and read or rewrite
the server's memory (every visitor's hub token is there: JupyterLab's page config carries it),
read `/proc/<server>/environ`, or `ptrace` it. `prctl(PR_SET_DUMPABLE, 0)` makes the kernel
refuse all three to a process of the same identity without CAP_SYS_PTRACE (the sandbox leaves
none). It must be set in the server's own process: an exec resets it, so no wrapper program can
do it for the server; this module sets it, then runs the singleuser entry point in-process.
Children the server starts (kernels) exec and so are dumpable again, as they were.

It also adds the package's own server configuration (server_config/, root's like the
package): no notebook is trusted in a shared workspace (notary.py).

Run as `python -I -m dossier_lab.undumpable <server arguments>` (spawner.py): `-I` so that no
PYTHONPATH or folder a dossier can write is on the server's import path.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

PR_SET_DUMPABLE = 4  # <linux/prctl.h>
PR_GET_DUMPABLE = 3
SERVER_CONFIG = Path(__file__).resolve().parent / "server_config"


def make_undumpable() -> None:
    """Mark this process non-dumpable; OSError when the kernel refuses (never ignored: a
    server its kernels can rewrite must not start as if it were protected)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"prctl(PR_SET_DUMPABLE, 0) failed: {os.strerror(error)}")
    if libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise OSError("prctl(PR_SET_DUMPABLE, 0) did not hold: the server is still dumpable")


def main() -> None:
    make_undumpable()
    # first on Jupyter's configuration path, before the (read-only, empty) user folder
    os.environ["JUPYTER_CONFIG_PATH"] = str(SERVER_CONFIG)
    # imported only now: nothing of the server exists before the flag is set
    from jupyterhub.singleuser import main as singleuser

    sys.exit(singleuser())


if __name__ == "__main__":
    main()
