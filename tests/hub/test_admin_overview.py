"""The admin page's overview on a real applied HOME: per dossier the workspace state, counts of
runs and pending releases, and each problem with its fix; counts and states only, never a run
of a dossier the admin is not in; a tampered audit log shows as a broken chain to fix."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
import yaml

from dossierhub import portal
from dossierhub.state.home import Home
from dossierhub.state.problems import ReportRefused

from helpers import run_cli

ADMIN = portal.Person("z.beheer", admin=True)  # in no dossier's manifest


@pytest.fixture
def home(applied_home: Path, tmp_path: Path) -> Home:
    root = tmp_path / "home"
    shutil.copytree(applied_home, root, symlinks=True)
    return Home(root)


def run(home: Home, run_id: str, status: str, released: bool = False) -> None:
    """A finished run as the report runner leaves it: its record (and its release)."""
    folder = home.reports_dir / "armoede" / run_id
    folder.mkdir(parents=True)
    record = {
        "run_id": run_id,
        "dossier": "armoede",
        "template": "district_profile",
        "status": status,
        "user": "b.devries",
    }
    (folder / "provenance.json").write_text(json.dumps(record))
    if released:
        (folder / "release.json").write_text(json.dumps({"by": "a.jansen"}))


def rows_of(home: Home, today: dt.date | None = None) -> dict[str | None, dict]:
    return {r["id"]: r for r in portal.admin_overview(home, ADMIN, today)}


def test_counts_and_states_of_a_dossier_the_admin_is_not_in(home: Home) -> None:
    run(home, "20260101T000000-aaaaaa", "succeeded", released=True)
    run(home, "20260101T000001-bbbbbb", "succeeded")  # waits for a lead's release
    run(home, "20260101T000002-cccccc", "failed")
    rows = rows_of(home)
    armoede = rows["armoede"]
    assert armoede["runs"] == {"total": 3, "in_progress": 0, "failed": 1, "pending_release": 1}
    assert armoede["member"] is False
    # no hub runs for this HOME: the state is unknown, and the page says what to check
    assert armoede["workspace"] == {"state": "unknown", "last_activity": None}
    assert rows["woonfraude-2025"]["workspace"]["state"] == "expired"
    (hub,) = [p for p in rows[None]["problems"] if "hub does not answer" in p["what"]]
    assert "dossierhub serve" in hub["fix"]
    # counts, not the runs: no run id, nor the template a run used
    text = json.dumps(rows)
    for secret in ("20260101T000001-bbbbbb", "20260101T000002-cccccc", "district_profile"):
        assert secret not in text


def test_each_problem_comes_with_its_fix(home: Home) -> None:
    manifest = yaml.safe_load((home.dossiers_dir / "mobiliteit.yaml").read_text())
    manifest["members"]["lead"] = manifest["members"]["lead"][:1]
    (home.dossiers_dir / "mobiliteit.yaml").write_text(yaml.safe_dump(manifest))
    assert run_cli(home.root, "apply", "mobiliteit").exit_code == 0
    manifest["id"] = "mobiliteit-next"
    (home.dossiers_dir / "mobiliteit-next.yaml").write_text(yaml.safe_dump(manifest))
    expires = dt.date.fromisoformat(
        str(yaml.safe_load((home.dossiers_dir / "armoede.yaml").read_text())["expires"])
    )

    rows = rows_of(home, today=expires - dt.timedelta(days=3))
    fixes = {r: [(p["what"], p["fix"]) for p in rows[r]["problems"]] for r in rows}
    assert (
        f"expires in 3 days ({expires.isoformat()}): then its workspace stops and its extracts "
        "are removed.",
        "extend `expires` in dossiers/armoede.yaml if the work legitimately goes on, then run "
        "`dossierhub apply armoede`.",
    ) in fixes["armoede"]
    assert any(
        what.startswith("only one lead")
        and "second lead under `members.lead` in dossiers/mobiliteit.yaml" in fix
        for what, fix in fixes["mobiliteit"]
    )
    assert fixes["mobiliteit-next"] == [
        (
            "dossiers/mobiliteit-next.yaml is not applied: its people cannot use it yet.",
            "run `dossierhub apply mobiliteit-next`.",
        )
    ]
    assert rows["mobiliteit-next"]["workspace"]["state"] == "not applied"
    assert not any("lead" in what for what, _ in fixes["armoede"])  # it has two


def test_a_tampered_audit_log_is_a_broken_chain_to_fix(home: Home) -> None:
    assert not [
        p for p in rows_of(home).get(None, {"problems": []})["problems"] if "audit" in p["what"]
    ]
    lines = home.audit_log_file.read_text().splitlines()
    record = json.loads(lines[1])
    record["actor"] = "someone else"  # rewriting who did something
    lines[1] = json.dumps(record)
    home.audit_log_file.write_text("".join(line + "\n" for line in lines))
    (broken,) = [p for p in rows_of(home)[None]["problems"] if "audit chain" in p["what"]]
    assert broken["severity"] == "error"
    assert broken["what"].startswith("audit chain broken at record ")
    assert "dossierhub audit verify" in broken["fix"]


def test_only_admins_see_the_overview(home: Home) -> None:
    with pytest.raises(ReportRefused) as refused:
        portal.admin_overview(home, portal.Person("a.jansen"))
    assert refused.value.reason == "forbidden"
