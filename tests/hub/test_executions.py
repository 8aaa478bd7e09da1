"""Execution records: a bridge's batches reach the audit log once each, as one chained record
per batch, and read back as rows with their outcomes, per person, notebook and time; the
export for an access request holds exactly one person's rows."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from dossierhub.state.audit import AuditLog
from dossierhub.state.executions import (
    ACTION,
    EXPORT_COLUMNS,
    Ingester,
    SpoolError,
    executions_from,
    export_text,
    latest_by_cell,
    refusals_from,
    spooled,
    write_batch,
)
from dossierhub.state.home import Home

T0 = dt.datetime(2026, 12, 2, 9, 0, tzinfo=dt.UTC)


def execute(
    person: str, cell: str, minute: int, *, msg: str | None = None, path: str = "poverty.ipynb"
) -> dict[str, Any]:
    return {
        "event": "execute",
        "at": (T0 + dt.timedelta(minutes=minute)).isoformat(),
        "person": person,
        "kernel": "k1",
        "channel": "shell",
        "kind": "execute",
        "msg_id": msg or f"{person}-{cell}-{minute}",
        "cell_id": cell,
        "path": path,
        "code_sha256": "ab" * 32,
        "first_line": f"x = {minute}",
    }


@pytest.fixture
def initialised(applied_home: Path, tmp_path: Path) -> Home:
    """A copy of the session's applied HOME: its audit log has a genesis and keys."""
    import shutil

    root = tmp_path / "home"
    shutil.copytree(applied_home, root, symlinks=True)
    return Home(root)


def test_a_batch_is_spooled_root_only_and_whole(initialised: Home) -> None:
    path = write_batch(initialised, "armoede", "r1-00000001", [execute("a.jansen", "c1", 0)])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for folder in (path.parent, path.parent.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert json.loads(path.read_text())["events"][0]["person"] == "a.jansen"
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temporary left


@pytest.mark.parametrize(
    ("dossier", "batch", "change", "named"),
    [
        ("../armoede", "r1-1", {}, "not a dossier id"),
        ("armoede", "../r1", {}, "not a batch id"),
        ("armoede", "r1-1", {"outputs": ["42"]}, "outputs"),  # outputs are never recorded
        ("armoede", "r1-1", {"code_sha256": "not hex"}, "code_sha256"),
        ("armoede", "r1-1", {"person": None}, "person"),
    ],
)
def test_a_batch_the_service_would_refuse_is_refused_at_once(
    initialised: Home, dossier: str, batch: str, change: dict[str, Any], named: str
) -> None:
    event = {**execute("a.jansen", "c1", 0), **change}
    with pytest.raises(SpoolError, match=named):
        write_batch(initialised, dossier, batch, [event])
    assert spooled(initialised) == []


def test_each_batch_becomes_one_chained_record_once(initialised: Home) -> None:
    log = AuditLog(initialised)
    before = len(log.read())
    write_batch(
        initialised,
        "armoede",
        "r1-00000001",
        [execute("a.jansen", "c1", 0), execute("b.devries", "c2", 1)],
    )
    write_batch(initialised, "armoede", "r1-00000002", [execute("a.jansen", "c1", 2)])
    assert Ingester(log).ingest(initialised) == 2
    records = [r for r in log.read()[before:] if r["action"] == ACTION]
    assert [r["details"]["batch"] for r in records] == ["r1-00000001", "r1-00000002"]
    assert records[0]["details"]["people"] == ["a.jansen", "b.devries"]
    assert records[0]["details"]["count"] == 2
    assert spooled(initialised) == []
    assert log.verify().ok

    # the service stopped after appending and before removing the file: taken once only
    again = write_batch(initialised, "armoede", "r1-00000002", [execute("a.jansen", "c1", 2)])
    assert Ingester(log).ingest(initialised) == 0
    assert not again.exists()
    assert len([r for r in log.read() if r["action"] == ACTION]) == 2


def test_a_record_altered_in_the_log_fails_verify(initialised: Home) -> None:
    log = AuditLog(initialised)
    write_batch(initialised, "armoede", "r1-00000001", [execute("b.devries", "c1", 0)])
    Ingester(log).ingest(initialised)
    lines = initialised.audit_log_file.read_text().splitlines()
    forged = [line.replace('"person": "b.devries"', '"person": "a.jansen"') for line in lines]
    assert forged != lines
    initialised.audit_log_file.write_text("\n".join(forged) + "\n")
    assert not AuditLog(initialised).verify().ok


def test_an_unreadable_batch_is_set_aside_not_lost(initialised: Home) -> None:
    folder = initialised.execution_spool_dir("armoede")
    folder.mkdir(parents=True)
    (folder / "r1-00000001.json").write_text('{"format": 1, "dossier": "armoede"')
    write_batch(initialised, "armoede", "r1-00000002", [execute("a.jansen", "c1", 0)])
    assert Ingester(AuditLog(initialised)).ingest(initialised) == 1
    assert (folder / "r1-00000001.json.bad").exists()


def records(*batches: list[dict[str, Any]], dossier: str = "armoede") -> list[dict[str, Any]]:
    return [
        {"action": ACTION, "details": {"dossier": dossier, "batch": f"b{i}", "events": events}}
        for i, events in enumerate(batches)
    ]


def test_rows_join_outcomes_and_filter() -> None:
    trail = records(
        [execute("a.jansen", "c1", 0, msg="m1"), execute("b.devries", "c2", 5, msg="m2")],
        [
            {
                "event": "outcome",
                "at": T0.isoformat(),
                "kernel": "k1",
                "msg_id": "m1",
                "outcome": "error",
            },
            execute("a.jansen", "c1", 10, msg="m3", path="other.ipynb"),
        ],
    ) + records([execute("a.jansen", "c9", 3)], dossier="mobiliteit")
    rows = executions_from(trail, dossier="armoede")
    assert [(r.person, r.outcome) for r in rows] == [
        ("a.jansen", "error"),
        ("b.devries", None),
        ("a.jansen", None),
    ]
    assert [r.msg_id for r in executions_from(trail, person="a.jansen", dossier="armoede")] == [
        "m1",
        "m3",
    ]
    assert [r.msg_id for r in executions_from(trail, path="other.ipynb")] == ["m3"]
    window = executions_from(
        trail, since=T0 + dt.timedelta(minutes=1), until=T0 + dt.timedelta(minutes=10)
    )
    assert [r.msg_id for r in window] == ["a.jansen-c9-3", "m2"]  # oldest first


def test_latest_by_cell_names_who_ran_each_cell_last() -> None:
    trail = records(
        [execute("a.jansen", "c1", 0), execute("b.devries", "c2", 1)],
        [execute("b.devries", "c1", 2)],
    )
    latest = latest_by_cell(executions_from(trail))
    assert {cell: row.person for cell, row in latest.items()} == {
        "c1": "b.devries",
        "c2": "b.devries",
    }


def test_the_export_holds_exactly_one_persons_rows_and_is_safe_in_a_spreadsheet() -> None:
    sneaky = {**execute("b.devries", "c2", 1), "first_line": '=HYPERLINK("http://x")'}
    trail = records([execute("a.jansen", "c1", 0), sneaky, execute("b.devries", "c3", 2)])
    mine = executions_from(trail, person="b.devries")
    table = list(csv.DictReader(io.StringIO(export_text(mine, "csv"))))
    assert tuple(table[0]) == EXPORT_COLUMNS
    assert [row["person"] for row in table] == ["b.devries", "b.devries"]
    assert table[0]["first_line"].startswith("'=")  # shown as text, never a formula
    as_json = json.loads(export_text(mine, "json"))
    assert [row["cell_id"] for row in as_json] == ["c2", "c3"]
    assert as_json[0]["first_line"] == '=HYPERLINK("http://x")'  # JSON keeps it as it was


def test_refusals_read_back_per_dossier() -> None:
    refused = {
        "event": "refused",
        "at": T0.isoformat(),
        "person": None,
        "kernel": "k1",
        "reason": "a kernel channel opened with the workspace's own token",
    }
    trail = records([execute("a.jansen", "c1", 0), refused]) + records(
        [{**refused, "reason": "other"}], dossier="mobiliteit"
    )
    found = refusals_from(trail, dossier="armoede")
    assert [(r.dossier, r.kernel, r.reason) for r in found] == [
        ("armoede", "k1", "a kernel channel opened with the workspace's own token")
    ]
    assert len(refusals_from(trail)) == 2
    assert [r.person for r in executions_from(trail)] == ["a.jansen"]  # not a refusal


def test_a_batch_that_cannot_be_appended_holds_up_only_its_dossier(
    initialised: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = AuditLog(initialised)
    write_batch(initialised, "armoede", "r1-00000001", [execute("a.jansen", "c1", 0)])
    write_batch(initialised, "armoede", "r1-00000002", [execute("a.jansen", "c1", 1)])
    write_batch(initialised, "mobiliteit", "r2-00000001", [execute("h.deboer", "c1", 2)])
    ingester = Ingester(log)
    real = log.append

    def failing_for_armoede(action: str, actor: str | None = None, **details: Any) -> Any:
        if details.get("dossier") == "armoede":
            raise OSError("the database is away")
        return real(action, actor, **details)

    monkeypatch.setattr(log, "append", failing_for_armoede)
    assert ingester.ingest(initialised) == 1  # mobiliteit's went in
    assert [p.name for p in spooled(initialised)] == ["r1-00000001.json", "r1-00000002.json"]
    monkeypatch.setattr(log, "append", real)
    assert ingester.ingest(initialised) == 2  # in order, once the log takes them again
    batches = [r["details"]["batch"] for r in log.read() if r["action"] == ACTION]
    assert batches == ["r2-00000001", "r1-00000001", "r1-00000002"]
