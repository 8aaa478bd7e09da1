"""The audit trail as people read it: one sentence per record (every action the code can write
has its own), run ids that open the run only for those who may read it, filters by person and
action with a clear refusal for a value the trail does not hold, and the one date rule."""

from __future__ import annotations

import ast
import datetime as dt
import json
import re
import shutil
from html import unescape
from pathlib import Path

import pytest
from markupsafe import Markup

import dossierhub
from dossierhub import portal
from dossierhub.state.audit import GENESIS_ACTION, AuditLog
from dossierhub.state.decisions import ACTIONS, REFUSED
from dossierhub.state.home import Home
from dossierhub.state.problems import ReportRefused
from dossierhub.state.settings import Settings
from dossierhub.web import auditwords, dates

from helpers import run_cli

RUNS = "/services/dossierhub/dossiers/armoede/runs/"
RELEASED = "20260101T000000-aaaaaa"
UNRELEASED = "20260101T000001-bbbbbb"


def written_actions() -> set[str]:
    """Every action name the code appends to the audit log: `.append("name", ...)` on an
    AuditLog (or a variable holding one), each decision of decisions.ACTIONS and its
    refusal, and the genesis."""
    found = {GENESIS_ACTION}
    for path in Path(dossierhub.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr != "append" or not node.args:
                continue
            first, receiver = node.args[0], node.func.value
            on_log = (
                isinstance(receiver, ast.Call)
                and isinstance(receiver.func, ast.Name)
                and receiver.func.id == "AuditLog"
            ) or (isinstance(receiver, ast.Name) and receiver.id in ("audit", "log"))
            if on_log and isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.add(first.value)
    for name in ACTIONS:
        found |= {name, name + REFUSED}
    return found


def test_every_action_the_code_writes_has_its_own_sentence() -> None:
    actions = written_actions()
    # the scan sees the writers of every part, not only the decisions
    assert {"apply", "hub.sync", "report.finished", "passwd", "expiry.stop"} <= actions
    missing = sorted(a for a in actions if not auditwords.known(a))
    assert not missing, f"actions without a sentence of their own: {missing}"


def trail_home(applied_home: Path, tmp_path: Path) -> Home:
    """The demo installation, one released and one unreleased run of armoede, and records
    of runs, a release, a read and refusals written as the code writes them."""
    root = tmp_path / "home"
    shutil.copytree(applied_home, root, symlinks=True)
    home = Home(root)
    for run_id, released in ((RELEASED, True), (UNRELEASED, False)):
        folder = home.reports_dir / "armoede" / run_id
        folder.mkdir(parents=True)
        provenance = {
            "run_id": run_id,
            "dossier": "armoede",
            "template": "district_profile",
            "status": "succeeded",
            "user": "b.devries",
        }
        (folder / "provenance.json").write_text(json.dumps(provenance))
        if released:
            (folder / "release.json").write_text(json.dumps({"by": "e.mulder"}))
    log = AuditLog(home)
    for run_id, district in ((RELEASED, "Noord"), (UNRELEASED, "Zuid")):
        log.append(
            "report.run",
            actor="b.devries",
            dossier="armoede",
            run=run_id,
            template="district_profile",
            parameters={"district": district},
            outcome="allowed",
        )
    log.append(
        "report.release",
        actor="e.mulder",
        dossier="armoede",
        run=RELEASED,
        justification="small cells <merged>",
        failed_checks=["min_count"],
        included=[],
        outcome="allowed",
    )
    log.append(
        "report.finished",
        actor="b.devries",
        dossier="armoede",
        run=UNRELEASED,
        status="succeeded",
        error=None,
        checks_passed=False,
        outputs=[],
    )
    log.append("report.read", actor="d.visser", dossier="armoede", run=RELEASED, view="report")
    log.append("mystery.thing", actor="a.jansen", dossier="armoede", colour="blue")
    refused = run_cli(root, "report", "run", "armoede", "no_such_template", "--user", "b.devries")
    assert refused.exit_code == 1
    return home


def sentences(trail: dict) -> list[str]:
    return [str(auditwords.sentence(r, RUNS)) for r in trail["records"]]


def text_of(html: str) -> str:
    return unescape(re.sub(r"<[^>]+>", "", html))


def test_each_record_reads_as_one_sentence_with_the_run_linked(
    applied_home: Path, tmp_path: Path
) -> None:
    home = trail_home(applied_home, tmp_path)
    trail = portal.audit_trail(home, "armoede", portal.Person("a.jansen"))
    html = sentences(trail)
    words = [text_of(s) for s in html]
    assert (
        f"e.mulder (lead) released run {RELEASED} of report district_profile to viewers although "
        "1 check failed — justification: small cells <merged>." in words
    )
    assert (
        f"b.devries (analyst) started run {UNRELEASED} of report district_profile with "
        "district=Zuid." in words
    )
    assert f"d.visser (viewer) read the report of run {RELEASED} of report district_profile." in (
        words
    )
    assert any(
        w.startswith("b.devries (analyst) was refused a run of no_such_template: ") for w in words
    )
    assert (
        f"Run {UNRELEASED} of report district_profile succeeded, but an output check failed — "
        "started by b.devries (analyst)." in words
    )
    assert "a.jansen (lead) did mystery thing." in words  # unknown: generic, never raw JSON
    assert any(re.search(r"applied the manifest: \d+ views \(\d+ rebuilt\)", w) for w in words)
    # what a person typed is text, never markup
    assert "small cells &lt;merged&gt;" in "".join(html) and "<merged>" not in "".join(html)
    # the team may open both runs: each is a link to its page
    for run_id in (RELEASED, UNRELEASED):
        assert f'<a class="run-link" href="{RUNS}{run_id}">{run_id}</a>' in "".join(html)


def test_a_viewer_gets_links_to_released_runs_only(applied_home: Path, tmp_path: Path) -> None:
    home = trail_home(applied_home, tmp_path)
    trail = portal.audit_trail(home, "armoede", portal.Person("d.visser"))
    html = "".join(sentences(trail))
    assert f'href="{RUNS}{RELEASED}"' in html
    assert UNRELEASED not in html and "district=Zuid" not in html
    refusal = next(r for r in trail["records"] if r["action"] == "report.run.refused")
    assert text_of(str(auditwords.sentence(refusal, RUNS))) == (
        "b.devries (analyst) was refused a run of a template: the request was invalid."
    )  # not the template name the analyst typed: the team's working material
    # a viewer's trail keeps no status of a released run's end: the sentence still reads
    kept = {"action": "report.finished", "actor": "b.devries", "details": {"run": RELEASED}}
    assert text_of(str(auditwords.sentence(kept, RUNS))) == (
        f"Run {RELEASED} finished — started by b.devries."
    )
    # a run that does not exist (asked for and refused) is named, never linked
    row = {"action": "report.read.refused", "actor": "x", "details": {"run": "nope"}}
    shown = str(auditwords.sentence(row, RUNS))
    assert "run nope" in shown and "<a" not in shown


def test_the_filters_narrow_to_one_person_and_one_action(
    applied_home: Path, tmp_path: Path
) -> None:
    home = trail_home(applied_home, tmp_path)
    lead = portal.Person("a.jansen")
    everything = portal.audit_trail(home, "armoede", lead)
    assert {"b.devries", "e.mulder", "d.visser"} <= set(everything["people"])
    mine = portal.audit_trail(home, "armoede", lead, who="b.devries")
    assert mine["records"] and {r["actor"] for r in mine["records"]} == {"b.devries"}
    assert len(mine["records"]) < len(everything["records"])
    runs = portal.audit_trail(home, "armoede", lead, action="run")  # a word: and its refusals
    assert {r["action"] for r in runs["records"]} == {"report.run", "report.run.refused"}
    exact = portal.audit_trail(home, "armoede", lead, who="b.devries", action="report.run")
    assert [r["details"]["run"] for r in exact["records"]] == [UNRELEASED, RELEASED]
    assert exact["filter"] == {"person": "b.devries", "action": "report.run"}


@pytest.mark.parametrize(
    ("who", "action", "field", "says"),
    [
        ("nobody", None, "person", "no one named 'nobody' is in this audit trail; it names "),
        (None, "relase", "action", "this audit trail has no action 'relase'; it has "),
        ("<script>" * 40, None, "person", "no one named '<script><script>"),
    ],
)
def test_a_filter_the_trail_cannot_answer_is_refused_clearly(
    applied_home: Path, tmp_path: Path, who: str | None, action: str | None, field: str, says: str
) -> None:
    home = trail_home(applied_home, tmp_path)
    with pytest.raises(ReportRefused) as refused:
        portal.audit_trail(home, "armoede", portal.Person("a.jansen"), who=who, action=action)
    assert refused.value.reason == "invalid" and field in refused.value.fields
    assert str(refused.value).startswith(says) and len(str(refused.value)) < 400


def test_a_viewer_cannot_filter_for_the_teams_hidden_records(
    applied_home: Path, tmp_path: Path
) -> None:
    home = trail_home(applied_home, tmp_path)
    viewer = portal.Person("d.visser")
    # the refused run's details are hidden from viewers; its template is not in their list
    trail = portal.audit_trail(home, "armoede", viewer, who="b.devries")
    assert UNRELEASED not in json.dumps(trail)


def test_times_read_as_local_dates_in_the_installations_zone() -> None:
    shown = dates.when("2026-12-01T06:11:48.538+00:00", "Europe/Amsterdam")
    assert shown == Markup(
        '<time datetime="2026-12-01T06:11:48+00:00" data-when="moment">1 Dec 2026, 07:11</time>'
    )
    summer = dates.when(dt.datetime(2026, 7, 1, 22, 30, tzinfo=dt.UTC), "Europe/Amsterdam")
    assert ">2 Jul 2026, 00:30<" in summer  # summer time, and past midnight: the next day
    assert ">1 Dec 2026, 01:11<" in dates.when("2026-12-01T06:11:48Z", "America/New_York")
    assert dates.when(None, "UTC", "-") == "-" and dates.when("", "UTC") == ""
    assert dates.when("not <a> time", "UTC") == "not &lt;a&gt; time"  # as it came, escaped
    assert dates.day("2026-12-31") == Markup('<time datetime="2026-12-31">31 Dec 2026</time>')
    assert dates.day("someday") == "someday"


def test_the_time_zone_setting_is_checked() -> None:
    assert Settings().hub.time_zone == "Europe/Amsterdam"
    assert Settings.model_validate({"hub": {"time_zone": "UTC"}}).hub.time_zone == "UTC"
    for bad in ("Mars/Olympus", "../../etc/passwd"):
        with pytest.raises(ValueError, match="is not an IANA time zone"):
            Settings.model_validate({"hub": {"time_zone": bad}})
