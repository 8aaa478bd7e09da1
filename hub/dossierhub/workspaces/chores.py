"""Chores in a workspace folder, done AS the workspace's identity (`python -I -m
dossierhub.workspaces.chores CHORE FOLDER`, started by provision.run_chore in the workspace's
sandbox without network, or dropped to its identity where there is no sandbox).

Root never writes, reads or chowns a path in a folder the workspace can write: a link or a
name planted there could point anywhere. Done as the workspace, a planted link reaches only
what the workspace itself may reach.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from dossierhub.state.atomic import write_atomic

if TYPE_CHECKING:
    from nbformat import NotebookNode

NOTICE = "WORKSPACE-NOTICE.md"


def write_notice(folder: Path, text: str) -> None:
    write_atomic(folder / NOTICE, text)


def clear_outputs(folder: Path) -> int:
    """Outputs may hold data; an expired dossier keeps its notebooks' code and text only."""
    import nbformat

    cleared = 0
    for path in sorted(folder.rglob("*.ipynb")):
        if ".ipynb_checkpoints" in path.parts:
            path.unlink()  # a name, whatever it is: unlink follows nothing
            continue
        try:
            notebook = _read_notebook(path)
        except (OSError, ValueError):
            continue  # not a plain file (a FIFO would block), or not a notebook
        changed = False
        for cell in notebook.cells:
            if cell.cell_type == "code" and (cell.outputs or cell.execution_count):
                cell.outputs, cell.execution_count, changed = [], None, True
        if changed:
            mode = path.stat().st_mode & 0o777
            text = nbformat.writes(notebook)
            # never a torn notebook, even for a reader right now
            write_atomic(path, text if text.endswith("\n") else text + "\n", mode=mode)
            cleared += 1
    return cleared


def _read_notebook(path: Path) -> NotebookNode:
    import nbformat

    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a plain file")
        return nbformat.reads(handle.read().decode("utf-8"), as_version=4)


def main(argv: list[str]) -> int:
    chore, folder = argv[0], Path(argv[1])
    if chore == "notice":
        write_notice(folder, sys.stdin.read())
    elif chore == "clear-outputs":
        print(clear_outputs(folder))
    else:
        print(f"unknown chore {chore!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
