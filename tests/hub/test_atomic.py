"""Files under HOME are replaced whole: a reader sees the old content or the new one, and a
failed write leaves the old file and no temporary file behind."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from dossierhub.state.atomic import write_atomic, write_json


def test_a_reader_never_sees_a_torn_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    write_json(path, {"n": 0, "pad": "x" * 200_000})
    seen: list[int] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.append(json.loads(path.read_text())["n"])  # raises on a torn file

    reader = threading.Thread(target=read)
    reader.start()
    for n in range(1, 60):
        write_json(path, {"n": n, "pad": "x" * 200_000})
    stop.set()
    reader.join()
    assert seen and seen == sorted(seen)
    assert os.listdir(tmp_path) == ["state.json"]


def test_modes_are_kept_as_asked(tmp_path: Path) -> None:
    path = tmp_path / "passwords.json"
    write_atomic(path, "{}", mode=0o600)
    assert path.stat().st_mode & 0o777 == 0o600
    write_atomic(path, "{}", mode=0o640)
    assert path.stat().st_mode & 0o777 == 0o640


def test_a_failed_write_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "head.json"
    write_json(path, {"seq": 1})
    with pytest.raises(TypeError):
        write_atomic(path, 42)  # type: ignore[arg-type]  # not text: refused mid-way
    assert json.loads(path.read_text()) == {"seq": 1}
    assert os.listdir(tmp_path) == ["head.json"]
    (tmp_path / "folder").mkdir()
    with pytest.raises(IsADirectoryError):
        write_atomic(tmp_path / "folder", "x")  # the rename fails: the temporary file goes
    assert sorted(os.listdir(tmp_path)) == ["folder", "head.json"]


@pytest.mark.skipif(os.geteuid() != 0, reason="only root's files take their folder's owner")
def test_root_s_file_takes_the_owner_of_a_folder_that_is_not_root_s(tmp_path: Path) -> None:
    """On Kubernetes the control identity owns HOME's control folders: a file apply replaces
    there is never root's, not for a moment. In root's folders (one machine) it stays root's."""
    theirs = tmp_path / "hub"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, 10000, 10000)
    write_json(theirs / "pod-ids.json", {"armoede": 200000}, mode=0o600)
    info = os.stat(theirs / "pod-ids.json")
    assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (10000, 10000, 0o600)
    write_json(tmp_path / "root.json", {})
    assert (os.stat(tmp_path / "root.json").st_uid, os.stat(tmp_path).st_uid) == (0, 0)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root's files take their folder's owner")
def test_an_audit_log_root_starts_in_the_control_identity_s_folder_is_its(tmp_path: Path) -> None:
    """The log is appended to in place, not replaced: root creating it there (a HOME
    without a genesis record) leaves it the folder's owner's too, as its head."""
    from dossierhub.state.audit import AuditLog
    from dossierhub.state.home import Home
    from dossierhub.state.init import init_home

    home = Home(tmp_path / "home")
    init_home(home)
    home.audit_log_file.unlink(missing_ok=True)
    home.audit_head_file.unlink(missing_ok=True)
    os.chown(home.audit_dir, 10000, 10000)
    AuditLog(home).append("apply", actor="admin")
    for path in (home.audit_log_file, home.audit_head_file):
        assert (os.stat(path).st_uid, os.stat(path).st_gid) == (10000, 10000), path
