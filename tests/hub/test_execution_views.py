"""Who ran what, as people see it (issue 16, point 3): a dossier's executions for its team,
a member's own elsewhere, a person's own across dossiers, the trail's sentence for a batch,
and the admin's export of one person, on a real HOME whose audit log holds batches appended
as the service appends them (tests/executionrecords.py)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import stat
from pathlib import Path

import pytest

from dossierhub import portal
from dossierhub.state.audit import AuditLog
from dossierhub.state.home import Home
from dossierhub.state.problems import ReportRefused
from dossierhub.web import auditwords

from executionrecords import append_batch, execute, kernel_call
from helpers import run_cli

LEAD, ANALYST, VIEWER = "a.jansen", "b.devries", "d.visser"
OTHER_ANALYST = "h.deboer"  # mobiliteit's analyst, no member of armoede
SECRET = "households[households.income < 227440]"  # a first line of code holds data
T0 = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC)


def at(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


@pytest.fixture(scope="module")
def home(applied_home: Path) -> Home:
    """armoede: b.devries ran 3 cells of poverty.ipynb (one later failed, its reply in the next
    batch, where a.jansen also restarted the kernel), a.jansen 1 of a.ipynb, the viewer
    d.visser 1 (from when they were an analyst);
    mobiliteit: h.deboer and b.devries (who left it since) 1 each, b.devries having
    interrupted its kernel just before."""
    home = Home(applied_home)  # this module's own copy: its log is this module's
    late = execute(ANALYST, at(3), "1 / 0", cell_id="c3", outcome=None)
    append_batch(
        home,
        "armoede",
        [
            execute(ANALYST, at(1), "import polars", cell_id="c1"),
            execute(ANALYST, at(2), SECRET, cell_id="c2"),
            late,
            execute(LEAD, at(4), "\n\nx = 1\ny = 2", path="a.ipynb", cell_id="c9"),
            execute(VIEWER, at(5), "db.sql('select 1')", path=None),
        ],
    )
    append_batch(
        home,
        "armoede",
        [
            {
                "event": "outcome",
                "at": at(6).isoformat(),
                "kernel": late["kernel"],
                "msg_id": late["msg_id"],
                "outcome": "error",
            },
            {
                "event": "refused",
                "at": at(6).isoformat(),
                "reason": "a kernel channel opened with the workspace's own token",
            },
            {
                "event": "kernel",
                "at": at(6).isoformat(),
                "person": LEAD,
                "kernel": "k-1",
                "action": "restart",
            },
        ],
    )
    append_batch(
        home,
        "mobiliteit",
        [
            execute(OTHER_ANALYST, at(7), "trips", path="m.ipynb", kernel="k-2"),
            kernel_call(ANALYST, at(7), "interrupt", path="m.ipynb", kernel="k-2"),
            execute(ANALYST, at(8), "old work", path="m.ipynb", kernel="k-2"),
        ],
    )
    return home


def show(home: Home, who: str, **asked: str) -> dict:
    filt = portal.execution_filter(home, asked)
    return portal.executions_for(home, "armoede", portal.Person(who), filt)


def test_the_team_sees_everyone_newest_first_with_counts(home: Home) -> None:
    answer = show(home, LEAD)
    assert answer["everyone"] is True
    rows = answer["executions"]
    assert [(r["person"], r["first_line"]) for r in rows] == [
        (VIEWER, "db.sql('select 1')"),
        (LEAD, "x = 1"),
        (ANALYST, "1 / 0"),
        (ANALYST, SECRET),
        (ANALYST, "import polars"),
    ]
    assert rows[2]["outcome"] == "error"  # the reply that came in a later batch, joined
    assert answer["people"] == {ANALYST: 3, LEAD: 1, VIEWER: 1}
    assert answer["notebooks"] == {"poverty.ipynb": 3, "a.ipynb": 1}
    assert set(rows[0]) == set(portal.ROW_KEYS)  # no code: the default records a hash only
    assert all(r["dossier"] == "armoede" for r in rows)  # not mobiliteit's
    restart = {"person": LEAD, "dossier": "armoede", "kernel": "k-1", "action": "restart"}
    assert answer["kernel_calls"] == [{**restart, "at": at(6).isoformat(), "path": None}]
    assert answer["kernel_call_total"] == 1  # not b.devries's interrupt in mobiliteit


def test_kernel_calls_are_narrowed_as_executions_are(home: Home) -> None:
    """By person and time on the audit page's section; a viewer sees none of the team's."""
    assert [c["action"] for c in show(home, LEAD, person=LEAD)["kernel_calls"]] == ["restart"]
    assert show(home, LEAD, person=ANALYST)["kernel_calls"] == []
    assert show(home, LEAD, until=at(5).isoformat())["kernel_calls"] == []
    assert show(home, LEAD, since=at(6).isoformat())["kernel_call_total"] == 1
    assert show(home, VIEWER)["kernel_calls"] == []  # the lead's restart is not theirs to see
    mine = portal.my_executions(home, portal.Person(ANALYST), portal.ExecutionFilter())
    assert [(c["dossier"], c["action"]) for c in mine["kernel_calls"]] == [
        ("mobiliteit", "interrupt")
    ]


def test_filters_narrow_and_a_bad_one_names_its_parameter(home: Home) -> None:
    assert show(home, LEAD, person=ANALYST, path="poverty.ipynb")["total"] == 3
    assert show(home, LEAD, person=ANALYST, limit="2")["total"] == 3
    assert len(show(home, LEAD, person=ANALYST, limit="2")["executions"]) == 2
    since, until = at(2).isoformat(), at(3).isoformat()
    window = show(home, LEAD, since=since, until=until)["executions"]
    assert [r["first_line"] for r in window] == ["1 / 0", SECRET]
    assert show(home, LEAD, since="2026-12-01")["total"] == 0
    assert show(home, LEAD, until="2026-11-30")["total"] == 5  # the whole day
    for name, value in (
        ("since", "yesterday"),
        ("until", "2026-13-01"),
        ("limit", "0"),
        ("limit", "many"),
        ("until", "2020-01-01"),  # before since
    ):
        asked = {"since": "2026-01-01", name: value}
        with pytest.raises(ReportRefused) as refused:
            show(home, LEAD, **asked)
        assert refused.value.reason == "malformed"  # 400
        assert set(refused.value.fields) == {name} and str(refused.value).startswith(name)


def test_a_viewer_sees_their_own_rows_only(home: Home) -> None:
    answer = show(home, VIEWER)
    assert answer["everyone"] is False
    assert [r["person"] for r in answer["executions"]] == [VIEWER]
    assert answer["people"] == {VIEWER: 1} and answer["choices"]["people"] == [VIEWER]
    assert SECRET not in json.dumps(answer)
    with pytest.raises(ReportRefused) as refused:
        show(home, VIEWER, person=ANALYST)
    assert refused.value.reason == "forbidden"
    with pytest.raises(ReportRefused):  # nor who last ran the cells (the panel's markers)
        portal.latest_executions(home, "armoede", portal.Person(VIEWER), "poverty.ipynb")


def test_an_analyst_of_another_dossier_sees_nothing_of_this_one(home: Home) -> None:
    other = portal.Person(OTHER_ANALYST)
    for asked in (
        lambda: show(home, OTHER_ANALYST),
        lambda: portal.latest_executions(home, "armoede", other, "poverty.ipynb"),
        lambda: portal.audit_trail(home, "armoede", other),
    ):
        with pytest.raises(ReportRefused) as refused:
            asked()
        assert refused.value.reason == "forbidden"
    mine = portal.my_executions(home, other, portal.ExecutionFilter())
    assert [r["first_line"] for r in mine["executions"]] == ["trips"]


def test_who_last_ran_each_cell(home: Home) -> None:
    cells = portal.latest_executions(home, "armoede", portal.Person(ANALYST), "poverty.ipynb")
    assert {c: (v["person"], v["outcome"]) for c, v in cells["cells"].items()} == {
        "c1": (ANALYST, "ok"),
        "c2": (ANALYST, "ok"),
        "c3": (ANALYST, "error"),
    }


def test_a_person_sees_their_own_across_dossiers_also_one_they_left(home: Home) -> None:
    mine = portal.my_executions(home, portal.Person(ANALYST), portal.ExecutionFilter())
    assert mine["dossiers"] == {"armoede": 3, "mobiliteit": 1}
    assert {r["person"] for r in mine["executions"]} == {ANALYST}
    assert mine["executions"][0]["first_line"] == "old work"


def test_the_trail_words_a_batch_and_never_shows_its_events(home: Home) -> None:
    lead = portal.audit_trail(home, "armoede", portal.Person(LEAD))
    batches = [r for r in lead["records"] if r["action"] == "workspace.executions"]
    assert len(batches) == 2
    text = json.dumps(lead)
    assert SECRET not in text and "code_sha256" not in text and "events" not in text
    words = [auditwords.sentence(r, "/runs/").striptags() for r in reversed(batches)]
    assert words == [
        "b.devries ran 3 cells in poverty.ipynb; a.jansen ran 1 cell in a.ipynb; "
        "d.visser ran 1 cell in a notebook the workspace did not name.",
        "a.jansen restarted 1 kernel; the workspace's bridge turned away 1 request.",
    ]
    viewer = portal.audit_trail(home, "armoede", portal.Person(VIEWER))
    assert not [r for r in viewer["records"] if r["action"] == "workspace.executions"]


def test_the_export_holds_exactly_one_persons_rows(home: Home, tmp_path: Path) -> None:
    result = run_cli(home.root, "audit", "export", "--person", ANALYST, "--format", "csv")
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["person"], r["dossier"], r["event"], r["first_line"]) for r in rows] == [
        (ANALYST, "armoede", "execution", "import polars"),
        (ANALYST, "armoede", "execution", SECRET),
        (ANALYST, "armoede", "execution", "1 / 0"),
        (ANALYST, "mobiliteit", "kernel interrupt", ""),  # a row of its own, in time order
        (ANALYST, "mobiliteit", "execution", "old work"),
    ]
    assert rows[2]["outcome"] == "error"
    interrupt = {k: v for k, v in rows[3].items() if v}
    assert interrupt == {
        "at": at(7).isoformat(),
        "person": ANALYST,
        "dossier": "mobiliteit",
        "path": "m.ipynb",
        "kernel": "k-2",
        "event": "kernel interrupt",
    }
    out = tmp_path / "devries.json"
    result = run_cli(
        home.root, "audit", "export", "--person", ANALYST, "--format", "json", "--out", str(out)
    )
    assert result.exit_code == 0, result.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    exported = json.loads(out.read_text())
    assert [(r["event"], r["first_line"] or "") for r in exported] == [
        (r["event"], r["first_line"]) for r in rows
    ]
    assert exported[3]["first_line"] is None and exported[3]["code_sha256"] is None
    again = run_cli(home.root, "audit", "export", "--person", LEAD, "--out", str(out))
    assert again.exit_code == 1 and "never overwritten" in again.stderr
    assert json.loads(out.read_text()) == exported  # untouched
    record = AuditLog(home).read()[-1]  # the refused file left no record: nothing was exported
    assert record["action"] == "executions.export"
    assert record["details"]["person"] == ANALYST and record["details"]["count"] == 4
    assert record["details"]["kernel_calls"] == 1
    assert record["details"]["dossiers"] == ["armoede", "mobiliteit"]
    trail = portal.audit_trail(home, "mobiliteit", portal.Person(OTHER_ANALYST))
    exports = [r for r in trail["records"] if r["action"] == "executions.export"]
    assert (
        auditwords.sentence(exports[0], "/runs/")
        .striptags()
        .endswith(
            "exported the activity of b.devries (4 executions, 1 kernel call) for an access "
            "request."
        )
    )


def test_only_admins_export_on_the_pages_and_api(home: Home) -> None:
    with pytest.raises(ReportRefused) as refused:
        portal.person_activity(home, portal.Person(LEAD), ANALYST, "csv")
    assert refused.value.reason == "forbidden"
    export = portal.person_activity(home, portal.Person("z.beheer", admin=True), LEAD, "json")
    assert [(r["person"], r["event"]) for r in json.loads(export.data)] == [
        (LEAD, "execution"),
        (LEAD, "kernel restart"),
    ]
    with pytest.raises(ReportRefused) as refused:
        portal.person_activity(home, portal.Person("z.beheer", admin=True), LEAD, "xlsx")
    assert refused.value.fields == {"format": refused.value.fields["format"]}
