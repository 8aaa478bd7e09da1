"""apply as deploy/chart's CronJob runs it, for real: `dossierhub apply` on a HOME with
`hub.spawner: kubernetes`, in bubblewrap with exactly the uid, gid, groups and capabilities
the rendered CronJob gives its container (parsed from `helm template`), HOME at the chart's
mount path, the master key as its Secret volume presents it (root's, the group the pod's
fsGroup if it has one, mode defaultMode, read-only), a private /tmp and a read-only root.

It must leave each dossier's files as its pod needs them (isolation/unixusers.py
secure_dossier): the pod's number reads its extracts and writes its folder, another number
does neither. The chart's former securityContext (uid 10000 with fsGroup 10000, no capability)
runs the same way and leaves the walls down.

How a container runtime applies a securityContext is what the sandbox reproduces: numeric ids
with no account behind them (a passwd of root and nobody, as in the slim image), the bounding
set cut to the added capabilities (Kubernetes gives them to uid 0 only: from any other uid they
never reach the effective set), no_new_privs for allowPrivilegeEscalation: false. Not
reproduced: the seccomp profile (it filters system calls, and grants no file right). The host's
/usr and this checkout's environment stand in for the runner image. Needs root and bubblewrap,
as the stand-in's tests do.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helm import REPO, render

from dossierhub.isolation.podids import pod_ids
from dossierhub.state.home import Home
from dossierhub.state.settings import load_settings

from e2e_hub import reachable_python
from helpers import read_yaml, write_yaml

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("bwrap") or not shutil.which("setpriv"),
    reason="runs apply as the pod's uid with its capabilities: needs root, bwrap and setpriv",
)

SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc")
# the runner image's accounts (python:3.11-slim): root and nobody, none for uid 10000
PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"
# the chart before it gave apply what it needs
FORMER_POD_CONTEXT = {
    "runAsNonRoot": True,
    "runAsUser": 10000,
    "runAsGroup": 10000,
    "fsGroup": 10000,
    "seccompProfile": {"type": "RuntimeDefault"},
}
FORMER_CONTAINER_CONTEXT = {
    "allowPrivilegeEscalation": False,
    "privileged": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


@dataclasses.dataclass(frozen=True)
class ApplyPod:
    """What of the CronJob's pod decides what apply may do to files."""

    command: list[str]
    uid: int
    gid: int
    groups: list[int]
    capabilities: list[str]
    no_new_privs: bool
    read_only_root: bool
    home_path: str
    key_path: str
    key_mode: int
    key_group: int
    # folders of HOME's claim mounted again read-only: (subPath, mountPath)
    read_only_home: tuple[tuple[str, str], ...] = ()


def apply_pod(cronjob: dict[str, Any]) -> ApplyPod:
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    context = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    capabilities = context.get("capabilities", {})
    assert capabilities.get("drop") == ["ALL"], "the sandbox models a container that drops ALL"
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m for m in container["volumeMounts"] if "subPath" not in m}
    mounts.update({m["name"]: m for m in container["volumeMounts"] if m["name"] != "home"})
    home = mounts["home"]
    again = [m for m in container["volumeMounts"] if m["name"] == "home" and "subPath" in m]
    assert all(m.get("readOnly") is True for m in again), "HOME again, but not read-only"
    assert "persistentVolumeClaim" in volumes["home"] and not home.get("readOnly")
    key = mounts["master-key"]
    assert key.get("readOnly") is True and "secret" in volumes["master-key"]
    assert "emptyDir" in volumes[mounts["tmp"]["name"]] and mounts["tmp"]["mountPath"] == "/tmp"
    fs_group = pod.get("securityContext", {}).get("fsGroup")
    extra = [*([fs_group] if fs_group is not None else []), *context.get("supplementalGroups", [])]
    gid = context["runAsGroup"]
    return ApplyPod(
        command=container["command"],
        uid=context["runAsUser"],
        gid=gid,
        groups=sorted({gid, *extra}),
        capabilities=[c.upper() for c in capabilities.get("add", [])],
        no_new_privs=context.get("allowPrivilegeEscalation") is False,
        read_only_root=context.get("readOnlyRootFilesystem") is True,
        home_path=home["mountPath"],
        key_path=key["mountPath"],
        # Kubernetes' own default for a Secret volume's files is 0644
        key_mode=volumes["master-key"]["secret"].get("defaultMode", 0o644),
        # a Secret volume's files are root's; fsGroup, where set, becomes their group
        key_group=fs_group if fs_group is not None else 0,
        read_only_home=tuple((m["subPath"], m["mountPath"]) for m in again),
    )


def chart_cronjob() -> dict[str, Any]:
    """The one CronJob, in apply's own namespace (test_chart_namespaces.py says why)."""
    (cronjob,) = [o for o in render() if o["kind"] == "CronJob"]
    assert cronjob["metadata"]["namespace"] == "dossiers-apply"
    return cronjob


def former_cronjob() -> dict[str, Any]:
    cronjob = copy.deepcopy(chart_cronjob())
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    pod["securityContext"] = FORMER_POD_CONTEXT
    pod["containers"][0]["securityContext"] = FORMER_CONTAINER_CONTEXT
    next(v for v in pod["volumes"] if v["name"] == "master-key")["secret"]["defaultMode"] = 0o440
    return cronjob


def passable_dirs(path: Path) -> list[str]:
    """bubblewrap makes missing leading folders root's 0700: a pod's uid must pass them."""
    args = []
    for parent in reversed(path.parents[:-1]):
        args += ["--perms", "0755", "--dir", str(parent)]
    return args


def sandbox(pod: ApplyPod, home: Path, key: Path, accounts: Path) -> list[str]:
    """bwrap, then setpriv to the pod's ids and capabilities: the bounding set cut to them, no
    inheritable ones (so none survives the change to a uid other than 0)."""
    args = ["bwrap", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--die-with-parent"]
    args += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp"]
    for folder in SYSTEM:
        if Path(folder).is_symlink():
            args += ["--symlink", os.readlink(folder), folder]
        elif Path(folder).is_dir():
            args += ["--ro-bind", folder, folder]
    args += ["--ro-bind", str(accounts / "passwd"), "/etc/passwd"]
    args += ["--ro-bind", str(accounts / "group"), "/etc/group"]
    # the image: an environment any uid may run, and this checkout (editable sources)
    for folder in sorted({REPO, environment()}, key=lambda path: len(path.parts)):
        args += [*passable_dirs(folder), "--ro-bind", str(folder), str(folder)]
    args += [*passable_dirs(Path(pod.home_path)), "--bind", str(home), pod.home_path]
    for sub_path, mount_path in pod.read_only_home:
        (home / sub_path).mkdir(exist_ok=True)  # the kubelet makes a missing subPath
        args += ["--ro-bind", str(home / sub_path), mount_path]
    args += ["--ro-bind", str(key), pod.key_path]
    if pod.read_only_root:
        args += ["--remount-ro", "/"]
    args += ["--cap-drop", "ALL"]
    for capability in ["SETUID", "SETGID", "SETPCAP", *pod.capabilities]:
        args += ["--cap-add", f"CAP_{capability}"]
    bounding = ",".join(["-all", *(f"+{c.lower()}" for c in pod.capabilities)])
    args += ["--", "setpriv", f"--reuid={pod.uid}", f"--regid={pod.gid}"]
    args += [f"--groups={','.join(map(str, pod.groups))}"]
    args += [f"--bounding-set={bounding}", "--inh-caps=-all"]
    if pod.no_new_privs:
        args.append("--no-new-privs")
    return [*args, "--"]


@functools.cache
def environment() -> Path:
    """The virtual environment that stands in for the image's /opt/dossierhub/.venv."""
    return Path(reachable_python()).parent.parent


def run_apply_pod(
    pod: ApplyPod, home: Path, work: Path, *ids: str
) -> subprocess.CompletedProcess[str]:
    """The CronJob's command (with dossier `ids`, if any) in its sandbox."""
    return run_in_pod(pod, home, work, [*pod.command, *ids])


def run_in_pod(
    pod: ApplyPod, home: Path, work: Path, command: list[str]
) -> subprocess.CompletedProcess[str]:
    """`command` in the pod's sandbox. The master key leaves HOME for a file shaped as the
    Secret's (it is never on the shared volume)."""
    key = work / "master.key"
    if not key.exists():
        key.write_bytes(Home(home).master_key_file.read_bytes())
        Home(home).master_key_file.unlink()  # bwrap makes the mount point, as the runtime does
    os.chown(key, 0, pod.key_group)
    os.chmod(key, pod.key_mode)
    accounts = work / "etc"
    accounts.mkdir(exist_ok=True)
    (accounts / "passwd").write_text(PASSWD)
    (accounts / "group").write_text(GROUP)
    # Kubernetes sets HOME from the image's passwd, "/" for a uid it lacks
    env = {
        "PATH": f"{environment() / 'bin'}:/usr/bin:/bin",
        "HOME": "/root" if pod.uid == 0 else "/",
    }
    return subprocess.run(
        [*sandbox(pod, home, key, accounts), *command],
        capture_output=True,
        text=True,
        env=env,
        umask=0o022,  # a container's default
        timeout=120,
        check=False,
    )


def pod_home(demo_data: Path, owner: tuple[int, int]) -> Path:
    """The demo HOME with hub.spawner kubernetes, as its operator made it for apply's uid,
    where any uid may pass (the pods' numbers must reach their files)."""
    parent = Path(tempfile.mkdtemp(prefix="dossierhub-applypod-"))
    os.chmod(parent, 0o711)
    root = parent / "home"
    shutil.copytree(demo_data, root, symlinks=True)
    settings = read_yaml(root / "settings.yaml") or {}
    settings["hub"] = {**settings.get("hub", {}), "spawner": "kubernetes"}
    settings["kubernetes"] = {"image": "registry.example.org/dossierhub-workspace:1.0"}
    settings["isolation"] = {**settings.get("isolation", {}), "prefix": "dhapod"}
    write_yaml(root / "settings.yaml", settings)
    for path in [root, *root.rglob("*")]:
        os.chown(path, *owner, follow_symlinks=False)
    os.chmod(root, 0o755)  # as `dossierhub init` makes it (the copy kept pytest's 0700)
    # the operator's once: apply's pod mounts raw/ read-only and cannot close it itself
    os.chmod(root / "raw", 0o700)
    return root


def as_number(number: int, *command: str) -> subprocess.CompletedProcess[str]:
    """A command run as a pod runs: uid and gid `number`, no other group, no capability."""
    return subprocess.run(
        list(command),
        user=number,
        group=number,
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@dataclasses.dataclass
class Applied:
    home: Home
    work: Path
    pod: ApplyPod
    result: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def applied(demo_data: Path) -> Iterator[Applied]:
    pod = apply_pod(chart_cronjob())
    root = pod_home(demo_data, (pod.uid, pod.gid))
    work = root.parent / "pod"
    work.mkdir()
    yield Applied(Home(root), work, pod, run_apply_pod(pod, root, work))
    shutil.rmtree(root.parent)


# what the process in the sandbox is, as the kernel says (CHOWN is bit 0, DAC_OVERRIDE bit 1,
# FOWNER bit 3, SETGID bit 6, SETUID bit 7)
PROBE = r"""grep -E '^(Uid|Gid|Groups|CapEff|CapBnd|NoNewPrivs):' /proc/self/status \
 | tr -s '\t ' ' '
touch /probe 2>/dev/null && echo root-writable || echo root-read-only
head -c 64 /srv/dossierhub/secrets/master.key >/dev/null && echo key-read"""


@pytest.mark.parametrize(
    ("cronjob", "seen"),
    [
        (
            chart_cronjob,
            "Uid: 0 0 0 0|Gid: 0 0 0 0|Groups: 0|CapEff: 00000000000000cb|"
            "CapBnd: 00000000000000cb|NoNewPrivs: 1|root-read-only|key-read",
        ),
        (
            former_cronjob,
            "Uid: 10000 10000 10000 10000|Gid: 10000 10000 10000 10000|Groups: 10000|"
            "CapEff: 0000000000000000|CapBnd: 0000000000000000|NoNewPrivs: 1|"
            "root-read-only|key-read",
        ),
    ],
    ids=["chart", "former"],
)
def test_the_sandbox_is_the_pod_the_security_context_describes(
    cronjob: Any, seen: str, tmp_path: Path
) -> None:
    """The harness itself: the ids, groups, capabilities (effective and bounding),
    no_new_privs and read-only root the kernel reports inside are the rendered context's,
    and the key, shaped as its Secret, is readable there."""
    home = tmp_path / "home"
    Home(home).master_key_file.parent.mkdir(parents=True)
    Home(home).master_key_file.write_text("0" * 64 + "\n")
    os.chmod(tmp_path, 0o755)
    os.chmod(home, 0o755)
    os.chmod(home / "secrets", 0o755)
    result = run_in_pod(apply_pod(cronjob()), home, tmp_path, ["sh", "-c", PROBE])
    assert [line.strip() for line in result.stdout.splitlines()] == seen.split("|"), result.stderr


def test_the_chart_runs_apply_as_root_with_chown_dac_override_and_fowner_only(
    applied: Applied,
) -> None:
    pod = applied.pod
    assert (pod.uid, pod.gid, pod.groups) == (0, 0, [0])
    assert sorted(pod.capabilities) == ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"]
    assert pod.no_new_privs and pod.read_only_root
    # the key: root's, read by its owner alone; no other uid on the node could
    assert (pod.key_mode, pod.key_group) == (0o400, 0)


def test_apply_in_the_chart_s_pod_gives_each_dossier_s_files_to_its_number(
    applied: Applied,
) -> None:
    assert applied.result.returncode == 0, applied.result.stderr[-3000:]
    home = applied.home
    numbers = pod_ids(home)
    assert {"armoede", "mobiliteit"} <= set(numbers)
    control = load_settings(home).kubernetes.control_uid  # the owner (test_control_identity.py)
    for dossier in ("armoede", "mobiliteit"):
        number = numbers[dossier]
        folder = home.extract_dir(dossier)
        for path in [folder, *folder.rglob("*")]:
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                continue  # the swap's names: a link's own owner and mode grant nothing
            assert (info.st_uid, info.st_gid) == (control, number), path
            assert stat.S_IMODE(info.st_mode) == (0o750 if stat.S_ISDIR(info.st_mode) else 0o640)
        workspace = os.lstat(home.workspace_dir(dossier))
        assert (workspace.st_uid, workspace.st_gid, stat.S_IMODE(workspace.st_mode)) == (
            number,
            number,
            0o700,
        )
    # the master key stayed off the shared volume: only the empty mount point is there
    assert home.master_key_file.stat().st_size == 0


def test_apply_reads_the_raw_sources_and_cannot_change_them(applied: Applied) -> None:
    """raw/ is mounted read-only in apply's pod: apply builds from it, and even root with
    apply's capabilities can neither write, remove nor chmod there."""
    assert applied.result.returncode == 0, applied.result.stderr[-3000:]
    raw = f"{applied.pod.home_path}/raw"
    sources = sorted(p.name for p in applied.home.raw_dir.iterdir())
    assert sources, "the demo keeps its sources in raw/"
    attempts = (
        f"touch {raw}/planted; rm -f {raw}/{sources[0]}; chmod 0777 {raw}; ls -A {raw} | wc -l"
    )
    result = run_in_pod(applied.pod, applied.home.root, applied.work, ["sh", "-c", attempts])
    assert result.stderr.count("Read-only file system") == 3, result.stderr
    assert result.stdout.strip() == str(len(sources))
    assert sorted(p.name for p in applied.home.raw_dir.iterdir()) == sources


def test_a_raw_folder_others_may_read_is_refused_before_anything_is_built(
    demo_data: Path,
) -> None:
    """apply's pod cannot close raw/ (read-only there), and the hub's and the service's pods
    mount all of HOME: apply refuses, names the folder and the fix, and builds nothing."""
    pod = apply_pod(chart_cronjob())
    root = pod_home(demo_data, (pod.uid, pod.gid))
    try:
        os.chmod(root / "raw", 0o755)
        work = root.parent / "pod"
        work.mkdir()
        result = run_apply_pod(pod, root, work)
        assert result.returncode == 1
        assert "raw/: is mounted read-only here and is uid 0's with mode 0755" in result.stderr
        assert "chmod 0700 raw" in result.stderr
        assert not Home(root).extract_dir("armoede").exists()
        assert stat.S_IMODE((root / "raw").stat().st_mode) == 0o755
    finally:
        shutil.rmtree(root.parent)


def test_the_pod_s_number_reads_its_extracts_and_writes_its_folder_another_does_not(
    applied: Applied,
) -> None:
    assert applied.result.returncode == 0, applied.result.stderr[-3000:]
    home = applied.home
    number, other = pod_ids(home)["armoede"], pod_ids(home)["mobiliteit"]
    extract = home.extract_dir("armoede") / "residents.parquet"
    notes = home.workspace_dir("armoede") / "notes.txt"
    assert as_number(number, "head", "-c", "4", str(extract)).stdout == "PAR1"
    assert as_number(number, "sh", "-c", f"echo mine > {notes}").returncode == 0
    assert as_number(number, "sh", "-c", f": >> {extract}").returncode != 0  # read-only
    # another dossier's pod, and a uid not ours (z2jh's default for its hub); the service's
    # and the hub's uid, the control identity, owns the extracts (test_control_identity.py)
    for stranger in (other, 1000):
        denied = as_number(stranger, "head", "-c", "4", str(extract))
        assert denied.returncode != 0 and "Permission denied" in denied.stderr
        assert as_number(stranger, "ls", str(notes.parent)).returncode != 0
        assert as_number(stranger, "sh", "-c", f"echo theirs > {notes}").returncode != 0
    assert notes.read_text() == "mine\n"


def test_the_next_run_finds_the_folder_given_away_and_still_secures_it(
    applied: Applied,
) -> None:
    """The workspace folder is the number's now (the pod wrote in it, may have loosened its
    mode): setting the mode of a folder root does not own is what needs FOWNER."""
    assert applied.result.returncode == 0, applied.result.stderr[-3000:]
    home = applied.home
    number = pod_ids(home)["armoede"]
    workspace = home.workspace_dir("armoede")
    assert as_number(number, "chmod", "0777", str(workspace)).returncode == 0
    again = run_apply_pod(applied.pod, home.root, applied.work, "armoede")
    assert again.returncode == 0, again.stderr[-3000:]
    info = os.lstat(workspace)
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (number, number, 0o700)
    assert os.lstat(home.extract_dir("armoede")).st_gid == number


def test_the_former_security_context_leaves_the_walls_down(demo_data: Path) -> None:
    """uid 10000 with no capability: apply cannot hand out numbers or give files away, and
    what it built is readable by any uid, so by every other dossier's pod."""
    pod = apply_pod(former_cronjob())
    assert (pod.uid, pod.capabilities, pod.key_group, pod.key_mode) == (10000, [], 10000, 0o440)
    root = pod_home(demo_data, (pod.uid, pod.gid))
    try:
        work = root.parent / "pod"
        work.mkdir()
        result = run_apply_pod(pod, root, work, "armoede")
        home = Home(root)
        # whether it then ends in an error or not (it does: the audit finds no account for
        # uid 10000), no dossier got a number, and the extracts are open to any number
        assert pod_ids(home) == {}, result.stderr[-3000:]
        extract = home.extract_dir("armoede") / "residents.parquet"
        assert as_number(200_123, "head", "-c", "4", str(extract)).stdout == "PAR1"
        assert not home.workspace_dir("armoede").exists()
    finally:
        shutil.rmtree(root.parent)


def test_chown_and_fowner_are_needed(demo_data: Path) -> None:
    """The chart's pod with one capability fewer: without CHOWN no extract gets its group;
    without FOWNER the extracts given to the control identity (and the folder given to the
    number: test_the_next_run_finds...) keep no mode apply can set. (Without
    DAC_OVERRIDE the next run cannot read the HOME it handed to the control identity:
    test_control_identity.py.)"""
    chart = apply_pod(chart_cronjob())
    root = pod_home(demo_data, (chart.uid, chart.gid))
    try:
        work = root.parent / "pod"
        work.mkdir()
        for dropped, refused in (("CHOWN", "extracts/armoede"), ("FOWNER", "extracts/armoede")):
            fewer = [c for c in chart.capabilities if c != dropped]
            pod = dataclasses.replace(chart, capabilities=fewer)
            result = run_apply_pod(pod, root, work, "armoede")
            assert result.returncode != 0, dropped
            assert f"Operation not permitted: '/srv/dossierhub/{refused}'" in result.stderr
    finally:
        shutil.rmtree(root.parent)


def test_an_expired_dossier_s_outputs_are_cleared_in_the_pod_and_apply_goes_on(
    demo_data: Path,
) -> None:
    """An expired dossier keeps its notebooks' code, not their outputs (they hold its data):
    apply clears them as the dossier's number, in the folder only that number may enter,
    which on a pod needs SETUID and SETGID. Without them that chore failed and stopped apply
    for every dossier after it (the second red team's finding)."""
    chart = apply_pod(chart_cronjob())
    root = pod_home(demo_data, (chart.uid, chart.gid))
    try:
        home, work = Home(root), root.parent / "pod"
        work.mkdir()
        first = run_apply_pod(chart, root, work)
        assert first.returncode == 0, first.stderr[-3000:]
        number = pod_ids(home)["armoede"]
        notebook = home.workspace_dir("armoede") / "analysis.ipynb"
        cell = {
            "cell_type": "code",
            "id": "rows",
            "metadata": {},
            "source": "db.sql('SELECT * FROM residents LIMIT 3')",
            "execution_count": 1,
            "outputs": [{"output_type": "stream", "name": "stdout", "text": "SECRET-ROW"}],
        }
        notebook.write_text(
            json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [cell]})
        )
        os.chown(notebook, number, number)  # as the pod wrote it
        os.chmod(notebook, 0o600)
        manifest = read_yaml(home.manifest_file("armoede"))
        manifest["expires"] = "2025-01-01"
        write_yaml(home.manifest_file("armoede"), manifest)
        os.chown(home.manifest_file("armoede"), chart.uid, chart.gid)

        without = dataclasses.replace(
            chart, capabilities=[c for c in chart.capabilities if c not in ("SETUID", "SETGID")]
        )
        refused = run_apply_pod(without, root, work)
        assert refused.returncode != 0 and "Operation not permitted" in refused.stderr
        assert "SECRET-ROW" in notebook.read_text()

        done = run_apply_pod(chart, root, work)
        assert done.returncode == 0, done.stderr[-3000:]
        kept = json.loads(notebook.read_text())
        assert "SECRET-ROW" not in notebook.read_text()
        assert "".join(kept["cells"][0]["source"]) == cell["source"]  # the code stays
        assert kept["cells"][0]["outputs"] == []
        assert os.lstat(notebook).st_uid == number  # written by the number, not by root
        # the dossiers after it were applied too: mobiliteit's extracts still have their group
        assert os.lstat(home.extract_dir("mobiliteit")).st_gid == pod_ids(home)["mobiliteit"]
    finally:
        shutil.rmtree(root.parent)
