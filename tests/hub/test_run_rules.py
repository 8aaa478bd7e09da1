"""Each rule about report runs decided once, and every face showing its answer: whether a run
is released (records.is_released), whether its release needs a justification
(records.needs_justification on the checks release_run decides with), who may read or release
it (roles.py), whether it is still in progress (records.RunRecord), and a malformed extract
provenance refused in words, not as a crash. On a real applied HOME with run folders made the
way a run leaves them (tables written by publish() itself)."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import polars as pl
import pytest

from dossier_kernel.provenance import PROVENANCE_FILE
from dossier_kernel.publish import publish
from dossierhub import portal
from dossierhub.data.extracts import current_provenance
from dossierhub.data.generations import DATA_LINK
from dossierhub.reports import requests
from dossierhub.reports.collect import file_hashes
from dossierhub.reports.differencing import _released_runs
from dossierhub.reports.records import read_record
from dossierhub.state.home import Home
from dossierhub.state.problems import ReportRefused
from dossierhub.state.roles import may_run
from dossierhub.web.runner import Runner

from helpers import run_cli

DOSSIER = "armoede"
LEAD, OTHER_LEAD, ANALYST, VIEWER = "a.jansen", "e.mulder", "b.devries", "d.visser"
UNREADABLE = "20260101T080000-dddddd"


@pytest.fixture
def home(applied_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    root = tmp_path / "home"
    shutil.copytree(applied_home, root, symlinks=True)
    monkeypatch.delenv("DOSSIER_CATALOG", raising=False)
    return Home(root)


def make_run(
    home: Home,
    run_id: str,
    monkeypatch: pytest.MonkeyPatch,
    *,
    reached: int = 41,
    status: str = "succeeded",
    release: str | None = None,
    user: str = ANALYST,
    checks_passed: bool = True,
) -> Path:
    """A run of district_profile as a run leaves it: a published table, its checks (all
    passed when it finished), its record with the hashes of its files; `release` is the text
    of its release.json, if any."""
    folder = home.reports_dir / DOSSIER / run_id
    folder.mkdir(parents=True)
    if status == "succeeded":
        monkeypatch.setenv("DOSSIERHUB_RUN_DIR", str(folder))
        frame = pl.DataFrame({"area": ["Noord", "Zuid"], "reached": [reached, 60]})
        publish(frame, "reach_per_area", counts=["reached"])
        monkeypatch.delenv("DOSSIERHUB_RUN_DIR")
        checks = [{"table": "reach_per_area", "passed": checks_passed, "findings": []}]
        (folder / "checks.json").write_text(json.dumps(checks))
    record = {
        "run_id": run_id,
        "dossier": DOSSIER,
        "template": "district_profile",
        "user": user,
        "status": status,
        "parameters": {"district": "Noord"},
        "runner_pid": os.getpid(),  # alive: a queued run stays queued
        "outputs": file_hashes(home.run_folder(DOSSIER, run_id)),
        "checks_passed": checks_passed if status == "succeeded" else None,
    }
    (folder / "provenance.json").write_text(json.dumps(record))
    if release is not None:
        (folder / "release.json").write_text(release)
    return folder


# ---------------------------------------------------------------- 1. released: one meaning


def test_an_unreadable_release_is_released_on_every_face_and_breaks_none(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_run(home, UNREADABLE, monkeypatch, release="[]")
    words = f"released (record unreadable: reports/{DOSSIER}/{UNREADABLE}/release.json is not"

    (row,) = portal.runs_for(home, DOSSIER, portal.Person(VIEWER))  # viewers list it ...
    assert row["released_words"].startswith(words) and row["released"]["unreadable"]
    detail = portal.run_detail(home, DOSSIER, UNREADABLE, portal.Person(VIEWER))  # ... and open it
    assert detail["released_words"].startswith(words)
    assert portal.table_csv(home, DOSSIER, UNREADABLE, "reach_per_area", portal.Person(VIEWER))

    lead = portal.run_detail(home, DOSSIER, UNREADABLE, portal.Person(OTHER_LEAD))
    assert not lead["release"]["allowed"]  # a second release is refused: it is released
    assert "already released (record unreadable" in lead["release"]["why_not"]
    with pytest.raises(ReportRefused, match="already released") as refused:
        portal.release(home, DOSSIER, UNREADABLE, portal.Person(OTHER_LEAD), "why")
    assert refused.value.reason == "conflict"
    assert [r.run_id for r in _released_runs(home, DOSSIER, exclude="")] == [UNREADABLE]

    listed = run_cli(home.root, "report", "list", DOSSIER)
    assert listed.exit_code == 0 and "record unreadable" in listed.stdout
    shown = run_cli(home.root, "report", "show", DOSSIER, UNREADABLE)
    assert shown.exit_code == 0 and "unreadable" in shown.stdout


# ---------------------------------------------------------------- 2. justification: one rule


def test_the_page_asks_for_a_justification_exactly_when_the_release_needs_one(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run whose checks passed when it finished, before a neighbouring run (one household
    apart) was released: its release now fails differencing, so the page must ask why."""
    make_run(home, "20260101T090000-aaaaaa", monkeypatch, release=json.dumps({"by": LEAD}))
    later = "20260101T100000-bbbbbb"
    make_run(home, later, monkeypatch, reached=42)

    verdict = portal.run_detail(home, DOSSIER, later, portal.Person(OTHER_LEAD))["release"]
    assert verdict["allowed"] and verdict["needs_justification"]
    with pytest.raises(ReportRefused, match="written justification") as refused:
        portal.release(home, DOSSIER, later, portal.Person(OTHER_LEAD), None)
    assert "justification" in refused.value.fields


def test_a_run_whose_checks_still_pass_is_released_without_a_justification_field(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = "20260101T100000-cccccc"
    make_run(home, run_id, monkeypatch)
    verdict = portal.run_detail(home, DOSSIER, run_id, portal.Person(OTHER_LEAD))["release"]
    assert verdict == {
        "allowed": True,
        "shows_to": [VIEWER],
        "shows_to_words": f"Releasing shows this report to: {VIEWER} (viewers)",
        "why_not": None,
        "explain": False,
        "needs_justification": False,
    }


# ---------------------------------------------------------------- 3. roles: the rule's words


def test_refusals_and_offers_are_the_role_rules_own(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = "20260101T100000-eeeeee"
    make_run(home, run_id, monkeypatch)
    entry = next(e for e in portal.read_directory(home) if e.id == DOSSIER)

    with pytest.raises(ReportRefused) as refused:  # an analyst: may_release's sentence
        portal.release(home, DOSSIER, run_id, portal.Person(ANALYST), "why")
    assert str(refused.value) == f"{ANALYST} is not a lead of dossier {DOSSIER}: only leads release"
    with pytest.raises(ReportRefused) as refused:  # a viewer: may_run's sentence
        portal.start_run(home, DOSSIER, portal.Person(VIEWER), "district_profile", {})
    rule = may_run(entry, VIEWER)
    assert rule is not None and str(refused.value) == rule.why
    with pytest.raises(ReportRefused, match="only its leads and analysts run reports"):
        portal.templates_for(home, DOSSIER, portal.Person(VIEWER))

    viewer = portal.dossier_detail(home, DOSSIER, portal.Person(VIEWER))
    assert (viewer["sees_unreleased"], viewer["prepares_runs"]) == (False, False)
    lead = portal.dossier_detail(home, DOSSIER, portal.Person(LEAD))
    assert (lead["sees_unreleased"], lead["prepares_runs"]) == (True, True)
    # the starter's lead colleague is told why not (four eyes); an analyst is offered nothing
    own = portal.run_detail(home, DOSSIER, run_id, portal.Person(ANALYST))["release"]
    assert not own["allowed"] and not own["explain"]
    with pytest.raises(ReportRefused, match="not released: viewers read released reports only"):
        portal.run_detail(home, DOSSIER, run_id, portal.Person(VIEWER))


DECIDED = (
    *("d.role ==", "d.role in", '== "viewer"', '== "lead"'),
    *("'queued'", '"queued"', "'running'", '"running"', "'succeeded'", '"succeeded"'),
    "released.by}",  # "released by undefined" for an unreadable release
    *("checks_passed ==", "checks_passed is", "user ==", "leads"),  # who releases
)


def test_the_pages_and_the_panel_decide_no_rule_themselves() -> None:
    """Roles and run states are compared in roles.py and records.py only: the templates, the
    page script and the lab panel print what the server decided."""
    root = Path(__file__).parents[2]
    faces = [
        *(root / "hub/dossierhub/web/templates").glob("*.html"),
        *(root / "hub/dossierhub/web/static").glob("*.js"),
        *(root / "extensions/src").glob("*.ts"),
    ]
    assert faces
    for face in faces:
        text = face.read_text(encoding="utf-8")
        for decided in DECIDED:
            assert decided not in text, f"{face.name} decides a rule: {decided}"


# ---------------------------------------------------------------- 4. run states: one place


def test_runs_carry_their_state_as_decided(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    make_run(home, "20260101T100000-ffffff", monkeypatch)
    make_run(home, "20260101T110000-gggggg", monkeypatch, status="queued")
    rows = portal.runs_for(home, DOSSIER, portal.Person(LEAD))
    assert [(r["status"], r["in_progress"], r["succeeded"]) for r in rows] == [
        ("queued", True, False),
        ("succeeded", False, True),
    ]
    detail = portal.run_detail(home, DOSSIER, "20260101T110000-gggggg", portal.Person(LEAD))
    assert (detail["in_progress"], detail["succeeded"], detail["tables"]) == (True, False, [])


def test_next_steps_are_the_four_eyes_rule_as_each_person_is_told(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lead's run waits for the other lead: only that lead has it in the inbox, its author
    is told whom it waits for, a viewer learns nothing; a released or failed run waits for no
    one; a run whose checks failed is marked as such wherever its state is shown."""
    waiting = "20260101T100000-hhhhhh"
    make_run(home, waiting, monkeypatch, user=LEAD, checks_passed=False)
    make_run(home, "20260101T090000-iiiiii", monkeypatch, status="failed")
    make_run(home, "20260101T080000-jjjjjj", monkeypatch, release=json.dumps({"by": OTHER_LEAD}))

    def inbox(person: str) -> int:
        (mine,) = [d for d in portal.my_dossiers(home, portal.Person(person)) if d["id"] == DOSSIER]
        assert (
            portal.dossier_detail(home, DOSSIER, portal.Person(person))["awaiting_release"]
            == (mine["awaiting_release"])
        )
        return mine["awaiting_release"]

    assert (inbox(OTHER_LEAD), inbox(LEAD), inbox(ANALYST), inbox(VIEWER)) == (1, 0, 0, 0)
    steps = {
        person: [r["next_step"] for r in portal.runs_for(home, DOSSIER, portal.Person(person))]
        for person in (OTHER_LEAD, LEAD, ANALYST)
    }
    assert steps[OTHER_LEAD] == ["Awaiting your release", None, None]
    assert steps[LEAD] == steps[ANALYST] == [f"Waiting for release by {OTHER_LEAD}", None, None]
    (seen,) = portal.runs_for(home, DOSSIER, portal.Person(VIEWER))  # the released one only
    assert seen["next_step"] is None and seen["waiting_for_release_by"] == []

    detail = portal.run_detail(home, DOSSIER, waiting, portal.Person(LEAD))
    assert detail["checks_failed"] and detail["waiting_for_release_by"] == [OTHER_LEAD]
    rows = portal.runs_for(home, DOSSIER, portal.Person(OTHER_LEAD))
    assert [r["checks_failed"] for r in rows] == [True, False, False]

    # with one lead left, the run the lead started waits for no one: the team is told why
    directory = json.loads(home.directory_file.read_text())
    for entry in directory:
        if entry["id"] == DOSSIER:
            entry["leads"] = [LEAD]
    home.directory_file.write_text(json.dumps(directory))
    (row, *_) = portal.runs_for(home, DOSSIER, portal.Person(ANALYST))
    assert row["next_step"].startswith("No other lead may release it")
    assert inbox(LEAD) == 0


# ---------------------------------------------------------------- 5. provenance: read once


def break_provenance(home: Home) -> None:
    (home.extract_dir(DOSSIER) / DATA_LINK / PROVENANCE_FILE).write_text('{"views": 3}')


def test_a_run_records_the_extracts_it_was_checked_against_even_if_they_break_meanwhile(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An apply that breaks provenance.json just after the request was checked: the run is
    queued with what it was checked against, or refused with no folder; never half made."""
    generation = current_provenance(home.extract_dir(DOSSIER)).generation  # type: ignore[union-attr]
    read = requests.current_provenance

    def read_then_break(folder: Path):  # type: ignore[no-untyped-def]
        found = read(folder)
        break_provenance(home)  # the "apply" between two reads, on the real file
        return found

    monkeypatch.setattr(requests, "current_provenance", read_then_break)
    pending = requests.start_run(home, DOSSIER, "district_profile", ANALYST, {})
    record = read_record(pending.run)
    assert record.extracts_generation == generation and record.extracts
    assert [p.name for p in home.runs_dir(DOSSIER).iterdir()] == [pending.run_id]


def test_a_malformed_provenance_is_refused_in_words_and_skipped_by_the_runner(
    home: Home, caplog: pytest.LogCaptureFixture
) -> None:
    break_provenance(home)
    for face in (portal.dossier_detail, portal.templates_for):
        with pytest.raises(ReportRefused, match="provenance") as refused:
            face(home, DOSSIER, portal.Person(LEAD))
        assert refused.value.reason == "conflict"
    runner = Runner(home, prestart=1, workers=1)
    try:
        with caplog.at_level(logging.WARNING, logger="dossierhub.web"):
            runner.prune()  # the periodic prune goes on for the other dossiers
    finally:
        runner.close()
    assert any(DOSSIER in r.getMessage() for r in caplog.records)
