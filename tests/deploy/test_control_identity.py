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

from dossierhub.isolation.podids import pod_ids
from dossierhub.state.home import Home
from dossierhub.state.settings import AuditSettings, load_settings
from dossierhub.workspaces.k8svalues import z2jh_values

from helpers import read_yaml, write_yaml

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("bwrap") or not shutil.which("setpriv"),
    reason="runs apply, the hub and the service as their pods' uids: needs root, bwrap, setpriv",
)

PROBE = REPO / "tests" / "deploy" / "control_probe.py"
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
    # what it handed over, the settings first (apply's lock is taken by what they say), it
    # cannot open
    assert "settings.yaml: cannot be read (PermissionError)" in refused.stderr
    again = run_apply_pod(cluster.apply, cluster.home.root, cluster.work, "armoede")
    assert again.returncode == 0, again.stderr[-3000:]
    control = cluster.hub.uid
    for path in (cluster.home.audit_head_file, cluster.home.directory_file):
        assert os.lstat(path).st_uid == control, path
    assert probe(cluster.hub, cluster.home, cluster.work, ("numbers",))["numbers"].startswith("ok")
