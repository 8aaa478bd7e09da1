"""Report runs as Kubernetes Jobs (`reports.backend: kubernetes`): one Job per run.

The service (or `report run`) decides, queues and records a run as with local kernels
(requests.py, execute.py); only the notebook's execution moves into a pod:

- **inputs**: the service builds the run's notebook of record itself, from its copy of the
  template and the checked parameters (jobnotebook.record_notebook, into the run folder), and
  writes it into a fresh scratch folder of the run, scratch/<id>/<token>/ on HOME's shared
  volume, its own and of the report number's group (inherited from scratch/<id>, which apply
  made setgid: the service needs neither root nor a capability), then opens it to that group,
  sticky, so the pod can write beside its input but not replace it; the pod runs `dossierhub
  report execute-job FOLDER` (jobrunner.py): papermill on a Dossier kernel in the same pod,
  writing the notebook, its verdict and what publish() writes into that folder;
- **identity** (`job_manifest`, pure): the dossier's report number (isolation/podids.py,
  handed out by apply, never the workspace's), reading the extracts through their group as a
  local report kernel does; the extracts folder read-only and the run's scratch folder
  read-write (subPaths of HOME's claim, isolation/podspec.py, as a workspace's pod), no
  workspace folder, nothing else of HOME; the restricted Pod Security Standard, no
  service-account token, memory and CPU as the workspace's;
- **time and retries**: `activeDeadlineSeconds` is the template's time limit, `backoffLimit`
  0 (a failed run is not run twice), `ttlSecondsAfterFinished` a fallback: the service
  deletes the Job (and so its pod) once it has a verdict;
- **status** (`job_verdict`, pure): from the Job's conditions and its pod, never from a file
  the pod wrote: succeeded (Complete), or failed with why: the cell error (the runner's
  result.json names it; it can only explain a failure, never turn one into success), the
  time limit (DeadlineExceeded), out of memory (OOMKilled), the pod deleted, the image
  missing (ErrImagePull, ImagePullBackOff: a Job never fails by itself on those);
- **collection**: once the pod is gone, the pod's notebook is read from the scratch folder
  through descriptors that follow no link (isolation/safefs.py) and only its outputs are
  taken into the notebook of record, cell by cell (jobnotebook.fill_outputs: the kernel
  shares the pod's number with papermill and could have rewritten the rest); execute_run
  collects the published tables the same way, checks, draws and records as ever.

The warm kernel pool is off with this backend: a kernel started ahead of time would be a
pod waiting per dossier (docs/operating-on-kubernetes.md).

A Job outlives the service that made it: a service told to stop (`handed_over_when`, its pod
rolled or evicted) leaves its Jobs running and records nothing (HandedOver), and the next
service takes each of them up from its run label (`find_job`, `resume_job`: the same wait,
verdict, deletion and collection; reports/resume.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dossier_kernel.published import PUBLISHED_DIR
from dossierhub.isolation.cluster import cluster_client
from dossierhub.isolation.environment import dossier_environment, workspace_python
from dossierhub.isolation.podids import PodIdsError, report_pod_ids
from dossierhub.isolation.podspec import (
    DOSSIER_LABEL,
    ROLE_LABEL,
    home_storage,
    pod_resources,
    pod_security,
)
from dossierhub.isolation.safefs import UnsafeFile, opened_dir, read_regular, write_new
from dossierhub.isolation.unixusers import (
    ScratchRefused,
    dossier_owner,
    identities,
    isolation_enabled,
    new_report_scratch,
    open_report_scratch,
)
from dossierhub.reports.jobnotebook import NotebookRefused, fill_outputs_apart, record_notebook
from dossierhub.reports.jobrunner import OUTPUT, PARAMETERS, RESULT, TEMPLATE
from dossierhub.reports.records import RunStatus
from dossierhub.state.home import Home, RunFolder
from dossierhub.state.models import Dossier, read_dossier
from dossierhub.state.settings import Settings, load_settings

log = logging.getLogger("dossierhub.reports.jobs")

RUN_LABEL = "dossierhub.io/run"
JOB_NAME_LABEL = "job-name"  # what the Job controller labels a Job's pods with
TTL_SECONDS = 300  # the cluster's own clean-up, should the service not delete the Job
NOTEBOOK_BYTES = 64 * 1024 * 1024
RESULT_BYTES = 64 * 1024
POLL_SECONDS = 0.25
# how long past its time limit a Job may go without a verdict (a pod never scheduled, an
# API server that does not answer) before the service gives up on it
SILENCE_SECONDS = 120
GONE_SECONDS = 60  # how long the service waits for the pod to end after deleting the Job
# made by the service with the run folder: publish() writes there, and what the pod makes in
# a folder of the service's the service can remove (isolation/unixusers.py)
JOB_SUBFOLDERS = (PUBLISHED_DIR,)
IMAGE_MISSING = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
CANNOT_START = {"CreateContainerConfigError", "CreateContainerError", "RunContainerError"}


class JobRefused(Exception):
    """A run that cannot be made a Job (the dossier is not applied for it); says why."""


class PodNotGone(TimeoutError):
    """The run's pod had not ended GONE_SECONDS after its Job was deleted (a node that does
    not answer): it may still be writing its scratch folder."""


class HandedOver(BaseException):
    """The service stops while a run's Job goes on in the cluster: the Job is left running
    for the next service to take up, and nothing is recorded. A BaseException, as SystemExit:
    no layer that settles a broken run as failed (execute, execute_run) may catch it."""


_following = threading.local()


@contextlib.contextmanager
def handed_over_when(stopping: threading.Event) -> Iterator[None]:
    """Runs followed in this thread are handed over (HandedOver) once `stopping` is set: the
    service that owns the thread stops (web/runner.py), and every Job it waits for is left
    undeleted at its next poll for the next service (reports/resume.py). Per thread, not
    per process: `report run`, or a process that closed one service and goes on (the tests),
    follows its runs to their end."""
    before = getattr(_following, "stopping", None)
    _following.stopping = stopping
    try:
        yield
    finally:
        _following.stopping = before


def _stopping() -> bool:
    event = getattr(_following, "stopping", None)
    return event is not None and event.is_set()


def job_name(dossier_id: str, run_id: str) -> str:
    """report-<id>-<run id>: at most 7 + 24 + 1 + 22 = 54 characters, a DNS label."""
    return f"report-{dossier_id}-{run_id.lower()}"


def job_labels(dossier_id: str, run_id: str) -> dict[str, str]:
    return {DOSSIER_LABEL: dossier_id, ROLE_LABEL: "report", RUN_LABEL: run_id.lower()}


@dataclass(frozen=True)
class JobNumbers:
    """Who a dossier's Job runs as: its report number, and the group of its extracts."""

    report: int
    extracts_gid: int


def job_numbers(home: Home, dossier_id: str) -> JobNumbers:
    """The numbers apply handed out; JobRefused when there are none (never handed out here:
    the extracts must already carry the group the Job reads them through)."""
    try:
        number = report_pod_ids(home).get(dossier_id)
    except (PodIdsError, OSError) as exc:
        raise JobRefused(f"dossier {dossier_id}: {exc}") from None
    ids = identities(home, dossier_id) if isolation_enabled() else None
    owner = dossier_owner(home, dossier_id, ids) if number is not None else None
    if number is None or owner is None:
        raise JobRefused(
            f"dossier {dossier_id} has not been applied for report runs on Kubernetes: its "
            "files have no report identity yet; ask the admin to run `dossierhub apply`"
        )
    return JobNumbers(number, owner.extracts_gid)


def job_manifest(
    home: Home,
    settings: Settings,
    dossier: Dossier,
    run_id: str,
    scratch: Path,
    numbers: JobNumbers,
    limit: float,
) -> dict[str, Any]:
    """The Job of one run (see the module docstring); contacts nothing, reads no file."""
    kube = settings.kubernetes
    python = workspace_python(settings)
    environment = dossier_environment(
        home, dossier, settings, kind="report", folder=scratch, python=python, sandboxed=True
    )
    storage = home_storage(
        home,
        kube.home_claim,
        [(home.extract_dir(dossier.id), True), (scratch, False)],
        kube.tmp_size,
    )
    pod_context, container_context = pod_security(numbers.report, (numbers.extracts_gid,))
    resources = pod_resources(environment, kube.memory_overhead)
    labels = job_labels(dossier.id, run_id)
    container = {
        "name": "report",
        "image": kube.runner_image or kube.image,
        "command": [str(Path(python).parent / "dossierhub"), "report", "execute-job"],
        "args": [str(scratch)],
        "workingDir": str(scratch),
        "env": [{"name": k, "value": v} for k, v in sorted(environment.env.items())],
        "securityContext": container_context,
        "volumeMounts": storage.mounts,
        "resources": {
            "limits": {"memory": str(resources.mem_limit), "cpu": str(resources.cpu_limit)},
            "requests": {"memory": str(resources.mem_guarantee)},
        },
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(dossier.id, run_id),
            "namespace": kube.namespace,
            "labels": labels,
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": max(1, math.ceil(limit)),
            "ttlSecondsAfterFinished": TTL_SECONDS,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": pod_context,
                    "volumes": storage.volumes,
                    "containers": [container],
                },
            },
        },
    }


def _true(conditions: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in conditions if c.get("status") == "True"}


def pod_trouble(pod: dict[str, Any]) -> str | None:
    """Why the run's pod cannot go on, or None: its image missing, its container not made,
    the pod refused. (A Job waits for ever on those; its deadline would name the wrong cause.)"""
    status = pod.get("status") or {}
    for container in status.get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting") or {}
        reason, message = waiting.get("reason"), waiting.get("message") or ""
        if reason in IMAGE_MISSING:
            image = container.get("image") or "the runner image"
            return f"the runner image {image} cannot be pulled ({reason}: {message})"[:500]
        if reason in CANNOT_START:
            return f"the run's container cannot start ({reason}: {message})"[:500]
    return None


def pod_failure(pod: dict[str, Any]) -> str | None:
    """What ended the run's pod, from its container's state (None: nothing told)."""
    status = pod.get("status") or {}
    for container in status.get("containerStatuses") or []:
        ended = (container.get("state") or {}).get("terminated") or {}
        if ended.get("reason") == "OOMKilled":
            return "out of memory: the run's pod was killed at its memory limit (OOMKilled)"
        if ended.get("exitCode"):
            return f"the run's process ended with exit code {ended['exitCode']}"
    if status.get("phase") == "Failed" and status.get("reason"):
        return f"the run's pod failed ({status['reason']}: {status.get('message', '')})"[:500]
    return None


def job_verdict(
    job: dict[str, Any],
    pods: list[dict[str, Any]],
    *,
    limit: float,
    deleted: str | None = None,
    cell_error: str | None = None,
) -> tuple[RunStatus, str | None] | None:
    """The run's status from its Job and pods, or None while it runs. `deleted`: the name of
    a pod of the Job deleted before the Job ended; `cell_error`: what the runner's
    result.json says, used only to explain a failure."""
    conditions = _true((job.get("status") or {}).get("conditions") or [])
    if "Complete" in conditions:
        return "succeeded", None
    ended = conditions.get("Failed") or conditions.get("FailureTarget")
    if ended is None:
        stuck = next((why for why in map(pod_trouble, pods) if why), None)
        return ("failed", stuck) if stuck else None
    if ended.get("reason") == "DeadlineExceeded":
        return "failed", f"time limit of {limit:.0f} s exceeded"
    if deleted is not None:
        return "failed", f"the run's pod {deleted} was deleted before the run ended"
    for pod in pods:  # out of memory says more than the cell that was running then
        if (why := pod_failure(pod)) and ("OOMKilled" in why or not cell_error):
            return "failed", why
    if cell_error:
        return "failed", cell_error
    reason = ended.get("reason") or "Failed"
    return "failed", f"the run's Job failed ({reason}: {ended.get('message', '')})"[:500]


# --- the service's side: make the scratch folder and the Job, wait for it, collect ---


@dataclass(frozen=True)
class PreparedJob:
    """A run's numbers and its fresh scratch folder, before the Job exists."""

    numbers: JobNumbers
    scratch: Path


def prepare_job(home: Home, dossier_id: str) -> PreparedJob:
    """The dossier's numbers and a fresh folder for the run under scratch/<id>/ on HOME's
    volume (JobRefused without either): the service's own, of the report number's group, closed
    (`0700`) until `hand_over` opens it to the Job. The service need not be root for it, nor
    hold any capability: the group comes from scratch/<id>, which apply prepared
    (isolation/unixusers.py `new_report_scratch`)."""
    numbers = job_numbers(home, dossier_id)
    try:
        scratch = new_report_scratch(home, dossier_id, numbers.report, JOB_SUBFOLDERS)
    except (ScratchRefused, UnsafeFile) as exc:
        raise JobRefused(f"dossier {dossier_id}: {exc}") from None
    return PreparedJob(numbers, scratch)


def hand_over(scratch: Path, template: Path, values: dict[str, Any], number: int) -> None:
    """The run's inputs into its scratch folder (the service's files the pod reads, 0644),
    then the folder opened to the report number's group: sticky, so the pod writes its
    notebook beside the inputs but cannot replace them."""
    with opened_dir(scratch) as folder:
        write_new(folder, TEMPLATE, template.read_bytes(), 0o644)
        write_new(folder, PARAMETERS, json.dumps(values).encode(), 0o644)
    open_report_scratch(scratch, number, JOB_SUBFOLDERS)


def run_job(
    home: Home, dossier_id: str, run: RunFolder, template: Path, values: dict[str, Any],
    job: PreparedJob, limit: float,
) -> tuple[RunStatus, str | None]:  # fmt: skip
    """One run as a Job, start to verdict: the notebook of record into the run folder (the
    service's own, jobnotebook.py), make the Job to run it, wait, delete it and its pod, then
    take the pod's outputs into the notebook of record. Never raises for a failed run: the
    status says why."""
    settings = load_settings(home)
    scratch = job.scratch
    record_notebook(template, values, run.notebook)
    # the pod runs the notebook of record as it is: the parameters are in it already
    hand_over(scratch, run.notebook, {}, job.numbers.report)
    manifest = job_manifest(
        home, settings, read_dossier(home, dossier_id), run.run_id, scratch, job.numbers, limit
    )
    try:
        status, error = asyncio.run(_run(settings, manifest, scratch, limit))
    except PodNotGone as exc:
        return not_gone(exc)
    return collect_notebook(scratch, run, status, error)


def not_gone(exc: PodNotGone) -> tuple[RunStatus, str]:
    """A pod that may still be writing: none of its notebook is taken (the run keeps the
    notebook of record without outputs), and the record says what execute_run copies after
    this (a failed run's tables, never checked nor released)."""
    return "failed", (
        f"{exc} after its deletion: none of its notebook was taken, and the tables it "
        "published, if any, were copied while it may still have been running"
    )


def collect_notebook(
    scratch: Path, run: RunFolder, status: RunStatus, error: str | None
) -> tuple[RunStatus, str | None]:
    """The verdict once the Job and its pod are gone and the pod's outputs are taken into
    the notebook of record (take_notebook). A succeeded run whose notebook cannot be taken
    fails for it; a failed run keeps its reason, and a notebook refused adds why. Either way
    the run keeps the notebook of record, with the outputs only when they were taken."""
    try:
        if take_notebook(scratch, run):
            return status, error
        why = "the run's pod wrote no notebook"
    except NotebookRefused as exc:
        why = str(exc)
        if status != "succeeded":
            return status, f"{error}; {why}"[:500]
    except (UnsafeFile, OSError) as exc:
        why = f"the run's notebook cannot be collected: {exc}"
    return ("failed", why[:500]) if status == "succeeded" else (status, error)


@dataclass(frozen=True)
class FoundJob:
    """A run's Job as the cluster has it: its name, its time limit and its scratch folder."""

    name: str
    limit: float
    scratch: Path


def find_job(home: Home, dossier_id: str, run_id: str) -> FoundJob | None:
    """The Job of a run, found by its labels (job_labels), or None when the cluster has none.
    Its scratch folder is taken from the Job only when it is one of this dossier's (the
    folder is deleted after collection: a Job's word alone never names what to delete)."""
    settings = load_settings(home)
    jobs = asyncio.run(_labelled_jobs(settings, job_labels(dossier_id, run_id)))
    for job in jobs:
        spec = job["spec"]
        args = spec["template"]["spec"]["containers"][0].get("args") or []
        scratch = _run_folder(home, dossier_id, args)
        if scratch is None:
            raise JobRefused(
                f"the Job {job['metadata']['name']} of run {run_id} does not name a scratch "
                f"folder of dossier {dossier_id}; it is left as it is"
            )
        return FoundJob(job["metadata"]["name"], spec["activeDeadlineSeconds"], scratch)
    return None


def _run_folder(home: Home, dossier_id: str, args: list[Any]) -> Path | None:
    """The run folder a Job's one argument names, when it is exactly one the service makes
    (new_report_scratch: scratch/<id>/<16 hex>), else None: no `..`, no other folder."""
    if len(args) != 1 or not isinstance(args[0], str):
        return None
    folder = Path(args[0])
    wanted = home.scratch_parent(dossier_id) / folder.name
    if args[0] != str(wanted) or not re.fullmatch(r"[0-9a-f]{16}", folder.name):
        return None
    return wanted


def resume_job(home: Home, run: RunFolder, job: FoundJob) -> tuple[RunStatus, str | None]:
    """A run whose Job another service made (and was stopped before its verdict), to its
    verdict and collection as run_job would: wait, delete the Job and its pod, copy the
    notebook. The Job's own deadline still holds; the wait allows it again from now."""
    settings = load_settings(home)
    namespace = settings.kubernetes.namespace
    try:
        status, error = asyncio.run(_follow(settings, namespace, job.name, job.scratch, job.limit))
    except PodNotGone as exc:
        return not_gone(exc)
    return collect_notebook(job.scratch, run, status, error)


def take_notebook(scratch: Path, run: RunFolder) -> bool:
    """The outputs of the executed notebook in the scratch folder (the report number's) into
    the notebook of record in the run folder (root's, jobnotebook.fill_outputs): read as a
    plain file, no link followed. False: none was written. NotebookRefused: not the record's
    cells."""
    with opened_dir(scratch) as folder:
        try:
            data = read_regular(folder, OUTPUT, NOTEBOOK_BYTES)
        except UnsafeFile:
            if not _exists(folder, OUTPUT):
                return False  # the pod never got to write it (image missing, deleted early)
            raise
    fill_outputs_apart(run.notebook, data)
    return True


def _exists(folder: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _cell_error(scratch: Path) -> str | None:
    """The runner's reason for a failure (result.json), read without following a link."""
    try:
        with opened_dir(scratch) as folder:
            result = json.loads(read_regular(folder, RESULT, RESULT_BYTES))
        error = result.get("error") if isinstance(result, dict) else None
        return str(error)[:500] if error else None
    except Exception:  # whatever the pod wrote (nested past the parser's depth, too): no reason
        return None


async def _run(
    settings: Settings, manifest: dict[str, Any], scratch: Path, limit: float
) -> tuple[RunStatus, str | None]:
    from kubernetes_asyncio import client
    from kubernetes_asyncio.client.exceptions import ApiException

    namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
    async with await cluster_client(settings) as api:
        batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
        try:
            # typed as V1Job; a dict (the manifest validated in tests/hub) is sent as it is
            await batch.create_namespaced_job(namespace, manifest)  # type: ignore[arg-type]  # dict
        except ApiException as exc:
            return "failed", f"Kubernetes refused the run's Job ({exc.status}: {exc.reason})"
        log.info("report Job %s/%s created", namespace, name)
        return await _conclude(batch, core, namespace, name, limit, scratch)


async def _follow(
    settings: Settings, namespace: str, name: str, scratch: Path, limit: float
) -> tuple[RunStatus, str | None]:
    """_run for a Job that exists already (resume_job)."""
    from kubernetes_asyncio import client

    async with await cluster_client(settings) as api:
        batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
        log.info("report Job %s/%s taken up", namespace, name)
        return await _conclude(batch, core, namespace, name, limit, scratch)


async def _conclude(
    batch: Any, core: Any, namespace: str, name: str, limit: float, scratch: Path
) -> tuple[RunStatus, str | None]:
    """Wait for the Job's verdict, then delete it and wait its pod out; handed over (the
    service stops), the Job is left running for the next service."""
    try:
        verdict = await _watch(batch, core, namespace, name, limit, scratch)
    except BaseException as exc:
        if isinstance(exc, HandedOver) or _stopping():
            # a stopping process's calls fail too (its executors shut down): not the run's
            log.info("report Job %s/%s left running for the next service", namespace, name)
            raise HandedOver(name) from None
        await _delete(batch, core, namespace, name)
        raise
    log.info("report Job %s/%s: %s", namespace, name, verdict[0])
    await _delete(batch, core, namespace, name)
    log.info("report Job %s/%s deleted, its pod gone", namespace, name)
    return verdict


async def _labelled_jobs(settings: Settings, labels: dict[str, str]) -> list[dict[str, Any]]:
    """The namespace's Jobs with every one of `labels` (selected here again, as _pods)."""
    from kubernetes_asyncio import client

    selector = ",".join(f"{key}={value}" for key, value in sorted(labels.items()))
    async with await cluster_client(settings) as api:
        batch = client.BatchV1Api(api)
        listed = await batch.list_namespaced_job(
            settings.kubernetes.namespace, label_selector=selector
        )
        jobs = [api.sanitize_for_serialization(job) for job in listed.items]
    return [
        job
        for job in jobs
        if labels.items() <= (job["metadata"].get("labels") or {}).items()
        and not job["metadata"].get("deletionTimestamp")
    ]


async def _pods(
    core: Any, namespace: str, name: str, job_uid: str | None = None
) -> list[dict[str, Any]]:
    """The Job's pods (selected here again: not every API server filters by label). With
    `job_uid`, only those the Job itself made (its controller reference): a label anyone who
    may create pods in the namespace can set, so a pod labelled so by another could otherwise
    feed the run's verdict."""
    listed = await core.list_namespaced_pod(namespace, label_selector=f"{JOB_NAME_LABEL}={name}")
    pods = [core.api_client.sanitize_for_serialization(p) for p in listed.items]
    return [
        p
        for p in pods
        if (p["metadata"].get("labels") or {}).get(JOB_NAME_LABEL) == name
        and (job_uid is None or _made_by(p, job_uid))
    ]


def _made_by(pod: dict[str, Any], job_uid: str) -> bool:
    return any(
        ref.get("kind") == "Job" and ref.get("uid") == job_uid and ref.get("controller")
        for ref in pod["metadata"].get("ownerReferences") or []
    )


async def _watch(
    batch: Any, core: Any, namespace: str, name: str, limit: float, scratch: Path
) -> tuple[RunStatus, str | None]:
    from kubernetes_asyncio.client.exceptions import ApiException

    give_up = time.monotonic() + limit + SILENCE_SECONDS
    seen: set[str] = set()
    deleted: str | None = None
    while time.monotonic() < give_up:
        if _stopping():
            raise HandedOver(name)
        try:
            job = batch.api_client.sanitize_for_serialization(
                await batch.read_namespaced_job(name, namespace)
            )
        except ApiException as exc:
            if exc.status == 404:
                return "failed", f"the run's Job {name} was deleted before the run ended"
            raise
        pods = await _pods(core, namespace, name, job["metadata"].get("uid"))
        current = {p["metadata"]["name"]: p for p in pods}
        for pod_name, pod in current.items():
            if pod["metadata"].get("deletionTimestamp") and deleted is None:
                deleted = pod_name
        gone = seen - set(current)
        deleted = deleted or next(iter(sorted(gone)), None)
        seen |= set(current)
        failed = any(
            c.get("type") in ("Failed", "FailureTarget") and c.get("status") == "True"
            for c in (job.get("status") or {}).get("conditions") or []
        )
        verdict = job_verdict(
            job,
            pods,
            limit=limit,
            deleted=deleted,
            cell_error=_cell_error(scratch) if failed else None,
        )
        if verdict is not None:
            return verdict
        await asyncio.sleep(POLL_SECONDS)
    return "failed", f"no verdict from Kubernetes on the run's Job {name} in time"


async def _delete(batch: Any, core: Any, namespace: str, name: str) -> None:
    """Delete the Job and its pod, and wait until the pod is gone: nothing may still write
    the scratch folder while it is collected."""
    from kubernetes_asyncio import client
    from kubernetes_asyncio.client.exceptions import ApiException

    try:
        await batch.delete_namespaced_job(
            name, namespace, body=client.V1DeleteOptions(propagation_policy="Background")
        )
    except ApiException as exc:
        if exc.status != 404:
            raise
    deadline = time.monotonic() + GONE_SECONDS
    while time.monotonic() < deadline:
        pods = await _pods(core, namespace, name)
        if not pods:
            return
        for pod in pods:  # what Background propagation does on a cluster, done here too
            if not pod["metadata"].get("deletionTimestamp"):
                try:
                    await core.delete_namespaced_pod(pod["metadata"]["name"], namespace)
                except ApiException as exc:
                    if exc.status != 404:
                        raise
        await asyncio.sleep(POLL_SECONDS)
    raise PodNotGone(f"the run's pod of Job {name} did not end in {GONE_SECONDS} s")
