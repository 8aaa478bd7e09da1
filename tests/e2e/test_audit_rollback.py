"""A real report run, released; then an older copy of audit/ put back: `audit verify` names the
release the copy does not hold (docs/audit.md). The attack is made on a copy of the hub's
HOME (what verify reads: the key, the log, the releases) so the running hub keeps its own."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from filelock import FileLock

from e2e_hub import DOSSIERHUB, Hub


def dossierhub(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DOSSIERHUB, "--home", str(home), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def copy_of_audit(home: Path, target: Path) -> None:
    """audit/ as it stands between two appends (the hub may be writing)."""
    with FileLock(str(home / "audit" / ".lock")):
        shutil.copytree(home / "audit", target, ignore=shutil.ignore_patterns(".lock"))


def home_with_audit(hub: Hub, audit: Path, target: Path) -> Path:
    """What verify reads of the hub's HOME, with `audit` as its audit/."""
    root = hub.home.root
    target.mkdir()
    shutil.copytree(root / "secrets", target / "secrets")
    shutil.copytree(root / "reports", target / "reports", symlinks=True)
    shutil.copy(root / "settings.yaml", target / "settings.yaml")
    shutil.copytree(audit, target / "audit")
    return target


def test_a_copy_of_audit_from_before_a_real_release_fails_verify(hub: Hub, tmp_path: Path) -> None:
    root = hub.home.root
    copy_of_audit(root, tmp_path / "before")
    ran = dossierhub(
        root,
        "report",
        "run",
        "armoede",
        "data_quality",
        "--user",
        "a.jansen",
        "-p",
        "view",
        "incomes",
    )
    assert ran.returncode == 0, ran.stderr
    run_id = ran.stdout.split()[0]
    released = dossierhub(
        root,
        *("report", "release", "armoede", run_id, "--user", "e.mulder"),
        *("--justification", "looked at by hand for the audit test"),
    )
    assert released.returncode == 0, released.stderr
    head = json.loads((root / "reports" / "armoede" / run_id / "release.json").read_text())[
        "audit_head"
    ]
    copy_of_audit(root, tmp_path / "after")

    intact = home_with_audit(hub, tmp_path / "after", tmp_path / "intact")
    result = dossierhub(intact, "audit", "verify")
    assert result.returncode == 0, result.stderr
    assert "releases: " in result.stdout and "carry a head, each in the log" in result.stdout

    attacked = home_with_audit(hub, tmp_path / "before", tmp_path / "attacked")
    count = len((attacked / "audit" / "audit.jsonl").read_text().splitlines())
    result = dossierhub(attacked, "audit", "verify")
    assert result.returncode == 1
    assert f"audit log broken at record {count + 1}: run armoede/{run_id} was released " in (
        result.stderr
    ), result.stderr
    assert f"under record {head['seq']} (reports/armoede/{run_id}/release.json)" in result.stderr
