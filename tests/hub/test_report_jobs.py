"""Report runs as Kubernetes Jobs, as values (reports/jobs.py): every Job manifest validates
strictly against the Kubernetes 1.33 schema and keeps the run's walls (report number, not the
workspace's; extracts read-only; its scratch; no workspace folder; restricted PSS; no token;
the time limit; no retries), and the verdict read from a Job and its pod is the truthful one
for each way a run ends on a cluster; the notebook a run records is the service's own, with only
the outputs of the pod's notebook, whose cells must be the ones handed over. The runs
themselves: tests/k8s/test_report_jobs_standin.py.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import kubernetes_validate
import nbformat
import pytest

from dossierhub.isolation.podids import pod_id, pod_ids, report_pod_id, report_pod_ids
from dossierhub.reports.jobnotebook import NotebookRefused, fill_outputs, record_notebook
from dossierhub.reports.jobs import JobNumbers, collect_notebook, job_manifest, job_verdict
from dossierhub.state.home import Home, RunFolder
from dossierhub.state.models import read_dossier
from dossierhub.state.settings import Settings

from e2e_runs import template

SETTINGS = {
    "hub": {"spawner": "kubernetes"},
    "reports": {"backend": "kubernetes"},
    "kubernetes": {
        "image": "registry.example.org/dossierhub-workspace:1.0",
        "runner_image": "registry.example.org/dossierhub-runner:1.0",
        "namespace": "dossiers",
    },
}
DOSSIERS = ("armoede", "mobiliteit")
RUN_ID = "20261201T201500-a1b2c3"


def manifest(home: Home, dossier_id: str, limit: float = 90.5) -> dict[str, Any]:
    settings = Settings.model_validate(SETTINGS)
    numbers = JobNumbers(report_pod_id(home, dossier_id), pod_id(home, dossier_id))
    scratch = home.scratch_parent(dossier_id) / "0a1b2c3d"
    return job_manifest(
        home, settings, read_dossier(home, dossier_id), RUN_ID, scratch, numbers, limit
    )


@pytest.mark.parametrize("dossier_id", DOSSIERS)
def test_a_run_s_job_validates_strictly_and_keeps_its_walls(home: Path, dossier_id: str) -> None:
    root = Home(home)
    job = manifest(root, dossier_id)
    kubernetes_validate.validate(job, "1.33", strict=True)
    spec = job["spec"]
    assert spec["backoffLimit"] == 0 and spec["activeDeadlineSeconds"] == math.ceil(90.5)
    assert spec["ttlSecondsAfterFinished"] > 0
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False and pod["enableServiceLinks"] is False
    report, workspace = report_pod_ids(root)[dossier_id], pod_ids(root)[dossier_id]
    assert report != workspace  # the report number, never the workspace's
    context = pod["securityContext"]
    assert (context["runAsUser"], context["runAsGroup"]) == (report, report)
    assert context["supplementalGroups"] == [workspace]  # the extracts' group, as apply set it
    assert "fsGroup" not in context
    (container,) = pod["containers"]
    assert container["image"] == SETTINGS["kubernetes"]["runner_image"]
    assert container["command"][1:] == ["report", "execute-job"]
    own = container["securityContext"]
    assert own["allowPrivilegeEscalation"] is False and own["readOnlyRootFilesystem"] is True
    assert own["capabilities"] == {"drop": ["ALL"]} and own["runAsNonRoot"] is True
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    extracts, scratch = root.extract_dir(dossier_id), root.scratch_parent(dossier_id) / "0a1b2c3d"
    assert set(mounts) == {str(extracts), str(scratch), "/tmp"}
    assert mounts[str(extracts)]["readOnly"] is True
    assert mounts[str(extracts)]["subPath"] == f"extracts/{dossier_id}"  # the folder, not HOME
    assert mounts[str(scratch)]["readOnly"] is False
    assert not any(str(root.workspace_dir(dossier_id)) in path for path in mounts)
    claims = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert [c["persistentVolumeClaim"]["claimName"] for c in claims] == ["dossierhub-home"]
    (tmp,) = [v for v in pod["volumes"] if v["name"] == mounts["/tmp"]["name"]]
    assert tmp["emptyDir"] == {"sizeLimit": "1Gi"}  # kubernetes.tmp_size: a run fills no node
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["DOSSIERHUB_RUN_DIR"] == str(scratch) and env["DOSSIER_ID"] == dossier_id
    assert job["metadata"]["namespace"] == "dossiers"
    assert len(job["metadata"]["name"]) <= 63


def test_two_dossiers_reports_never_share_a_number(home: Path) -> None:
    root = Home(home)
    for dossier_id in DOSSIERS:
        manifest(root, dossier_id)
    numbers = [*pod_ids(root).values(), *report_pod_ids(root).values()]
    assert len(numbers) == len(set(numbers)) == 2 * len(DOSSIERS)


def test_the_backend_is_local_unless_set_and_kubernetes_needs_an_image() -> None:
    assert Settings().reports.backend == "local"
    with pytest.raises(ValueError, match="runner_image"):
        Settings.model_validate({"reports": {"backend": "kubernetes"}})


def job(*conditions: tuple[str, str]) -> dict[str, Any]:
    return {
        "status": {
            "conditions": [
                {"type": kind, "status": "True", "reason": reason, "message": "m"}
                for kind, reason in conditions
            ]
        }
    }


def pod(state: dict[str, Any], phase: str = "Running") -> dict[str, Any]:
    status = {"name": "report", "image": "r:1", "ready": False, "restartCount": 0}
    return {"status": {"phase": phase, "containerStatuses": [{**status, "state": state}]}}


RUNNING = pod({"running": {"startedAt": "2026-12-01T20:00:00Z"}})
EXITED = pod({"terminated": {"exitCode": 1, "reason": "Error"}}, "Failed")
OOM = pod({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}, "Failed")
NO_IMAGE = pod(
    {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}, "Pending"
)
FAILED = ("Failed", "BackoffLimitExceeded")


@pytest.mark.parametrize(
    ("the_job", "pods", "extra", "expected"),
    [
        (job(), [RUNNING], {}, None),
        (job(("SuccessCriteriaMet", "CompletionsReached"), ("Complete", "CompletionsReached")),
         [pod({"terminated": {"exitCode": 0}}, "Succeeded")], {}, ("succeeded", None)),
        (job(FAILED), [EXITED], {"cell_error": "RuntimeError: the data looks wrong"},
         ("failed", "RuntimeError: the data looks wrong")),
        (job(FAILED), [EXITED], {}, ("failed", "the run's process ended with exit code 1")),
        (job(("FailureTarget", "DeadlineExceeded")), [RUNNING], {"deleted": "p"},
         ("failed", "time limit of 60 s exceeded")),
        (job(FAILED), [OOM], {"cell_error": "DeadKernelError: Kernel died"},
         ("failed", "out of memory: the run's pod was killed at its memory limit (OOMKilled)")),
        (job(FAILED), [], {"deleted": "report-a-1-xyz12"},
         ("failed", "the run's pod report-a-1-xyz12 was deleted before the run ended")),
        (job(), [NO_IMAGE], {},
         ("failed", "the runner image r:1 cannot be pulled (ImagePullBackOff: Back-off pulling "
                    "image)")),
        (job(("Failed", "Invalid")), [], {}, ("failed", "the run's Job failed (Invalid: m)")),
    ],
    ids=["running", "succeeded", "cell error", "exit", "deadline", "oom", "pod deleted",
         "image missing", "job refused"],
)  # fmt: skip
def test_the_verdict_is_the_job_s_and_its_pod_s(
    the_job: dict[str, Any],
    pods: list[dict[str, Any]],
    extra: dict[str, Any],
    expected: tuple[str, str | None] | None,
) -> None:
    assert job_verdict(the_job, pods, limit=60, **extra) == expected


def test_a_cell_error_never_turns_a_failed_job_into_success() -> None:
    assert job_verdict(job(), [RUNNING], limit=60, cell_error=None) is None
    verdict = job_verdict(job(FAILED), [EXITED], limit=60, cell_error="")
    assert verdict is not None and verdict[0] == "failed"


# --- the notebook of record (reports/jobnotebook.py) ---

MARKDOWN = "# Draft numbers\nNot reviewed by anyone yet."


@pytest.fixture
def handed_over(tmp_path: Path) -> tuple[RunFolder, Path]:
    """The run folder with the service's notebook of record (a template with a markdown cell
    and a parameter, run with another value), and the notebook papermill in a pod leaves of
    it before a cell ran: papermill's own reading and writing of what it was handed."""
    import papermill

    source = tmp_path / "template.ipynb"
    template(source, "print('the real work for', who)", "print('done')", params="who = 'nobody'")
    book = nbformat.read(source, as_version=4)
    book.cells.insert(1, nbformat.v4.new_markdown_cell(MARKDOWN))
    nbformat.write(book, source)
    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    record_notebook(source, {"who": "Noord"}, run.notebook)
    pod = tmp_path / "scratch" / "output.ipynb"
    pod.parent.mkdir()
    papermill.execute_notebook(
        str(run.notebook), str(pod), prepare_only=True, kernel_name="dossier", language="python"
    )
    return run, pod


def executed(pod: Path) -> Any:
    """The pod's notebook as a run that printed in every code cell leaves it."""
    book = nbformat.read(pod, as_version=4)
    count = 0
    for cell in book.cells:
        if cell.cell_type == "code":
            count += 1
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"out {count}")]
            cell.execution_count = count
        cell.metadata["papermill"] = {
            "status": "completed", "start_time": "2026-12-01T20:00:00", "exception": False,
            "end_time": "2026-12-01T20:00:01", "duration": 1.0,
        }  # fmt: skip
    return book


def test_the_record_is_papermill_s_parameterisation_and_the_pod_runs_it_unchanged(
    handed_over: tuple[RunFolder, Path],
) -> None:
    run, pod = handed_over
    record = nbformat.read(run.notebook, as_version=4)
    injected = [c for c in record.cells if "injected-parameters" in c.metadata["tags"]]
    assert [c.source for c in injected] == ['# Parameters\nwho = "Noord"\n']
    assert record.cells[1] is injected[0]  # after the parameters cell, as papermill puts it
    assert record.metadata.papermill["parameters"] == {"who": "Noord"}
    ids = [c.id for c in record.cells]
    assert len(set(ids)) == len(ids) == 5
    theirs = nbformat.read(pod, as_version=4)  # not parameterised again in the pod
    assert [(c.id, c.source) for c in theirs.cells] == [(c.id, c.source) for c in record.cells]


def test_only_outputs_counts_and_status_are_taken_from_the_pod(
    handed_over: tuple[RunFolder, Path],
) -> None:
    run, pod = handed_over
    before = nbformat.read(run.notebook, as_version=4)
    theirs = executed(pod)
    outputs = [copy.deepcopy(c.get("outputs")) for c in theirs.cells]
    theirs.cells[2].source = "Approved by the privacy officer"  # the markdown
    theirs.cells[3].source = "print('nothing to see')"  # the code that ran, shown as other
    theirs.cells[3].metadata["jupyter"] = {"source_hidden": True}
    theirs.cells[3].metadata["papermill"].update(status=["failed"], note="approved")
    theirs.metadata["dossierhub"] = {"approved_by": "the privacy officer"}
    theirs.metadata["papermill"]["parameters"] = {"who": "everyone"}
    fill_outputs(run.notebook, nbformat.writes(theirs).encode())
    record = nbformat.read(run.notebook, as_version=4)
    assert [c.source for c in record.cells] == [c.source for c in before.cells]
    assert record.cells[2].source == MARKDOWN
    assert [c.get("outputs") for c in record.cells] == outputs
    assert [c.get("execution_count") for c in record.cells] == [1, 2, None, 3, 4]
    assert "dossierhub" not in record.metadata and "dossierhub" not in before.metadata
    assert record.metadata.papermill == before.metadata.papermill
    assert "jupyter" not in record.cells[3].metadata
    status = record.cells[3].metadata["papermill"]
    assert "status" not in status and "note" not in status  # known fields of their types only
    assert record.cells[4].metadata["papermill"]["status"] == "completed"


def _extra(book: Any) -> None:
    book.cells.append(nbformat.v4.new_markdown_cell("Approved by the privacy officer"))


def _dropped(book: Any) -> None:
    del book.cells[2]


def _swapped(book: Any) -> None:
    book.cells[3], book.cells[4] = book.cells[4], book.cells[3]


def _new_id(book: Any) -> None:
    book.cells[3].id = "approved"


def _new_type(book: Any) -> None:
    cell = book.cells[2]
    book.cells[2] = nbformat.v4.new_code_cell("print('approved')", id=cell.id)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (_extra, "it has 6 cells, the template 5"),
        (_dropped, "it has 4 cells, the template 5"),
        (_swapped, "its cell 4 is not the template's (another id or type)"),
        (_new_id, "its cell 4 is not the template's (another id or type)"),
        (_new_type, "its cell 3 is not the template's (another id or type)"),
    ],
    ids=["extra cell", "cell dropped", "cells swapped", "new id", "new type"],
)
def test_a_notebook_with_other_cells_is_refused_and_the_record_kept(
    handed_over: tuple[RunFolder, Path], change: Any, reason: str
) -> None:
    run, pod = handed_over
    before = run.notebook.read_bytes()
    theirs = executed(pod)
    change(theirs)
    with pytest.raises(NotebookRefused) as refused:
        fill_outputs(run.notebook, nbformat.writes(theirs).encode())
    assert str(refused.value) == f"the run's notebook does not match its template: {reason}"
    assert run.notebook.read_bytes() == before


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'{"cells": [', "the run's notebook is not a notebook (NotJSONError)"),
        (b"\xff\xfe", "the run's notebook is not a notebook (UnicodeDecodeError)"),
        (b"[]", "the run's notebook is not a notebook (AttributeError)"),
        (None, "the run's notebook holds outputs that are not outputs"),
    ],
    ids=["cut short", "not text", "not an object", "bad output"],
)
def test_a_notebook_that_is_not_one_is_refused_and_the_record_kept(
    handed_over: tuple[RunFolder, Path], data: bytes | None, reason: str
) -> None:
    run, pod = handed_over
    before = run.notebook.read_bytes()
    if data is None:
        theirs = json.loads(nbformat.writes(executed(pod)))
        theirs["cells"][1]["outputs"] = [{"output_type": "approval", "text": "ok"}]
        data = json.dumps(theirs).encode()
    with pytest.raises(NotebookRefused) as refused:
        fill_outputs(run.notebook, data)
    assert str(refused.value) == reason
    assert run.notebook.read_bytes() == before


def test_a_failed_run_s_notebook_is_taken_without_papermill_s_error_markers(
    handed_over: tuple[RunFolder, Path],
) -> None:
    from papermill.exceptions import PapermillExecutionError
    from papermill.execute import raise_for_execution_errors

    run, pod = handed_over
    theirs = executed(pod)
    error = nbformat.v4.new_output("error", ename="RuntimeError", evalue="wrong", traceback=[])
    theirs.cells[3].outputs = [error]
    theirs.cells[3].metadata["papermill"]["status"] = "failed"
    with pytest.raises(PapermillExecutionError):  # papermill adds its markers and saves
        raise_for_execution_errors(theirs, str(pod))
    assert len(nbformat.read(pod, as_version=4).cells) == 7
    fill_outputs(run.notebook, pod.read_bytes())
    record = nbformat.read(run.notebook, as_version=4)
    assert len(record.cells) == 5
    assert record.cells[3].outputs[0]["evalue"] == "wrong"
    assert record.cells[3].metadata["papermill"]["status"] == "failed"


@pytest.mark.parametrize(
    ("status", "error", "pod_writes", "expected"),
    [
        ("succeeded", None, "honest", ("succeeded", None)),
        ("succeeded", None, "extra", ("failed", "the run's notebook does not match its "
                                      "template: it has 6 cells, the template 5")),
        ("failed", "RuntimeError: wrong", "extra", ("failed", "RuntimeError: wrong; the run's "
         "notebook does not match its template: it has 6 cells, the template 5")),
        ("succeeded", None, "nothing", ("failed", "the run's pod wrote no notebook")),
        ("failed", "time limit of 9 s exceeded", "nothing",
         ("failed", "time limit of 9 s exceeded")),
    ],
    ids=["honest", "mismatch", "failed and mismatch", "no notebook", "failed, no notebook"],
)  # fmt: skip
def test_the_verdict_after_collection(
    handed_over: tuple[RunFolder, Path],
    status: str,
    error: str | None,
    pod_writes: str,
    expected: tuple[str, str | None],
) -> None:
    run, pod = handed_over
    theirs = executed(pod)
    if pod_writes == "extra":
        _extra(theirs)
    nbformat.write(theirs, pod)
    if pod_writes == "nothing":
        pod.unlink()
    assert collect_notebook(pod.parent, run, status, error) == expected  # type: ignore[arg-type]  # a str
    outputs = [c.get("outputs") for c in nbformat.read(run.notebook, as_version=4).cells]
    assert any(outputs) == (pod_writes == "honest")  # outputs only when taken
