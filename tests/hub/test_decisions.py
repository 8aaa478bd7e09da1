"""The one audited decision path (decisions.py) on a real applied HOME: every decision is one
record, refusals included; a stranger's refusal is recorded under the id asked for and reads
the same whatever the id; reads that pages repeat are recorded when refused only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dossierhub import portal
from dossierhub.reports import requests as reports
from dossierhub.state import decisions
from dossierhub.state.audit import AuditLog
from dossierhub.state.home import Home
from dossierhub.state.problems import ReportRefused

from helpers import run_cli

DOCS = Path(__file__).resolve().parents[2] / "docs" / "decisions.md"


def records_after(home: Home, seq: int) -> list[dict[str, Any]]:
    return [r for r in AuditLog(home).read() if r["seq"] > seq]


def last_seq(home: Home) -> int:
    records = AuditLog(home).read()
    return records[-1]["seq"] if records else 0


@pytest.fixture
def home(applied_home: Path) -> Home:
    return Home(applied_home)


def test_a_refused_run_on_the_command_line_is_one_record(home: Home) -> None:
    mark = last_seq(home)
    refused = run_cli(home.root, "report", "run", "armoede", "data_quality", "--user", "d.visser")
    assert refused.exit_code == 1 and "only its leads and analysts" in refused.stderr
    invalid = run_cli(
        home.root,
        "report",
        "run",
        "armoede",
        "district_profile",
        "--user",
        "b.devries",
        "-p",
        "low_income_threshold",
        "5",
    )
    assert invalid.exit_code == 1 and "below the minimum" in invalid.stderr
    viewer, analyst = records_after(home, mark)
    assert viewer["action"] == analyst["action"] == "report.run.refused"
    assert viewer["channel"] == analyst["channel"] == "cli"
    assert viewer["actor"] == "d.visser" and analyst["actor"] == "b.devries"
    assert viewer["details"]["dossier"] == "armoede"
    assert viewer["details"]["template"] == "data_quality"
    assert viewer["details"]["outcome"] == "refused"
    assert viewer["details"]["reason"] == "forbidden"
    assert analyst["details"]["reason"] == "invalid"  # a bad parameter is a decision too
    assert "below the minimum 10000" in analyst["details"]["message"]
    assert run_cli(home.root, "audit", "verify").exit_code == 0


def test_a_strangers_refusal_reads_the_same_for_any_id(home: Home) -> None:
    """Recorded under the id asked for, in that dossier's trail; the stranger learns nothing
    from the answer (the same sentence for a dossier that does not exist)."""
    stranger = portal.Person("s.vreemd")
    mark = last_seq(home)
    answers = {}
    for dossier_id in ("armoede", "no-such-dossier"):
        with pytest.raises(ReportRefused) as refused:
            decisions.decide(
                home,
                "report.read",
                stranger.name,
                dossier_id,
                lambda d=dossier_id: portal.report_html(
                    home, d, "20260101T000000-abcdef", stranger
                ),
                run="20260101T000000-abcdef",
            )
        answers[dossier_id] = (refused.value.reason, str(refused.value).replace(dossier_id, "ID"))
    assert answers["armoede"] == answers["no-such-dossier"]
    recorded = records_after(home, mark)
    assert [(r["action"], r["details"]["dossier"]) for r in recorded] == [
        ("report.read.refused", "armoede"),
        ("report.read.refused", "no-such-dossier"),
    ]
    trail = portal.audit_trail(home, "armoede", portal.Person("a.jansen"))
    seen = [r for r in trail["records"] if r["actor"] == "s.vreemd"]
    assert seen and seen[0]["action"] == "report.read.refused"
    assert seen[0]["details"]["run"] == "20260101T000000-abcdef"


def test_reads_that_pages_repeat_are_recorded_when_refused_only(home: Home) -> None:
    lead = portal.Person("a.jansen")
    mark = last_seq(home)
    for _ in range(5):  # the run page and the panel poll like this
        decisions.decide(
            home,
            "dossier.show",
            lead.name,
            "armoede",
            lambda: portal.dossier_detail(home, "armoede", lead),
        )
    assert records_after(home, mark) == []
    with pytest.raises(ReportRefused):
        decisions.decide(
            home,
            "dossier.show",
            lead.name,
            "mobiliteit",
            lambda: portal.dossier_detail(home, "mobiliteit", lead),
        )
    (refused,) = records_after(home, mark)
    assert refused["action"] == "dossier.show.refused" and refused["actor"] == "a.jansen"


def test_an_allowed_decision_is_one_record_with_what_was_done(home: Home) -> None:
    analyst = portal.Person("b.devries")
    mark = last_seq(home)
    url = decisions.decide(
        home,
        "workspace.open",
        analyst.name,
        "armoede",
        lambda: portal.open_workspace(home, "armoede", analyst),
    )
    assert url == "/hub/spawn/dossier-armoede"
    (opened,) = records_after(home, mark)
    assert opened["action"] == "workspace.open" and opened["actor"] == "b.devries"
    assert opened["details"] == {"dossier": "armoede", "outcome": "allowed"}


def test_a_decision_is_recorded_once_and_named(home: Home) -> None:
    with pytest.raises(ValueError, match="not a decision"):
        decisions.Decision(home, "report.delete", "a.jansen", "armoede")
    decision = decisions.Decision(home, "audit.show", "a.jansen", "armoede")
    decision.allow()
    with pytest.raises(RuntimeError, match="recorded twice"):
        decision.refused_for("forbidden", "too late")


def test_what_a_person_typed_is_recorded_short(home: Home) -> None:
    mark = last_seq(home)
    template = "x" * 100_000
    with pytest.raises(ReportRefused):
        decisions.decide(
            home,
            "report.run",
            "b.devries",
            "armoede",
            lambda: portal.start_run(home, "armoede", portal.Person("b.devries"), template, {}),
            template=template,
        )
    (record,) = records_after(home, mark)
    assert len(record["details"]["template"]) <= decisions.TEXT_LIMIT
    assert len(json.dumps(record)) < 2000


def test_every_decision_and_hub_record_is_documented() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for name in [*decisions.ACTIONS, "hub.sync", "hub.token"]:
        assert f"`{name}`" in text, name


def test_an_allowed_run_records_what_was_asked_and_done_once(home: Home) -> None:
    """The template is both asked and done: one key, one record."""
    mark = last_seq(home)
    pending = decisions.decide(
        home,
        "report.run",
        "b.devries",
        "armoede",
        lambda: reports.start_run(
            home, "armoede", "data_quality", "b.devries", {"view": "households"}
        ),
        decisions.run_facts,
        template="data_quality",
    )
    (record,) = records_after(home, mark)
    assert record["action"] == "report.run" and record["details"]["run"] == pending.run_id
    assert record["details"]["template"] == "data_quality"
    assert record["details"]["parameters"] == pending.values
