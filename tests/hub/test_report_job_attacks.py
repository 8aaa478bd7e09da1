"""Red team (issue 15): what a report Job's code leaves in its scratch folder, and what a Job
names, must neither crash nor steer the service's collection or its take-up after a restart.
(Deep folder chains in a run's scratch: test_scratch_removal.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dossierhub.reports import jobs
from dossierhub.reports.jobnotebook import NotebookRefused, fill_outputs_apart
from dossierhub.reports.jobrunner import RESULT
from dossierhub.state.home import Home


def test_a_result_json_nested_deep_is_no_reason_and_no_crash(tmp_path: Path) -> None:
    """The kernel writes result.json (its own number) and makes `.result.json.partial` a
    folder, so the runner cannot replace it and the Job fails: the service reads it for the
    failure's reason, and json.loads raises RecursionError, which _cell_error lets through.
    A run taken up after a restart then stays `running` (its Job already deleted, its scratch
    kept, no report.finished) until the next restart; a fresh run records a RecursionError."""
    (tmp_path / RESULT).write_text("[" * 60_000)
    assert jobs._cell_error(tmp_path) is None  # today: RecursionError


def test_a_job_naming_a_scratch_folder_with_dotdot_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """find_job takes the folder to collect and then delete from the Job's args, checked with
    Path.parent, which does not resolve `..`: `scratch/<id>/..` passes as a folder of the
    dossier, and after the run the service's rmtree empties scratch/ (every dossier's runs in
    progress) and collects scratch/output.ipynb. The docstring's promise: a Job's word alone
    never names what to delete."""
    home = Home(tmp_path)
    forged = str(home.scratch_parent("d1") / "..")
    job: dict[str, Any] = {
        "metadata": {"name": "report-d1-run", "labels": jobs.job_labels("d1", "RUN")},
        "spec": {
            "activeDeadlineSeconds": 60,
            "template": {"spec": {"containers": [{"args": [forged]}]}},
        },
    }

    async def labelled(settings: Any, labels: Any) -> list[dict[str, Any]]:
        return [job]

    monkeypatch.setattr(jobs, "load_settings", lambda home: None)
    monkeypatch.setattr(jobs, "_labelled_jobs", labelled)
    with pytest.raises(jobs.JobRefused):
        jobs.find_job(home, "d1", "RUN")  # was: FoundJob(scratch=.../scratch/d1/..)
    # the folder the service made for the run is taken up, as it is
    job["spec"]["template"]["spec"]["containers"][0]["args"] = [
        str(home.scratch_parent("d1") / "0123456789abcdef")
    ]
    found = jobs.find_job(home, "d1", "RUN")
    assert found is not None and found.scratch == home.scratch_parent("d1") / "0123456789abcdef"


def test_a_pod_s_notebook_of_millions_of_values_cannot_exhaust_the_service_s_memory(
    tmp_path: Path,
) -> None:
    """A 6 MB output.ipynb (the limit is 64 MiB) whose one output is `[{}, {}, ...]` took the
    service about 1 GB to parse and 2.4 GB to write back: in a pod limited to 2Gi, the service
    was OOM-killed after it had deleted the Job, losing every run it was collecting. It is now
    read in a child with a memory limit: the run's notebook is refused, the record kept, and
    the service's own memory stays where it was."""
    import resource

    import nbformat

    record = tmp_path / "notebook.ipynb"
    book = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    nbformat.write(book, record)
    before = record.read_bytes()
    cell_id = book.cells[0].id
    values = "[" + ",".join(["{}"] * 2_000_000) + "]"
    pod = (
        '{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{"cell_type": "code", '
        f'"id": "{cell_id}", "metadata": {{}}, "execution_count": 1, "source": "x = 1", '
        '"outputs": [{"output_type": "display_data", "metadata": {}, '
        f'"data": {{"application/json": {values}}}}}]}}]}}'
    ).encode()
    assert len(pod) < jobs.NOTEBOOK_BYTES // 10
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(NotebookRefused, match="MiB of memory to read"):
        fill_outputs_apart(record, pod)
    assert record.read_bytes() == before
    # kB: the service did not parse it (that alone took about 1 GB)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - grown < 200_000
