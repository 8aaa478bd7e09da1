"""One rule set per run: every judge of a run (its output checks, the drawing's max_rows,
differencing when it is released) takes the disclosure rules of the extracts generation the
run read, even after an apply changed the dossier's rules. Real applies of the demo HOME, real
run folders written by publish()."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import yaml

from dossier_kernel.publish import publish
from dossierhub.data.extracts import current_provenance
from dossierhub.reports import airlock
from dossierhub.reports.differencing import differencing_checks
from dossierhub.state.home import Home, RunFolder

from helpers import run_cli

DOSSIER = "armoede"


def make_run(
    home: Home,
    run_id: str,
    generation: str,
    households: int,
    monkeypatch: pytest.MonkeyPatch,
    *,
    released: bool = False,
) -> RunFolder:
    """A finished run of district_profile on extracts `generation` that published one table."""
    run = home.run_folder(DOSSIER, run_id)
    run.path.mkdir(parents=True)
    monkeypatch.setenv("DOSSIERHUB_RUN_DIR", str(run.path))
    per_area = pl.DataFrame({"area": ["Noord", "West"], "households": [households, 400]})
    publish(per_area, "per_area", counts=["households"])
    monkeypatch.delenv("DOSSIERHUB_RUN_DIR")
    record = {
        "run_id": run_id,
        "dossier": DOSSIER,
        "user": "b.devries",
        "status": "succeeded",
        "template": "district_profile",
        "parameters": {"district": "Noord"},
        "extracts_generation": generation,
    }
    run.record.write_text(json.dumps(record))
    if released:
        run.release.write_text(json.dumps({"by": "a.jansen"}))
    return run


def apply_rules(home: Home, disclosure: dict) -> str:
    """Set the dossier's rules in its manifest, apply, and return the new generation."""
    manifest = yaml.safe_load(home.manifest_file(DOSSIER).read_text())
    manifest["disclosure"] = disclosure
    home.manifest_file(DOSSIER).write_text(yaml.safe_dump(manifest, sort_keys=False))
    result = run_cli(home.root, "apply")
    assert result.exit_code == 0, result.stderr
    provenance = current_provenance(home.extract_dir(DOSSIER))
    assert provenance is not None and provenance.disclosure["min_count"] == disclosure["min_count"]
    return provenance.generation


def test_a_run_is_judged_by_the_rules_of_its_own_extracts(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DOSSIER_CATALOG", raising=False)
    dossier_home = Home(home)
    first = apply_rules(dossier_home, {"min_count": 10, "max_rows": 1000})
    make_run(dossier_home, "20260101T090000-aaaaaa", first, 60, monkeypatch, released=True)
    run = make_run(dossier_home, "20260102T090000-bbbbbb", first, 55, monkeypatch)
    # after the runs, an apply loosens the rules: min_count 3, max_rows 1
    second = apply_rules(dossier_home, {"min_count": 3, "max_rows": 1})
    assert second != first

    # 5 households between the two releases: under 10, the run's own min_count
    [entry] = differencing_checks(dossier_home, DOSSIER, run)
    assert entry["table"] == "per_area" and not entry["passed"]
    assert "households" in entry["findings"][0]["message"]
    assert airlock.context_for(dossier_home, DOSSIER, run, []).max_rows == 1000

    # a run on the new extracts is judged by the new rules, all of them
    newer = make_run(dossier_home, "20260103T090000-cccccc", second, 55, monkeypatch)
    assert differencing_checks(dossier_home, DOSSIER, newer) == []
    assert airlock.context_for(dossier_home, DOSSIER, newer, []).max_rows == 1
