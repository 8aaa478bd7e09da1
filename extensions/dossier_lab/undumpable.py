"""Start jupyterhub-singleuser in a process its own kernels cannot read, trace or write.

A workspace's kernels run as the same Unix identity as their server. As long as the server is
"dumpable" (Linux's default), any kernel may open `/proc/<server>/mem` and read or rewrite
the server's memory (every visitor's hub token is there: JupyterLab's page config carries it),
read `/proc/<server>/environ`, or `ptrace` it. `prctl(PR_SET_DUMPABLE, 0)` makes the kernel
refuse all three to a process of the same identity without CAP_SYS_PTRACE (the sandbox leaves
none). It must be set in the server's own process: an exec resets it, so no wrapper program can
do it for the server; this module sets it, then runs the singleuser entry point in-process.
Children the server starts (kernels) exec and so are dumpable again, as they were.

The key that signs trusted notebooks is made here too, and kept only in this process's
memory: as Jupyter's file in the team's folder, any kernel read it and signed a notebook whose
output is script, which the server then told a colleague's JupyterLab was trusted, so it ran in
the colleague's browser, where their token is (whatever it runs is recorded as them).

Run as `python -I -m dossier_lab.undumpable <server arguments>` (spawner.py): `-I` so that no
PYTHONPATH or folder a dossier can write is on the server's import path.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import sys

PR_SET_DUMPABLE = 4  # <linux/prctl.h>
PR_GET_DUMPABLE = 3


def make_undumpable() -> None:
    """Mark this process non-dumpable; OSError when the kernel refuses (never ignored: a
    server its kernels can rewrite must not start as if it were protected)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"prctl(PR_SET_DUMPABLE, 0) failed: {os.strerror(error)}")
    if libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise OSError("prctl(PR_SET_DUMPABLE, 0) did not hold: the server is still dumpable")


def signing_key_in_memory() -> list[str]:
    """The server's arguments for a notebook-signing key only this process knows, new at
    each start (so notebooks signed before a restart open untrusted until they are run or
    saved again, as in Jupyter when its key changes). Added to sys.argv in-process: the
    command line /proc shows every process is the one the server was started with."""
    return [f"--NotebookNotary.secret={secrets.token_hex(64)}"]


def main() -> None:
    make_undumpable()
    sys.argv += signing_key_in_memory()
    # imported only now: nothing of the server exists before the flag is set
    from jupyterhub.singleuser import main as singleuser

    sys.exit(singleuser())


if __name__ == "__main__":
    main()
