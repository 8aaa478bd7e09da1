"""With hub.spawner kubernetes, apply gives a dossier's files its pod's number
(isolation/unixusers.py dossier_owner): the pod, running as that number and nothing else,
reads its extracts, cannot change them, cannot read another dossier's, and owns its
workspace folder. Run as root (apply chowns); the HOME lies where any uid may traverse.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dossierhub.isolation.podids import pod_ids, recorder_pod_ids
from dossierhub.isolation.unixusers import prepare_dossier
from dossierhub.state.audit import AuditLog
from dossierhub.state.executions import ACTION, Ingester
from dossierhub.state.home import Home

from e2e_hub import release_identities
from helpers import read_yaml, run_cli, write_yaml
from podview import as_number, pod_view

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="apply secures files as root only")

PYTHON = "/usr/bin/python3.11"  # executable by any uid, unlike a pyenv under /root
CONTROL = 10000  # kubernetes.control_uid's default


@pytest.fixture(scope="module")
def pod_home(demo_data: Path) -> Iterator[Home]:
    """The demo HOME with hub.spawner kubernetes, applied (as root)."""
    parent = Path(tempfile.mkdtemp(prefix="dossierhub-podfiles-"))
    os.chmod(parent, 0o711)
    root = parent / "home"
    shutil.copytree(demo_data, root, symlinks=True)
    home = Home(root)
    settings = read_yaml(home.settings_file) or {}
    settings["hub"] = {**settings.get("hub", {}), "spawner": "kubernetes"}
    settings["kubernetes"] = {"image": "registry.example.org/dossierhub-workspace:1.0"}
    write_yaml(home.settings_file, settings)
    result = run_cli(root, "apply")
    assert result.exit_code == 0, result.stderr
    yield home
    shutil.rmtree(parent)


def as_pod(number: int, code: str) -> subprocess.CompletedProcess[str]:
    """Python `code` run as the pod runs: uid and gid `number`, no other group."""
    return subprocess.run(
        [PYTHON, "-c", code],
        user=number,
        group=number,
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_apply_hands_out_the_numbers_and_gives_the_extracts_their_group(pod_home: Home) -> None:
    numbers = pod_ids(pod_home)
    assert {"armoede", "mobiliteit"} <= set(numbers)  # allocated at apply, not at a start
    for dossier, number in numbers.items():
        folder = pod_home.extract_dir(dossier)
        if not folder.exists():
            continue
        for path in [folder, *folder.rglob("*")]:
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                continue  # the swap's names: a link's own owner and mode grant nothing
            # owned by the control identity, the hub's and the service's pods' uid
            assert (info.st_uid, info.st_gid) == (CONTROL, number), path
            want = 0o750 if stat.S_ISDIR(info.st_mode) else 0o640
            assert stat.S_IMODE(info.st_mode) == want, path  # the group reads, nobody writes
        workspace = os.lstat(pod_home.workspace_dir(dossier))
        assert (workspace.st_uid, workspace.st_gid) == (number, number)
        assert stat.S_IMODE(workspace.st_mode) == 0o700


def test_the_pod_s_number_reads_its_extracts_only_and_writes_its_folder(pod_home: Home) -> None:
    number, other = pod_ids(pod_home)["armoede"], pod_ids(pod_home)["mobiliteit"]
    own = pod_home.extract_dir("armoede")
    files = [p for p in own.rglob("*") if p.is_file() and not p.is_symlink()]
    assert files
    theirs = [p for p in pod_home.extract_dir("mobiliteit").rglob("*") if p.is_file()]
    code = f"""
import os, pathlib
for f in {[str(f) for f in files]!r}:
    pathlib.Path(f).read_bytes()
print("read")
for attempt in (
    lambda: open({str(files[0])!r}, "ab"),
    lambda: pathlib.Path({str(own / "planted")!r}).write_text("x"),
    lambda: pathlib.Path({str(theirs[0])!r}).read_bytes(),
    lambda: os.listdir({str(pod_home.extract_dir("mobiliteit"))!r}),
    lambda: os.listdir({str(pod_home.workspace_dir("mobiliteit"))!r}),
):
    try:
        attempt()
        print("allowed")
    except PermissionError:
        print("refused")
pathlib.Path({str(pod_home.workspace_dir("armoede") / "notes.txt")!r}).write_text("mine")
print("wrote")
"""
    result = as_pod(number, code)
    assert result.stdout.split() == ["read", *["refused"] * 5, "wrote"], result.stderr
    # and the other dossier's number is refused this dossier's extracts in turn
    stranger = as_pod(other, f"open({str(files[0])!r}, 'rb')")
    assert "PermissionError" in stranger.stderr


def test_a_link_planted_as_the_workspace_folder_is_not_followed(
    demo_data: Path, pod_home: Home
) -> None:
    """A workspace folder replaced by a link (say from a restored backup) is refused; the
    link's target keeps its owner."""
    number = pod_ids(pod_home)["armoede"]
    target = Path(tempfile.mkdtemp(prefix="dossierhub-podfiles-target-"))
    try:
        workspace = pod_home.workspace_dir("armoede")
        moved = workspace.with_name("armoede.moved")
        workspace.rename(moved)
        workspace.symlink_to(target)
        try:
            with pytest.raises(Exception, match="is not a folder"):
                run_cli(pod_home.root, "apply", "armoede")
            assert os.lstat(target).st_uid == 0
            assert os.lstat(target).st_uid != number
        finally:
            workspace.unlink()
            moved.rename(workspace)
    finally:
        shutil.rmtree(target)


def test_links_the_control_identity_plants_give_it_nothing_more(pod_home: Home) -> None:
    """The control identity writes hub/, audit/ and the runs; what it plants there to have
    apply (root, CHOWN) hand it a file of root's is skipped: a symbolic link (made by the
    control uid itself) and a hard link (made here as root: a share without the kernel's
    protected_hardlinks would let it) to a raw source."""
    raw = next(p for p in pod_home.raw_dir.rglob("*") if p.is_file())
    planted_link = pod_home.hub_dir / "raw-link"
    planted_hard = pod_home.audit_dir / "raw-hard"
    made = subprocess.run(
        ["ln", "-s", str(raw), str(planted_link)],
        user=CONTROL,
        group=CONTROL,
        extra_groups=[],
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    os.link(raw, planted_hard)
    try:
        result = run_cli(pod_home.root, "apply", "armoede")
        assert result.exit_code == 0, result.stderr
        info = os.lstat(raw)
        assert (info.st_uid, info.st_gid) == (0, 0)
        assert os.lstat(pod_home.pod_ids_file).st_uid == CONTROL  # the rest was handed over
    finally:
        planted_link.unlink()
        planted_hard.unlink()


def test_report_kernels_read_the_pod_s_extracts_through_its_number(pod_home: Home) -> None:
    """serve's start and a report run prepare the dossier's Unix identities as well: the
    extracts keep the pod's group, and the report identity runs with it as an extra group."""
    settings = read_yaml(pod_home.settings_file)
    settings["isolation"] = {**settings.get("isolation", {}), "prefix": "dk4pf"}
    write_yaml(pod_home.settings_file, settings)
    number = pod_ids(pod_home)["armoede"]
    try:
        ids = prepare_dossier(pod_home, "armoede")
        assert number in ids.report.groups
        assert os.lstat(pod_home.extract_dir("armoede")).st_gid == number
        workspace = os.lstat(pod_home.workspace_dir("armoede"))
        assert (workspace.st_uid, workspace.st_gid) == (number, number)
        files = [p for p in pod_home.extract_dir("armoede").rglob("*") if p.is_file()]
        report = ids.report
        read = subprocess.run(
            [PYTHON, "-c", f"open({str(files[0])!r}, 'rb').read(); print('read')"],
            user=report.uid,
            group=report.gid,
            extra_groups=list(report.groups),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert read.stdout.strip() == "read", read.stderr
    finally:
        release_identities(pod_home)


def test_a_folder_swapped_for_a_link_while_apply_secures_the_extracts_leads_nowhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On pods the control identity owns extracts/<id>, so it can rename a folder there and
    put a link to HOME in its place while apply, as root with CHOWN and FOWNER, walks the
    extracts (the second red team's attack; here it wins the race at once: the swap happens
    at apply's first chown). HOME's raw/ and its files must stay root's, untouched."""
    from dossierhub.isolation import unixusers

    control, number = 10_000, 200_321
    home = tmp_path / "home"
    raw = home / "raw"
    raw.mkdir(parents=True, mode=0o700)
    (raw / "persons.csv").write_text("bsn,name\n123,A\n")
    os.chmod(raw / "persons.csv", 0o600)
    extracts = home / "extracts" / "armoede"
    (extracts / "a" / "raw").mkdir(parents=True)  # planted by the control identity
    (extracts / "b" / "raw").mkdir(parents=True)
    (extracts / "b" / "raw" / "persons.csv").write_text("decoy")
    (extracts / "catalog.duckdb").write_text("extract")
    for path in [extracts, *extracts.rglob("*")]:
        os.chown(path, control, control)

    swapped: list[str] = []

    def swap() -> None:
        if not swapped:
            for name in ("a", "b"):
                (extracts / name).rename(extracts / f"{name}-away")
                (extracts / name).symlink_to(home)
            swapped.append("done")

    real_chown, real_fchown = os.chown, os.fchown

    def chown(*args: object, **kwargs: object) -> None:
        swap()
        real_chown(*args, **kwargs)  # type: ignore[arg-type]

    def fchown(*args: object) -> None:
        swap()
        real_fchown(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "chown", chown)
    monkeypatch.setattr(os, "fchown", fchown)
    unixusers.secure_extracts(extracts, number, control)
    monkeypatch.undo()

    assert swapped
    for path, mode in ((raw, 0o700), (raw / "persons.csv", 0o600)):
        info = os.lstat(path)
        assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (0, 0, mode), path
    # what really is the dossier's was secured: its extract, and the folders moved away
    info = os.lstat(extracts / "catalog.duckdb")
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (control, number, 0o640)
    assert os.lstat(extracts / "a-away" / "raw").st_gid == number


# ------------------------------------------------- the recorder's spool (issue 16, pods)


def spool_event(person: str, msg_id: str) -> dict[str, object]:
    return {
        "event": "execute",
        "at": "2026-12-02T05:00:00.000000+00:00",
        "person": person,
        "kernel": "k1",
        "channel": "shell",
        "kind": "execute",
        "msg_id": msg_id,
        "cell_id": None,
        "path": None,
        "code_sha256": "ab" * 32,
        "first_line": "x = 1",
        "outcome": None,
    }


def test_apply_makes_the_spool_the_recorder_s_and_the_service_takes_its_batches(
    pod_home: Home,
) -> None:
    """The recorder (its own number, no group of the service's) writes a batch with the real
    writer, as pod mode does; the service, as the control identity and not root, reads it
    through the folder's group and removes it. audit/ itself stays the service's."""
    recorder = recorder_pod_ids(pod_home)["armoede"]
    assert recorder not in pod_ids(pod_home).values()
    folder = pod_home.execution_spool_dir("armoede")
    info = os.lstat(folder)
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (recorder, CONTROL, 0o2770)
    for parent in (pod_home.audit_dir, pod_home.execution_spool_root):
        info = os.lstat(parent)
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (CONTROL, 0o700)
    event = spool_event("a.jansen", "m1")
    wrote = as_number(
        recorder,
        "from pathlib import Path\n"
        "from dossierhub.state.executions import write_batch\n"
        "from dossierhub.state.home import Home\n"
        f"write_batch(Home(Path({str(pod_home.root)!r})), 'armoede', 'r1-00000001',"
        f" [{event!r}], mode=0o640)\n",
        pod_view(pod_home, "armoede", pod_home.root.parent / "staging"),
    )
    assert wrote.returncode == 0, wrote.stderr
    batch = folder / "r1-00000001.json"
    info = os.lstat(batch)
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (recorder, CONTROL, 0o640)
    took = as_number(
        CONTROL,
        "from pathlib import Path\n"
        "from dossierhub.state.executions import _read_batch, spooled\n"
        "from dossierhub.state.home import Home\n"
        f"(path,) = spooled(Home(Path({str(pod_home.root)!r})))\n"
        "print(_read_batch(path).events[0].person)\n"
        "path.unlink()\n",
    )
    assert took.stdout.split() == ["a.jansen"], took.stderr
    assert not batch.exists()


def test_the_service_takes_no_link_no_stranger_s_batch_and_none_others_may_read(
    pod_home: Home,
) -> None:
    """Beside the recorder's own batch in its spool: a link to a batch elsewhere on HOME (the
    workspace folder, which its kernels write), a batch owned by the workspace's number, one
    anyone may read. Only the recorder's is taken into the audit log; the others are set
    aside as .bad, never followed or read."""
    recorder, workspace = recorder_pod_ids(pod_home)["armoede"], pod_ids(pod_home)["armoede"]
    folder = pod_home.execution_spool_dir("armoede")

    def batch(name: str, person: str, owner: int, mode: int) -> Path:
        path = pod_home.workspace_dir("armoede") / f"{name}.json" if owner == workspace else None
        path = path or folder / f"{name}.json"
        document = {"format": 1, "dossier": "armoede", "batch": name, "events": []}
        document["events"] = [spool_event(person, name)]
        path.write_text(json.dumps(document))
        os.chown(path, owner, CONTROL if path.parent == folder else workspace)
        os.chmod(path, mode)
        return path

    batch("r1-00000002", "a.jansen", recorder, 0o640)
    planted = batch("r1-00000003", "b.devries", workspace, 0o600)  # a kernel's, linked in
    (folder / planted.name).symlink_to(planted)
    stranger = batch("r1-00000004", "b.devries", recorder, 0o640)
    os.chown(stranger, workspace, CONTROL)
    batch("r1-00000005", "b.devries", recorder, 0o644)  # readable by every uid
    log = AuditLog(pod_home)
    before = log.read()[-1]["seq"]
    Ingester(log).ingest(pod_home)
    taken = [r for r in AuditLog(pod_home).read() if r["seq"] > before]
    assert [(r["action"], r["details"]["batch"]) for r in taken] == [(ACTION, "r1-00000002")]
    assert sorted(p.name for p in folder.iterdir()) == [
        f"r1-0000000{n}.json.bad" for n in (3, 4, 5)
    ]
    assert planted.exists()  # the link was set aside, not what it led to
    for left in folder.iterdir():
        left.unlink()
    planted.unlink()
