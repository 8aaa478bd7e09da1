"""A test-only Job controller for the stand-in (standin.py): what kube-controller-manager's Job
and garbage collectors do for a Job of one pod, `backoffLimit: 0`, which is what dossierhub's
report runs are (reports/jobs.py).

It polls the API server (every 50 ms) and, like the real controllers:

1. validates each new Job strictly against the Kubernetes schema (kubernetes-validate, the
   kubelet's version); a Job that does not validate is marked Failed (reason `Invalid`),
   so a bad manifest fails the test that sent it;
2. creates the Job's pod from its template: name `<job>-<5 letters>`, the template's labels
   plus `job-name`, `batch.kubernetes.io/job-name` and `controller-uid`, an ownerReference
   to the Job (controller, blockOwnerDeletion). The stand-in kubelet then runs it for real,
   as its numbers, with its mounts;
3. keeps the Job's status: startTime and `active` once the pod exists; when the pod
   succeeds, `succeeded` and the conditions SuccessCriteriaMet and Complete; when it fails
   or disappears (deleted) before that, `failed` and FailureTarget and Failed with reason
   BackoffLimitExceeded (no retries: backoffLimit 0 is all it supports);
4. enforces `activeDeadlineSeconds` from startTime: FailureTarget and Failed with reason
   DeadlineExceeded, then the pod is deleted (the kubelet stops it: SIGTERM, SIGKILL);
5. deletes a finished Job `ttlSecondsAfterFinished` after it finished, and (the garbage
   collector) deletes the pods whose owning Job is gone.

Not done: retries, parallelism and completions other than 1, suspend, podFailurePolicy,
pod replacement, indexed Jobs.
"""

from __future__ import annotations

import datetime
import logging
import secrets
import string
import threading
from typing import Any

import httpx
import kubernetes_validate
from kubelet import KUBERNETES_VERSION, POLL_SECONDS, now

log = logging.getLogger("standin.jobcontroller")

JOBS = "/apis/batch/v1/jobs"
MERGE = {"Content-Type": "application/merge-patch+json"}


def _stamp(text: str) -> datetime.datetime:
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)


def _finished(job: dict[str, Any]) -> dict[str, Any] | None:
    """The Job's Complete or Failed condition, if it has one."""
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition["type"] in ("Complete", "Failed") and condition["status"] == "True":
            return condition
    return None


class JobController:
    """Runs the stand-in API server's Jobs until `stop()`; see the module docstring."""

    def __init__(self, api_url: str) -> None:
        self.api = httpx.Client(base_url=api_url, timeout=10)
        self.refused: dict[tuple[str, str], str] = {}  # Jobs marked Failed as Invalid, and why
        self.errors: list[BaseException] = []
        self._pods: dict[tuple[str, str], str] = {}  # (namespace, job) -> its pod's name
        self._started: dict[tuple[str, str], datetime.datetime] = {}
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jobcontroller", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=30)
        self.api.close()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._sync()
            except Exception as error:  # a controller bug must fail the test, not hang it
                log.exception("jobcontroller: sync failed")
                self.errors.append(error)
            self._stopping.wait(POLL_SECONDS)

    def _sync(self) -> None:
        jobs = self._list(JOBS)
        pods = self._list("/api/v1/pods")
        live = {job["metadata"]["uid"] for job in jobs}
        for pod in pods:  # the garbage collector: pods whose Job is gone
            owners = [o for o in pod["metadata"].get("ownerReferences") or [] if o["kind"] == "Job"]
            if (
                owners
                and owners[0]["uid"] not in live
                and not pod["metadata"].get("deletionTimestamp")
            ):
                self._delete_pod(pod)
        by_name = {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in pods}
        for job in jobs:
            key = (job["metadata"]["namespace"], job["metadata"]["name"])
            if job["metadata"].get("deletionTimestamp"):
                continue
            finished = _finished(job)
            if finished is not None:
                self._expire(key, job, finished)
            elif key in self.refused:
                continue
            elif key not in self._pods:
                self._create_pod(key, job)
            else:
                self._follow(key, job, by_name.get((key[0], self._pods[key])))
        for key in set(self._pods) - {
            (j["metadata"]["namespace"], j["metadata"]["name"]) for j in jobs
        }:
            del self._pods[key]
            self._started.pop(key, None)

    def _list(self, path: str) -> list[dict[str, Any]]:
        listed = self.api.get(path)
        listed.raise_for_status()
        items: list[dict[str, Any]] = listed.json()["items"]
        return items

    def _create_pod(self, key: tuple[str, str], job: dict[str, Any]) -> None:
        try:
            kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = "/".join(str(p) for p in error.absolute_path)
            self.refused[key] = f"{path}: {error.message}"
            log.warning("jobcontroller: Job %s/%s refused: %s", *key, self.refused[key])
            self._fail(key, "Invalid", self.refused[key])
            return
        template = job["spec"]["template"]
        suffix = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(5))
        name = f"{key[1]}-{suffix}"
        labels = {
            **(template.get("metadata") or {}).get("labels", {}),
            "job-name": key[1],
            "batch.kubernetes.io/job-name": key[1],
            "controller-uid": job["metadata"]["uid"],
        }
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": key[0],
                "labels": labels,
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": key[1],
                        "uid": job["metadata"]["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": template["spec"],
        }
        self.api.post(f"/api/v1/namespaces/{key[0]}/pods", json=pod).raise_for_status()
        self._pods[key] = name
        started = now()
        self._started[key] = _stamp(started)
        self._patch_job(key, {"status": {"startTime": started, "active": 1}})
        log.info("jobcontroller: Job %s/%s created pod %s", *key, name)

    def _follow(
        self, key: tuple[str, str], job: dict[str, Any], pod: dict[str, Any] | None
    ) -> None:
        phase = ((pod or {}).get("status") or {}).get("phase")
        deadline = job["spec"].get("activeDeadlineSeconds")
        elapsed = (datetime.datetime.now(tz=datetime.UTC) - self._started[key]).total_seconds()
        if phase == "Succeeded":
            self._complete(key)
        elif phase == "Failed" or pod is None:
            self._fail(key, "BackoffLimitExceeded", "Job has reached the specified backoff limit")
        elif deadline is not None and elapsed >= deadline:
            # as the real controller: the condition first, then the pod is deleted
            self._fail(key, "DeadlineExceeded", "Job was active longer than specified deadline")
            if pod is not None and not pod["metadata"].get("deletionTimestamp"):
                self._delete_pod(pod)

    def _complete(self, key: tuple[str, str]) -> None:
        stamp = now()
        conditions = [
            {"type": kind, "status": "True", "reason": "CompletionsReached",
             "message": "Reached expected number of succeeded pods",
             "lastProbeTime": stamp, "lastTransitionTime": stamp}
            for kind in ("SuccessCriteriaMet", "Complete")
        ]  # fmt: skip
        status = {"conditions": conditions, "active": 0, "succeeded": 1, "completionTime": stamp}
        self._patch_job(key, {"status": status})
        log.info("jobcontroller: Job %s/%s complete", *key)

    def _fail(self, key: tuple[str, str], reason: str, message: str) -> None:
        stamp = now()
        conditions = [
            {"type": kind, "status": "True", "reason": reason, "message": message,
             "lastProbeTime": stamp, "lastTransitionTime": stamp}
            for kind in ("FailureTarget", "Failed")
        ]  # fmt: skip
        self._patch_job(key, {"status": {"conditions": conditions, "active": 0, "failed": 1}})
        log.info("jobcontroller: Job %s/%s failed: %s", *key, reason)

    def _expire(self, key: tuple[str, str], job: dict[str, Any], finished: dict[str, Any]) -> None:
        ttl = job["spec"].get("ttlSecondsAfterFinished")
        if ttl is None:
            return
        since = datetime.datetime.now(tz=datetime.UTC) - _stamp(finished["lastTransitionTime"])
        if since.total_seconds() >= ttl:
            self.api.delete(f"/apis/batch/v1/namespaces/{key[0]}/jobs/{key[1]}")

    def _patch_job(self, key: tuple[str, str], patch: dict[str, Any]) -> None:
        response = self.api.patch(
            f"/apis/batch/v1/namespaces/{key[0]}/jobs/{key[1]}", json=patch, headers=MERGE
        )
        if response.status_code != 404:  # deleted meanwhile
            response.raise_for_status()

    def _delete_pod(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        response = self.api.delete(f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}")
        if response.status_code != 404:
            response.raise_for_status()
