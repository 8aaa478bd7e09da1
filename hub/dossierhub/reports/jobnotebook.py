"""The notebook a report run as a Job records (jobs.py): the service's own, with only what
running the cells made taken from the pod's.

In a Job, papermill and the template's kernel run in one pod as one number, so the kernel's
code can rewrite the notebook papermill saves there: its markdown, its code, its cells, its
metadata (docs/security.md). On one machine that cannot happen: papermill runs in root's
process and only the kernel is the report identity (execute.py). So the service builds the
notebook of record itself, before the Job, from its own copy of the template and the checked
parameters, with papermill's own parameterisation (`record_notebook`); that notebook is what
the pod runs, as it is (the pod parameterises nothing). Once the pod has ended, the service
takes from the pod's notebook, cell by cell, only the outputs, the execution count and
papermill's status of the cell (`fill_outputs`). The cells must be the same, by id, type and
order (papermill's own error markers on a failed run aside), else the run fails: "the run's
notebook does not match its template". The pod's sources, markdown, attachments and metadata
are never read into the record.

The outputs stay the kernel's word, as they are on one machine: viewers see only the checked
tables and charts drawn from the run's own copies, every other output withheld unless the
releasing lead includes it (airlock.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat

from dossierhub.state.atomic import write_atomic

# what papermill's cell status holds (papermill.engines.NotebookExecutionManager); nothing else
# of a cell's metadata is taken from the pod
STATUS_FIELDS: dict[str, type | tuple[type, ...]] = {
    "status": str,
    "start_time": str,
    "end_time": str,
    "duration": (int, float),
    "exception": bool,
}
STATUS_CHARS = 64


class NotebookRefused(ValueError):
    """The pod's notebook cannot be taken into the record; says why, naming no pod text."""


def record_notebook(template: Path, values: dict[str, Any], notebook: Path) -> None:
    """The notebook of record, written new at `notebook` (in the run's folder, root's):
    the template parameterised as papermill.execute_notebook does (no parameters, no
    injected cell), every cell with an id (nbformat 4.5), no outputs yet."""
    from papermill.execute import prepare_notebook_metadata, remove_error_markers
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    book = load_notebook_node(str(template))  # upgrades to 4.5: every cell gets its id
    if values:
        book = parameterize_notebook(book, values, kernel_name="dossier", language="python")
    book = remove_error_markers(prepare_notebook_metadata(book, str(template), str(notebook)))
    with notebook.open("x", encoding="utf-8") as out:
        nbformat.write(book, out)


def fill_outputs(notebook: Path, pod_notebook: bytes) -> None:
    """The outputs of the pod's notebook (its bytes, read through safefs) into the notebook
    of record at `notebook`, replaced whole. NotebookRefused, leaving the record as it was,
    when the pod's notebook is not a notebook or its cells are not the record's."""
    record = nbformat.read(notebook, as_version=4)
    try:
        theirs = nbformat.reads(pod_notebook.decode("utf-8"), as_version=4)
        cells = [c for c in theirs.cells if not _error_marker(c)]
    except MemoryError:
        raise  # too big to read: fill_outputs_apart says so
    except Exception as exc:  # any decoding or format error: the pod wrote something else
        raise NotebookRefused(
            f"the run's notebook is not a notebook ({type(exc).__name__})"
        ) from None
    _match(record.cells, cells)
    for ours, pods in zip(record.cells, cells, strict=True):
        _take(ours, pods)
    try:
        nbformat.validate(record)
    except nbformat.ValidationError:
        raise NotebookRefused("the run's notebook holds outputs that are not outputs") from None
    write_atomic(notebook, nbformat.writes(record))  # the record stays whole if this fails


def _error_marker(cell: Any) -> bool:
    """A markdown cell papermill adds to a failed run's notebook (the error at the top, an
    anchor before the failing cell); taken for nothing."""
    from papermill.execute import ERROR_MARKER_TAG

    tags = (cell.get("metadata") or {}).get("tags") or []
    return cell.get("cell_type") == "markdown" and ERROR_MARKER_TAG in tags


def _match(ours: list[Any], theirs: list[Any]) -> None:
    """The same cells, in the same order: NotebookRefused otherwise. (The pod's ids are not
    repeated in the reason: they are the pod's text.)"""
    mismatch = "the run's notebook does not match its template"
    if len(theirs) != len(ours):
        raise NotebookRefused(f"{mismatch}: it has {len(theirs)} cells, the template {len(ours)}")
    for number, (mine, pods) in enumerate(zip(ours, theirs, strict=True), start=1):
        if pods.get("id") != mine.id or pods.get("cell_type") != mine.cell_type:
            raise NotebookRefused(
                f"{mismatch}: its cell {number} is not the template's (another id or type)"
            )


def _take(ours: Any, theirs: Any) -> None:
    """What running a cell makes, from the pod's cell into ours."""
    status = _status((theirs.get("metadata") or {}).get("papermill"))
    if status:
        ours.metadata["papermill"] = status
    if ours.cell_type != "code":
        return
    ours.outputs = theirs.get("outputs") or []
    count = theirs.get("execution_count")
    ours.execution_count = count if isinstance(count, int) and not isinstance(count, bool) else None


def _status(found: Any) -> dict[str, Any]:
    """papermill's status of a cell, its known fields of their types only (it says which
    cell failed, and the run's progress)."""
    if not isinstance(found, dict):
        return {}
    status = {}
    for key, kind in STATUS_FIELDS.items():
        value = found.get(key)
        if value is None or _of_type(value, kind):
            status[key] = value[:STATUS_CHARS] if isinstance(value, str) else value
    return status


def _of_type(value: Any, kind: type | tuple[type, ...]) -> bool:
    """isinstance, but a bool is no number (it is an int to isinstance)."""
    if isinstance(value, bool) and kind is not bool:
        return False
    return isinstance(value, kind)


# --- taken apart: the pod's notebook is parsed in a child process with a memory limit ---

CHILD_MEMORY = 1 << 30  # address space of the child: the service's pod has 2Gi in all
CHILD_SECONDS = 300
REFUSED, TOO_BIG = 2, 3  # the child's exit codes besides 0


def fill_outputs_apart(notebook: Path, pod_notebook: bytes) -> None:
    """fill_outputs in a child process whose memory is limited (CHILD_MEMORY) and time too:
    a notebook of a few MB can hold millions of tiny JSON values (an output of `[{}, {}, ...]`,
    a kernel's `display(JSON(...))`), which take nbformat gigabytes to read and write back. In
    the service's own process that would get it OOM-killed, and with it every run it was
    collecting; the child just fails, and the run is refused for it."""
    import subprocess
    import sys

    try:
        done = subprocess.run(
            [sys.executable, "-I", "-m", "dossierhub.reports.jobnotebook", str(notebook)],
            input=pod_notebook,
            capture_output=True,
            timeout=CHILD_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise NotebookRefused(
            f"the run's notebook could not be read in {CHILD_SECONDS} s; none of it was taken"
        ) from None
    said = done.stdout.decode("utf-8", "replace").strip()
    if done.returncode == REFUSED:
        raise NotebookRefused(said)
    if done.returncode != 0:
        raise NotebookRefused(
            f"the run's notebook takes more than {CHILD_MEMORY >> 20} MiB of memory to read "
            "(millions of values in its outputs); none of it was taken"
        )


def _child(argv: list[str]) -> int:
    import resource
    import sys

    resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY, CHILD_MEMORY))
    try:
        fill_outputs(Path(argv[0]), sys.stdin.buffer.read())
    except NotebookRefused as exc:
        print(exc)
        return REFUSED
    except (MemoryError, RecursionError):
        return TOO_BIG
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(_child(sys.argv[1:]))
