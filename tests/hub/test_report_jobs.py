"""Report runs as Kubernetes Jobs, as values (reports/jobs.py): every Job manifest validates
strictly against the Kubernetes 1.33 schema and keeps the run's walls (report number, not the
workspace's; extracts read-only; its scratch; no workspace folder; restricted PSS; no token;
the time limit; no retries), and the verdict read from a Job and its pod is the truthful one
for each way a run ends on a cluster. The runs themselves: tests/k8s/test_report_jobs_standin.py.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from dossierhub.isolation.podids import pod_id, pod_ids, report_pod_id, report_pod_ids
from dossierhub.reports.jobs import JobNumbers, job_manifest, job_verdict
from dossierhub.state.home import Home
from dossierhub.state.models import read_dossier
from dossierhub.state.settings import Settings

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


def test_a_starting_service_takes_up_a_run_whose_runner_is_gone_or_bears_its_own_number() -> None:
    """Who takes a run up after a service restart: its runner's process is gone, or has the
    number of the service now starting (in a restarted pod the service is pid 1 again, as its
    predecessor was: alive by number, yet not the run's process). A live other process keeps
    its run (a `report run` in progress)."""
    import os
    import subprocess

    from dossierhub.reports.records import queued_record
    from dossierhub.reports.recovery import runner_gone

    with subprocess.Popen(["true"]) as ended:
        ended.wait()
    with subprocess.Popen(["sleep", "30"]) as other:
        try:
            for pid, gone in ((ended.pid, True), (os.getpid(), True), (other.pid, False)):
                record = queued_record(
                    "20260101T000000-abcdef", "armoede", "fine", "a.jansen",
                    template_origin="installation", template_sha256="0" * 64, parameters={},
                    extracts={}, extracts_generation=None, runner_pid=pid,
                )  # fmt: skip
                assert runner_gone(record.start()) is gone, pid
        finally:
            other.kill()
