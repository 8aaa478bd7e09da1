"""Unix identities are per installation: a name another live HOME owns, or an account that
dossierhub did not make, is refused, never shared or taken over (run as root)."""

from __future__ import annotations

import os
import pwd
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from dossierhub.isolation.unixusers import IdentityClash, ensure_identities
from dossierhub.state.home import Home

from helpers import run_cli

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="Unix identities need root")


def _home(root: Path, prefix: str) -> Home:
    assert run_cli(root, "init").exit_code == 0
    (root / "settings.yaml").write_text(yaml.safe_dump({"isolation": {"prefix": prefix}}))
    return Home(root)


def _remove(*names: str) -> None:
    for name in names:
        subprocess.run(["pkill", "-KILL", "-u", name], check=False)
        subprocess.run(["userdel", name], capture_output=True, check=False)
    for name in names:
        subprocess.run(["groupdel", name], capture_output=True, check=False)


def test_a_name_another_live_home_owns_is_refused(tmp_path: Path) -> None:
    first, second = _home(tmp_path / "a", "dhz"), _home(tmp_path / "b", "dhz")
    try:
        ids = ensure_identities(first, "gedeeld")
        with pytest.raises(IdentityClash, match=r"dhz-gedeeld belongs to another installation"):
            ensure_identities(second, "gedeeld")
        assert pwd.getpwnam("dhz-gedeeld").pw_dir == str(first.workspaces_dir / "gedeeld")
        # with a prefix of its own, the second HOME gets users of its own
        (second.root / "settings.yaml").write_text(yaml.safe_dump({"isolation": {"prefix": "dhy"}}))
        own = ensure_identities(second, "gedeeld")
        assert {own.workspace.uid, own.report.uid}.isdisjoint({ids.workspace.uid, ids.report.uid})
        assert own.workspace.gid not in ids.report.groups
    finally:
        _remove("dhzr-gedeeld", "dhz-gedeeld", "dhyr-gedeeld", "dhy-gedeeld")


def test_an_account_dossierhub_did_not_make_is_never_taken_over(tmp_path: Path) -> None:
    home = _home(tmp_path / "home", "dhz")
    subprocess.run(
        [
            "useradd",
            "--system",
            "--home-dir",
            "/home/dhz-backup",
            "--shell",
            "/bin/sh",
            "--comment",
            "nightly backups",
            "dhz-backup",
        ],
        check=True,
    )
    sleeper = subprocess.Popen(["runuser", "-u", "dhz-backup", "--", "sleep", "60"])
    try:
        time.sleep(0.5)
        with pytest.raises(IdentityClash, match="dhz-backup belongs to another account"):
            ensure_identities(home, "backup")
        assert sleeper.poll() is None  # its processes were not killed
        entry = pwd.getpwnam("dhz-backup")
        assert (entry.pw_dir, entry.pw_gecos) == ("/home/dhz-backup", "nightly backups")
    finally:
        sleeper.kill()
        sleeper.wait()
        _remove("dhzr-backup", "dhz-backup")


def test_the_account_of_a_removed_installation_is_taken_over_and_its_processes_end(
    tmp_path: Path,
) -> None:
    gone, home = _home(tmp_path / "gone", "dhz"), _home(tmp_path / "home", "dhz")
    try:
        old = ensure_identities(gone, "oud")
        straggler = subprocess.Popen(["runuser", "-u", "dhz-oud", "--", "sleep", "60"])
        time.sleep(0.5)
        (gone.master_key_file).unlink()  # that installation is gone
        ids = ensure_identities(home, "oud")
        assert straggler.wait(10) != 0  # it could have read this installation's data
        assert pwd.getpwnam("dhz-oud").pw_dir == str(home.workspaces_dir / "oud")
        assert ids.workspace.uid == old.workspace.uid
        assert ids.report.groups == (ids.report.gid, ids.workspace.gid)
    finally:
        _remove("dhzr-oud", "dhz-oud")
