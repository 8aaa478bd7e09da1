"""Who reads and writes what on a shared HOME on Kubernetes, for real: after the real `dossierhub
apply` in the apply CronJob's sandbox (test_apply_pod.py's harness), the hub and the service,
each run with exactly the identity its pod is rendered with (the hub's from `dossierhub k8s
values`, the service's from `helm template` of deploy/chart: uid, gid, no capability, no
fsGroup), do their work with dossierhub's own code (control_probe.py): the hub loads the
settings, reads a manifest and the pod numbers, sees a dossier's catalog, builds its config
(z2jh_hub_config) and a workspace's pod (DossierKubeSpawner.prepare_start, recorded in the
audit log); the service reads a dossier's catalog and queues a run (its folder and record).
A workspace's number does none of it. The rule (isolation/unixusers.py control_owner): what
root holds on one machine is the control identity's (kubernetes.control_uid) on pods.

Report runs as Jobs (reports.backend: kubernetes, which this HOME sets): the service, with no
capability, makes a run's scratch folder and inputs (reports/jobs.py prepare_job, hand_over);
the Job's number, with the securityContext job_manifest renders, writes what the runner
writes there and cannot replace the inputs (job_probe.py); another dossier's number and the
workspace's reach nothing of it; the service collects and removes it, and apply (root)
removes what a Job closed to it. Before, the service could not hand the folder over at all.

The hub authenticates its audit records with keys derived from the master key, or with the
audit keys alone (`audit.key_file`), whose Secret the values do not mount yet; the hub gets the
master key here as a Secret's file it can read (root's, 0444) instead
(docs/operating-on-kubernetes.md, "Not yet").
The service's sandbox gets the key unreadable to it, as its empty folder over HOME/secrets is:
queuing a run needs no key."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helm import REPO, render
from test_apply_pod import (
    ApplyPod,
    apply_pod,
    as_number,
    chart_cronjob,
    environment,
    pod_home,
    run_apply_pod,
    run_in_pod,
)

from dossierhub.isolation.podids import pod_ids, report_pod_ids
from dossierhub.isolation.safefs import UnsafeFile
from dossierhub.isolation.unixusers import own_report_scratch
from dossierhub.reports.jobrunner import PARAMETERS, TEMPLATE
from dossierhub.reports.jobs import job_manifest, job_numbers
from dossierhub.state.home import Home
from dossierhub.state.models import read_dossier
from dossierhub.state.settings import AuditSettings, load_settings
from dossierhub.workspaces.k8svalues import z2jh_values

from helpers import read_yaml, write_yaml

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("bwrap") or not shutil.which("setpriv"),
    reason="runs apply, the hub and the service as their pods' uids: needs root, bwrap, setpriv",
)

PROBE = REPO / "tests" / "deploy" / "control_probe.py"
JOB_PROBE = REPO / "tests" / "deploy" / "job_probe.py"
HUB_STEPS = ("settings", "manifest", "numbers", "catalog_seen", "hub_config", "workspace_start")
SERVICE_STEPS = ("catalog_read", "run_folder")


def pod_as(
    context: dict[str, Any], fs_group: int | None, like: ApplyPod, key_mode: int
) -> ApplyPod:
    """The sandbox of a pod whose merged securityContext is `context`, HOME and the key
    mounted as in `like` (the key root's, grouped by the fsGroup, `key_mode`)."""
    capabilities = context.get("capabilities", {})
    assert capabilities.get("drop") == ["ALL"], "the sandbox models a container that drops ALL"
    gid = context["runAsGroup"]
    extra = [*([fs_group] if fs_group is not None else []), *context.get("supplementalGroups", [])]
    return dataclasses.replace(
        like,
        uid=context["runAsUser"],
        gid=gid,
        groups=sorted({gid, *extra}),
        capabilities=[c.upper() for c in capabilities.get("add", [])],
        no_new_privs=context.get("allowPrivilegeEscalation") is False,
        read_only_root=context.get("readOnlyRootFilesystem") is True,
        key_mode=key_mode,
        key_group=fs_group if fs_group is not None else 0,
    )


def hub_pod(home: Home, like: ApplyPod) -> ApplyPod:
    """z2jh's hub pod with the values of `dossierhub k8s values` (a key set to None is one
    helm drops from the chart's defaults: the fsGroup)."""
    # the hub's identity as the values give it (the audit keys' path matters not for that)
    settings = load_settings(home).model_copy(
        update={"audit": AuditSettings(key_file="/run/secrets/dossierhub-audit/audit.keys")}
    )
    hub = z2jh_values(settings)["hub"]
    pod, container = hub["podSecurityContext"], hub["containerSecurityContext"]
    return pod_as({**pod, **container}, pod.get("fsGroup"), like, key_mode=0o444)


def service_pod(like: ApplyPod) -> ApplyPod:
    deployment = next(o for o in render() if o["kind"] == "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    context = {**spec["securityContext"], **container["securityContext"]}
    return pod_as(context, spec["securityContext"].get("fsGroup"), like, key_mode=0o400)


def probe(pod: ApplyPod, home: Home, work: Path, steps: tuple[str, ...]) -> dict[str, str]:
    python = str(environment() / "bin" / "python")
    result = run_in_pod(pod, home.root, work, [python, str(PROBE), pod.home_path, *steps])
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


def probe_as_number(number: int, home: Home, steps: tuple[str, ...]) -> dict[str, str]:
    python = str(environment() / "bin" / "python")
    result = as_number(number, python, str(PROBE), str(home.root), *steps)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


@dataclasses.dataclass
class Cluster:
    home: Home
    work: Path
    apply: ApplyPod
    hub: ApplyPod
    service: ApplyPod


@pytest.fixture(scope="module")
def cluster(demo_data: Path) -> Iterator[Cluster]:
    """The demo HOME applied by the CronJob's pod, with the values' hub image set."""
    apply = apply_pod(chart_cronjob())
    root = pod_home(demo_data, (apply.uid, apply.gid))
    try:
        settings = read_yaml(root / "settings.yaml")
        settings["kubernetes"]["hub_image"] = "registry.example.org/dossierhub-hub:1.0"
        settings["reports"] = {**(settings.get("reports") or {}), "backend": "kubernetes"}
        write_yaml(root / "settings.yaml", settings)
        work = root.parent / "pod"
        work.mkdir()
        applied = run_apply_pod(apply, root, work)
        assert applied.returncode == 0, applied.stderr[-3000:]
        home = Home(root)
        yield Cluster(home, work, apply, hub_pod(home, apply), service_pod(apply))
    finally:
        shutil.rmtree(root.parent)


def test_the_hub_and_the_service_are_the_one_control_identity(cluster: Cluster) -> None:
    control = load_settings(cluster.home).kubernetes.control_uid
    for pod in (cluster.hub, cluster.service):
        assert (pod.uid, pod.gid, pod.groups, pod.capabilities) == (control, control, [control], [])
        assert pod.no_new_privs


def test_apply_leaves_home_s_control_files_and_the_extracts_to_the_control_identity(
    cluster: Cluster,
) -> None:
    home = cluster.home
    control = cluster.hub.uid
    for path, mode in (
        (home.settings_file, 0o600),
        (home.catalog_file, 0o600),
        (home.hub_dir, 0o700),
        (home.pod_ids_file, 0o600),
        (home.directory_file, None),
        (home.audit_dir, 0o700),
        (home.audit_log_file, 0o600),
        (home.audit_head_file, None),
        (home.dossiers_dir, 0o700),
        (home.manifest_file("armoede"), None),
        (home.locks_dir, 0o700),
        (home.scratch_dir, 0o711),  # the service makes scratch/<id> for report Jobs
    ):
        info = os.lstat(path)
        assert (info.st_uid, info.st_gid) == (control, control), path
        assert mode is None or stat.S_IMODE(info.st_mode) == mode, path
    number = pod_ids(home)["armoede"]
    catalog = os.stat(home.extract_catalog("armoede"))
    assert (catalog.st_uid, catalog.st_gid, stat.S_IMODE(catalog.st_mode)) == (
        control,
        number,
        0o640,  # the number reads through its group; it writes nothing
    )
    workspace = os.lstat(home.workspace_dir("armoede"))
    assert (workspace.st_uid, stat.S_IMODE(workspace.st_mode)) == (number, 0o700)
    # apply's alone: the master key's folder (the Secret's mount point) and the raw sources;
    # HOME and its frame folders stay root's, passed (0711) but never written by the others
    for private in (home.master_key_file.parent, home.raw_dir):
        assert os.lstat(private).st_uid == 0, private
    for frame in (home.root, home.extracts_dir, home.workspaces_dir):
        info = os.lstat(frame)
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (0, 0o711), frame


def test_the_hub_s_identity_does_the_hub_s_work(cluster: Cluster) -> None:
    number = pod_ids(cluster.home)["armoede"]
    seen = probe(cluster.hub, cluster.home, cluster.work, HUB_STEPS)
    assert seen == {
        "settings": "ok: spawner kubernetes",
        "manifest": "ok: Poverty measures 2026",
        "numbers": f"ok: {number}",
        "catalog_seen": "ok: True",
        "hub_config": "ok: dossierhub.workspaces.kubespawner.DossierKubeSpawner",
        "workspace_start": f"ok: pod runs as {number}",
    }
    last = cluster.home.audit_log_file.read_text().splitlines()[-1]
    assert json.loads(last)["action"] == "workspace.start"


def test_the_service_s_identity_reads_a_catalog_and_queues_a_run(cluster: Cluster) -> None:
    seen = probe(cluster.service, cluster.home, cluster.work, SERVICE_STEPS)
    assert seen["catalog_read"] == "ok: households, incomes, payments, residents"
    assert seen["run_folder"] == "ok: True"
    (run,) = cluster.home.runs_dir("armoede").iterdir()
    assert os.lstat(run).st_uid == cluster.service.uid


def test_a_workspace_s_number_does_neither(cluster: Cluster) -> None:
    numbers = pod_ids(cluster.home)
    # the hub's config and a workspace's start begin by loading the settings (step 1)
    steps = ("settings", "manifest", "numbers", "catalog_seen", *SERVICE_STEPS)
    runs = cluster.home.runs_dir("armoede")
    before = sorted(runs.iterdir()) if runs.exists() else []
    own = probe_as_number(numbers["armoede"], cluster.home, steps)
    other = probe_as_number(numbers["mobiliteit"], cluster.home, steps)
    # its own extracts through its group, read-only: that is what its pod mounts
    assert own.pop("catalog_seen") == "ok: True"
    assert own.pop("catalog_read").startswith("ok: ")
    for seen in (own, other):
        assert not [outcome for outcome in seen.values() if outcome.startswith("ok")], seen
        for step in ("settings", "manifest", "numbers"):
            assert "PermissionError" in seen[step], seen[step]
    assert "PermissionError" in other["catalog_seen"]  # not even whether it has extracts
    assert (sorted(runs.iterdir()) if runs.exists() else []) == before
    for number in (numbers["armoede"], numbers["mobiliteit"]):
        planted = as_number(number, "mkdir", str(cluster.home.reports_dir / "planted"))
        assert planted.returncode != 0 and "Permission denied" in planted.stderr


def test_apply_s_next_run_rewrites_what_it_handed_over_and_needs_dac_override(
    cluster: Cluster,
) -> None:
    """The next CronJob run reads and rewrites the control identity's files (the audit log
    the hub appended to, the pod numbers): DAC_OVERRIDE. Without it apply cannot open what
    it handed over."""
    without = dataclasses.replace(
        cluster.apply, capabilities=[c for c in cluster.apply.capabilities if c != "DAC_OVERRIDE"]
    )
    refused = run_apply_pod(without, cluster.home.root, cluster.work, "armoede")
    assert refused.returncode != 0
    # what it handed over, the settings and the audit log's lock among them, it cannot open
    assert "PermissionError: [Errno 13] Permission denied: '/srv/dossierhub/" in refused.stderr
    again = run_apply_pod(cluster.apply, cluster.home.root, cluster.work, "armoede")
    assert again.returncode == 0, again.stderr[-3000:]
    control = cluster.hub.uid
    for path in (cluster.home.audit_head_file, cluster.home.directory_file):
        assert os.lstat(path).st_uid == control, path
    assert probe(cluster.hub, cluster.home, cluster.work, ("numbers",))["numbers"].startswith("ok")


# --- report runs as Jobs from the service's pod (reports/jobs.py prepare_job, hand_over) ---

RUNNER_WORK = (
    "list",
    "read_template",
    "read_parameters",
    "write_notebook",
    "write_result",
    "publish",
    "hide_a_folder",  # a template's own: allowed, but closed to the service
)
AGAINST_INPUTS = (
    "replace_template",
    "rewrite_parameters",
    "remove_parameters",
    "rename_template",
    "open_folder_to_all",
    "swap_published",
)


def job_identity(home: Home, dossier_id: str, scratch: Path) -> tuple[int, int, list[int]]:
    """(uid, gid, extra groups) of a run's Job as job_manifest renders it: no capability."""
    numbers = job_numbers(home, dossier_id)
    dossier = read_dossier(home, dossier_id)
    manifest = job_manifest(
        home, load_settings(home), dossier, "20260101T000000-abcdef", scratch, numbers, 60
    )
    spec = manifest["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    context = {**spec["securityContext"], **container["securityContext"]}
    return context["runAsUser"], context["runAsGroup"], context.get("supplementalGroups", [])


def as_job(identity: tuple[int, int, list[int]], scratch: Path) -> dict[str, str]:
    """job_probe.py as that identity. It reaches the folder by HOME's path, whose parents any
    uid may pass: more than a Job's pod, which mounts the folder alone (subPath), so what it
    is refused here it is refused there."""
    uid, gid, groups = identity
    python = str(environment() / "bin" / "python")
    result = subprocess.run(
        [python, "-I", str(JOB_PROBE), str(scratch)],
        user=uid,
        group=gid,
        extra_groups=groups,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


def test_the_service_hands_a_run_to_its_job_and_takes_it_all_back_without_root(
    cluster: Cluster,
) -> None:
    """As the chart's service (the control identity, no capability): a run's scratch folder
    with its inputs, which the Job's number writes in but cannot take the inputs from;
    another dossier's number and the workspace's reach nothing of it; the service collects
    the notebook and the tables and leaves nothing behind."""
    home, control = cluster.home, cluster.service.uid
    prepared = probe(cluster.service, home, cluster.work, ("job_prepare",))["job_prepare"]
    assert prepared.startswith("ok: "), prepared
    scratch_name, run_name = prepared.removeprefix("ok: ").split()
    scratch = home.root / scratch_name
    report = report_pod_ids(home)["armoede"]
    for path, mode in (
        (scratch.parent, 0o2711),
        (scratch, 0o1770),
        (scratch / "published", 0o1770),
    ):
        info = os.lstat(path)
        assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (control, report, mode)
    for name in (TEMPLATE, PARAMETERS):
        info = os.lstat(scratch / name)
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (control, 0o644), name
    inputs = {name: (scratch / name).read_bytes() for name in (TEMPLATE, PARAMETERS)}

    job = as_job(job_identity(home, "armoede", scratch), scratch)
    assert {name: job[name] for name in RUNNER_WORK} == dict.fromkeys(RUNNER_WORK, "ok")
    for name in AGAINST_INPUTS:
        assert job[name].startswith("PermissionError"), (name, job[name])
    assert {name: (scratch / name).read_bytes() for name in inputs} == inputs

    workspace = pod_ids(home)["armoede"]
    for stranger in (job_identity(home, "mobiliteit", scratch), (workspace, workspace, [])):
        seen = as_job(stranger, scratch)
        assert all(outcome.startswith("PermissionError") for outcome in seen.values()), seen

    collected = probe(
        cluster.service, home, cluster.work, (f"job_collect={scratch_name},{run_name}",)
    )
    # all but the closed folder is gone; what is left is set aside for apply
    left_over = f".left-{scratch.name}"
    assert collected["job_collect"] == (
        "ok: notebook True, published ['published/counts.meta.json', "
        f"'published/counts.parquet'], left ['{left_over}']"
    )
    assert not scratch.exists()
    assert [p.name for p in (scratch.parent / left_over).iterdir()] == ["hidden"]
    assert (home.root / run_name / "report.ipynb").read_text() == '{"cells": []}'
    # which apply (root) removes at its next run, the folder kept as it was
    own_report_scratch(home, "armoede", report)
    assert list(scratch.parent.iterdir()) == []
    info = os.lstat(scratch.parent)
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (control, report, 0o2711)


def test_the_service_refuses_a_scratch_folder_apply_did_not_prepare(cluster: Cluster) -> None:
    """Without the setgid bit apply gives scratch/<id>, the service's folder would not be the
    Job's group: the run is refused with the fix, and no folder is left half-made."""
    parent = cluster.home.scratch_parent("armoede")
    before = sorted(parent.iterdir())
    os.chmod(parent, 0o711)
    try:
        seen = probe(cluster.service, cluster.home, cluster.work, ("job_prepare",))["job_prepare"]
    finally:
        os.chmod(parent, 0o2711)
    assert seen.startswith("JobRefused: dossier armoede: "), seen
    assert "run `dossierhub apply` with reports.backend: kubernetes" in seen
    assert sorted(parent.iterdir()) == before


def test_apply_follows_no_link_the_control_identity_plants_in_scratch(cluster: Cluster) -> None:
    """The control identity writes in scratch/ and scratch/<id>. A link it plants as a
    left-over run, or as a dossier's scratch folder, must neither lead apply (root) to
    remove or open up what it points at, nor stop it."""
    home, control = cluster.home, cluster.service.uid
    report = report_pod_ids(home)
    target = home.raw_dir  # apply's alone: 0700, root's
    before = os.lstat(target)
    parent = home.scratch_parent("armoede")
    for planted in (".left-link", ".left-file"):
        command = ("ln", "-s", str(target)) if planted == ".left-link" else ("touch",)
        made = as_number(control, *command, str(parent / planted))
        assert made.returncode == 0, made.stderr
    own_report_scratch(home, "armoede", report["armoede"])  # what apply does per dossier
    assert sorted(p.name for p in parent.iterdir()) == [".left-file", ".left-link"]
    assert any(target.iterdir())  # nothing removed through the link

    other = home.scratch_parent("mobiliteit")
    moved = as_number(control, "mv", str(other), str(home.scratch_dir / "moved"))
    assert moved.returncode == 0, moved.stderr
    linked = as_number(control, "ln", "-s", str(target), str(other))
    assert linked.returncode == 0, linked.stderr
    try:
        with pytest.raises(UnsafeFile):
            own_report_scratch(home, "mobiliteit", report["mobiliteit"])
        after = os.lstat(target)
        assert (after.st_uid, after.st_gid, after.st_mode) == (
            before.st_uid,
            before.st_gid,
            before.st_mode,
        )
    finally:
        other.unlink()
        (home.scratch_dir / "moved").rename(other)
        for planted in (".left-link", ".left-file"):
            (parent / planted).unlink()
