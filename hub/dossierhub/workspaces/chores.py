"""Chores in a workspace folder, done AS the workspace's identity (`python -I -m
dossierhub.workspaces.chores CHORE FOLDER`, started by workspacechores.run_chore in the workspace's
sandbox without network, or dropped to its identity where there is no sandbox).

Root never writes, reads or chowns a path in a folder the workspace can write: a link or a
name planted there could point anywhere. Done as the workspace, a planted link reaches only
what the workspace itself may reach.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dossierhub.isolation.safefs import remove_tree
from dossierhub.state.atomic import write_atomic

if TYPE_CHECKING:
    from nbformat import NotebookNode

NOTICE = "WORKSPACE-NOTICE.md"
START_HERE = "Start here.ipynb"


def write_notice(folder: Path, text: str) -> None:
    write_atomic(folder / NOTICE, text)


def clear_outputs(folder: Path) -> int:
    """Outputs may hold data; an expired dossier keeps its notebooks' code and text only."""
    import nbformat

    cleared = 0
    for path in sorted(folder.rglob("*.ipynb")):
        # whatever the team left in its folder (a folder named a.ipynb, a cell without
        # outputs, a file that is not JSON) costs that one notebook, never the chore: apply
        # runs it for an expired dossier, and must go on to every other dossier
        try:
            cleared += _clear_one(path, nbformat)
        except Exception as exc:  # any planted oddity: the rest are still cleared
            print(f"{path.name}: not cleared ({type(exc).__name__})", file=sys.stderr)
    return cleared


def _clear_one(path: Path, nbformat: Any) -> int:
    if ".ipynb_checkpoints" in path.parts:
        if stat.S_ISDIR(os.lstat(path).st_mode):
            remove_tree(os.fspath(path))  # as this identity: it follows no link, any depth
        else:
            path.unlink()  # a name, whatever it is: unlink follows nothing
        return 0
    try:
        notebook = _read_notebook(path)
    except (OSError, ValueError):
        return 0  # not a plain file (a FIFO would block), or not a notebook
    changed = False
    for cell in notebook.get("cells") or []:
        if cell.get("cell_type") == "code" and (cell.get("outputs") or cell.get("execution_count")):
            cell["outputs"], cell["execution_count"], changed = [], None, True
    if not changed:
        return 0
    mode = path.stat().st_mode & 0o777
    text = nbformat.writes(notebook)
    # never a torn notebook, even for a reader right now
    write_atomic(path, text if text.endswith("\n") else text + "\n", mode=mode)
    return 1


def _read_notebook(path: Path, limit: int | None = None) -> NotebookNode:
    import nbformat

    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a plain file")
        data = handle.read() if limit is None else handle.read(limit + 1)
        if limit is not None and len(data) > limit:
            raise OSError(f"{path} is over {limit} bytes")
        return nbformat.reads(data.decode("utf-8"), as_version=4)


START_HERE_LIMIT = 1024 * 1024


def write_start_here(folder: Path, spec: dict[str, Any]) -> str:
    """Write the dossier's "Start here" notebook (spec: start_here_spec's JSON): written when
    absent, refreshed only while nobody changed it since it was written (its cells' hash in
    its metadata), otherwise kept: a person's edits are theirs. Says which it did."""
    import nbformat

    path = folder / START_HERE
    fresh = start_here_notebook(spec)
    try:
        # ours is a few kB: a big one was made by a person (and is not read whole)
        current = _read_notebook(path, START_HERE_LIMIT)
    except FileNotFoundError:
        current = None
    except (OSError, ValueError):
        return "kept"  # a folder, a FIFO, a link or not a notebook: the team's, left alone
    if current is not None:
        written = current.metadata.get("dossierhub", {}).get("start_here")
        if written != _cells_hash(current) or _cells_hash(current) == _cells_hash(fresh):
            return "kept"  # changed by a person, or already this version
    text = nbformat.writes(fresh)
    write_atomic(path, text if text.endswith("\n") else text + "\n")
    return "written" if current is None else "refreshed"


def _cells_hash(notebook: NotebookNode) -> str:
    """What the notebook says, not its ids or outputs: running it is no change."""
    cells = [[cell.cell_type, cell.source] for cell in notebook.cells]
    return hashlib.sha256(json.dumps(cells).encode("utf-8")).hexdigest()


def start_here_notebook(spec: dict[str, Any]) -> NotebookNode:
    """The notebook itself: the dossier, an example %%sql query per view, publish() and the
    report templates. Every code cell runs on the dossier's extracts as they are."""
    from nbformat import v4

    views: dict[str, dict[str, list[str]]] = spec["views"]
    first = next(iter(views))
    cells = [
        v4.new_markdown_cell(
            f"# Start here: {spec['title']}\n\n{spec['purpose']}\n\n"
            "This notebook runs on the **Dossier** kernel: `db` is a read-only DuckDB "
            "connection to the dossier's views and `%%sql` queries them. Run it top to bottom "
            "(Run ▸ Run All Cells). dossierhub wrote it and keeps it up to date while you "
            "leave it as it is; once you change it, it is yours and stays as you left it "
            "(delete it to get a fresh copy when the workspace next starts)."
        ),
        v4.new_markdown_cell(
            "## The views of this dossier\n\n"
            + _views_table(views)
            + "\n\n`sources()` lists them with their column types and descriptions:"
        ),
        v4.new_code_cell("sources()"),
    ]
    for name in views:
        cells += [
            v4.new_markdown_cell(f"### `{name}`: the first rows"),
            v4.new_code_cell(f'%%sql\nSELECT * FROM "{name}" LIMIT 10'),
        ]
    cells += [
        v4.new_markdown_cell(
            "## Publish a table\n\n"
            "Results leave the dossier only as tables a report publishes. `publish()` checks a "
            "Polars table against the dossier's disclosure rules (small counts, dominance); "
            "here in the workspace it shows the table with the verdict, in a report run the "
            "hub copies the checked table into the report. Say what each numeric column holds: "
            "`counts=`, `magnitudes=` or `attributes=`."
        ),
        v4.new_code_cell(
            f'rows = db.sql(\'SELECT count(*) AS "rows" FROM "{first}"\').pl()\n'
            f'publish(rows, "{first}_rows", counts=["rows"], title="Rows of {first}")'
        ),
        v4.new_markdown_cell(_templates_text(spec["templates"], spec["dossier_url"])),
    ]
    notebook = v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {
        "name": "dossier",
        "display_name": "Dossier",
        "language": "python",
    }
    notebook.metadata["dossierhub"] = {"start_here": _cells_hash(notebook)}
    return notebook


def _views_table(views: dict[str, dict[str, list[str]]]) -> str:
    rows = ["| view | columns |", "| --- | --- |"]
    for name, view in views.items():
        hidden = set(view.get("pseudonymized", []))
        columns = [f"{c} (pseudonym)" if c in hidden else c for c in view["columns"]]
        rows.append(f"| `{name}` | {', '.join(columns)} |")
    return "\n".join(rows)


def _templates_text(templates: list[str], dossier_url: str) -> str:
    if not templates:
        return (
            "## Run a report\n\nThis dossier has no report templates yet: ask the admin to add "
            "one to its manifest."
        )
    listed = "\n".join(f"- `{name}`" for name in templates)
    return (
        "## Run a report\n\n"
        "A report is a template run from start to end in a fresh kernel; its published tables "
        "are checked and, once a lead releases the run, readable by the dossier's viewers. "
        f"This dossier's templates:\n\n{listed}\n\n"
        "Run one from the **Dossier** panel (its icon in the left bar: pick a template, then "
        f"Run) or from [the dossier's page]({dossier_url})."
    )


def main(argv: list[str]) -> int:
    chore, folder = argv[0], Path(argv[1])
    if chore == "notice":
        write_notice(folder, sys.stdin.read())
    elif chore == "start-here":
        print(write_start_here(folder, json.loads(sys.stdin.read())))
    elif chore == "clear-outputs":
        print(clear_outputs(folder))
    else:
        print(f"unknown chore {chore!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
