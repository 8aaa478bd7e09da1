"""What a dossier's viewers read of its audit trail: who did what to the released runs, never
the team's working material (a failed run's error, parameters of unreleased runs, text a team
member typed into a refused request)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from dossierhub import portal
from dossierhub.state.audit import AuditLog
from dossierhub.state.home import Home

from helpers import run_cli

LEAK = "household 0123456789abcdef0123456789abcdef has income 227440"


def released_run(home: Home, run_id: str) -> None:
    folder = home.reports_dir / "armoede" / run_id
    folder.mkdir(parents=True)
    provenance = {
        "run_id": run_id,
        "dossier": "armoede",
        "template": "district_profile",
        "status": "succeeded",
        "user": "x",
    }
    (folder / "provenance.json").write_text(json.dumps(provenance))
    (folder / "release.json").write_text(json.dumps({"by": "e.mulder"}))


def test_viewers_read_the_released_runs_not_the_teams_work(
    applied_home: Path, tmp_path: Path
) -> None:
    root = tmp_path / "home"
    shutil.copytree(applied_home, root, symlinks=True)
    home = Home(root)
    released_run(home, "20260101T000000-aaaaaa")
    log = AuditLog(home)
    log.append(
        "report.run",
        actor="b.devries",
        dossier="armoede",
        run="20260101T000000-aaaaaa",
        template="district_profile",
        parameters={"district": "Noord"},
    )
    log.append(
        "report.run",
        actor="b.devries",
        dossier="armoede",
        run="20260101T000001-bbbbbb",
        template="district_profile",
        parameters={"low_income_threshold": 99000},
    )
    log.append(
        "report.finished",
        actor="b.devries",
        dossier="armoede",
        run="20260101T000001-bbbbbb",
        status="failed",
        error=f"ValueError: {LEAK}",
    )
    refused = run_cli(root, "report", "run", "armoede", LEAK, "--user", "b.devries")
    assert refused.exit_code == 1

    lead = portal.audit_trail(home, "armoede", portal.Person("a.jansen"))
    assert LEAK in json.dumps(lead)  # the team sees its own work
    viewer = portal.audit_trail(home, "armoede", portal.Person("d.visser"))
    text = json.dumps(viewer)
    assert LEAK not in text and "20260101T000001-bbbbbb" not in text and "99000" not in text
    runs = [r for r in viewer["records"] if r["details"].get("run")]
    assert [(r["action"], r["details"]["run"]) for r in runs] == [
        ("report.run", "20260101T000000-aaaaaa")
    ]
    assert runs[0]["details"]["parameters"] == {"district": "Noord"}
    refusals = [r for r in viewer["records"] if r["action"] == "report.run.refused"]
    assert refusals and all(set(r["details"]) <= {"reason"} for r in refusals)
