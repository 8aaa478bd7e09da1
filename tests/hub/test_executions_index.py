"""The executions index (state/auditindex.py) never disagrees with the audit log it is derived
from: on both stores, as the log grows, after a restart, after the log is put back to an
older copy, and after someone changes the index itself (`audit verify` catches it). And a
record the log holds is never hidden from the pages by what a person's client sent in it."""

from __future__ import annotations

import datetime as dt
import shutil
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from auditstores import STORES, TableLog, log_of, move_to_table
from dossierhub import portal
from dossierhub.state import auditindex
from dossierhub.state.audit import AuditLog
from dossierhub.state.auditindex import KERNELS, ROWS, STATE, ExecutionIndex, Where
from dossierhub.state.executions import executions_from, kernel_events_from, latest_by_cell
from dossierhub.state.home import Home

from executionrecords import append_batch, execute, kernel_call
from helpers import run_cli

LEAD, ANALYST = "a.jansen", "b.devries"
T0 = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC)


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


@pytest.fixture
def logged(home: Path, request: pytest.FixtureRequest, store: str) -> Home:
    """An initialised HOME whose log (in `store`) holds batches of every shape the views
    meet: two dossiers, an outcome in a later batch and one given twice, a refusal, two
    executions at the same moment in different batches, other records between, kernel calls
    (one of a notebook, one at the same moment as an execution)."""
    if store == "postgresql":
        move_to_table(home, request.getfixturevalue("postgres"))
    logged = Home(home)
    grow(logged, 0)
    return logged


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest) -> str:
    return request.param


def grow(home: Home, start: float) -> None:
    """Three batches and a record of something else, from minute `start` on."""
    late = execute(ANALYST, at(start + 3), "1 / 0", cell_id="c3", outcome=None)
    append_batch(
        home,
        "armoede",
        [
            execute(ANALYST, at(start + 1), "import polars", cell_id="c1"),
            execute(LEAD, at(start + 2), "x = 1", cell_id="c1", path="a.ipynb"),
            late,
            execute(ANALYST, at(start + 2), "same moment", cell_id="c2", path=None),
            kernel_call(LEAD, at(start + 2), "restart"),
        ],
    )
    AuditLog(home).append("workspace.open", actor=LEAD, dossier="armoede")
    reply = {"event": "outcome", "kernel": late["kernel"], "msg_id": late["msg_id"]}
    append_batch(
        home,
        "armoede",
        [
            {**reply, "at": at(start + 4).isoformat(), "outcome": "ok"},
            {**reply, "at": at(start + 4).isoformat(), "outcome": "error"},  # the last wins
            {"event": "refused", "at": at(start + 4).isoformat(), "reason": "workspace token"},
            execute(LEAD, at(start + 2), "tie with an earlier batch", cell_id="c2", path=None),
            execute(LEAD, at(start + 5), "again", cell_id="c1"),
            kernel_call(ANALYST, at(start + 4.5), "interrupt", path="poverty.ipynb"),
        ],
    )
    append_batch(
        home,
        "mobiliteit",
        [
            kernel_call(ANALYST, at(start + 5.5), "start", path="m.ipynb", kernel="k-2"),
            execute(ANALYST, at(start + 6), "trips", path="m.ipynb", cell_id="c1", kernel="k-2"),
        ],
    )


# what a page asks, and the count it shows beside the rows
WHERE = [
    (Where(), "dossier"),
    (Where(dossier="armoede"), "person"),
    (Where(dossier="armoede", path="poverty.ipynb"), "person"),
    (Where(person=ANALYST), "path"),
    (Where(dossier="armoede", person=LEAD), "path"),
    (Where(since=at(2), before=at(5)), "person"),
    (Where(dossier="nobody's"), "person"),
]


def assert_in_step(home: Home) -> None:
    """Every read of the index gives what parsing the whole log gives."""
    records = AuditLog(home).read()
    index = ExecutionIndex.for_log(AuditLog(home))
    for where, key in WHERE:
        truth = executions_from(
            records,
            dossier=where.dossier,
            person=where.person,
            path=where.path,
            since=where.since,
            until=where.before,
        )
        assert index.executions(where) == truth, where
        assert index.executions(where, newest_first=True, limit=3) == truth[::-1][:3], where
        assert index.count(where) == len(truth)
        counts = Counter(v for x in truth if (v := getattr(x, key)) is not None)
        assert index.counted(key, where) == dict(counts), (where, key)
        calls = kernel_events_from(
            records,
            dossier=where.dossier,
            person=where.person,
            path=where.path,
            since=where.since,
            until=where.before,
        )
        assert index.kernel_calls(where) == calls, where
        assert index.kernel_calls(where, newest_first=True, limit=2) == calls[::-1][:2], where
        assert index.kernel_call_count(where) == len(calls)
    for dossier, path in (("armoede", "poverty.ipynb"), ("armoede", "a.ipynb")):
        truth = latest_by_cell(executions_from(records, dossier=dossier, path=path))
        assert index.latest_by_cell(dossier, path) == truth
    assert index.check() is None


def test_the_index_gives_what_the_whole_log_gives_as_the_log_grows(logged: Home) -> None:
    assert_in_step(logged)
    everything = ExecutionIndex.for_log(AuditLog(logged)).executions(Where())
    assert [x.outcome for x in everything if x.first_line == "1 / 0"] == ["error"]
    calls = ExecutionIndex.for_log(AuditLog(logged)).kernel_calls(Where(dossier="armoede"))
    assert [(x.person, x.action, x.path) for x in calls] == [
        (LEAD, "restart", None),
        (ANALYST, "interrupt", "poverty.ipynb"),
    ]
    grow(logged, 10)  # read since: only the new records are taken in
    assert_in_step(logged)
    assert len(ExecutionIndex.for_log(AuditLog(logged)).executions(Where())) == 2 * 7


def test_after_a_restart_the_index_goes_on_from_where_it_was(
    logged: Home, caplog: pytest.LogCaptureFixture
) -> None:
    """A restarted service finds the index it left in its store (not rebuilt: no warning)
    and takes in only what was appended meanwhile. Nothing of the index lives in a process
    but the note that its tables exist, forgotten here as a restart forgets it."""
    assert_in_step(logged)
    grow(logged, 10)
    auditindex._schema_made.clear()
    restarted = ExecutionIndex.for_log(AuditLog(Home(logged.root)))
    assert restarted.count(Where()) == 14
    assert_in_step(logged)
    assert "rebuilt" not in caplog.text


def test_a_log_put_back_to_an_older_copy_is_what_the_index_shows(
    logged: Home, store: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The log rolled back (an older copy of audit/ or of the table put back): the
    executions it no longer holds leave the pages, and so do those of a different history
    appended after the rollback at the same record numbers."""
    assert_in_step(logged)
    older = log_of(logged.root)
    kept_lines, kept_head = older.lines(), older.head()
    copy = logged.root.parent / "audit-copy"
    if store == "file":
        shutil.copy2(logged.audit_log_file, copy)
    grow(logged, 10)
    assert_in_step(logged)
    if store == "file":
        shutil.copy2(copy, logged.audit_log_file)
    else:
        assert isinstance(older, TableLog)
        older.write(kept_lines)
    older.write_head(kept_head)
    index = ExecutionIndex.for_log(AuditLog(logged))
    assert len(index.executions(Where())) == 7  # the rolled-back ones are gone
    assert "the index is rebuilt from the log" in caplog.text
    assert_in_step(logged)
    append_batch(logged, "armoede", [execute(LEAD, at(30), "another history")])
    assert_in_step(logged)


def test_an_index_changed_outside_dossierhub_fails_verify_and_is_rebuilt(
    logged: Home, store: str
) -> None:
    """Someone who can write the index (HOME/audit, or the database's password) names
    another person on an execution: `audit verify` says so, rebuilds it, and the pages name
    the right person again."""
    show = portal.my_executions
    mine = show(logged, portal.Person(LEAD), portal.ExecutionFilter())
    assert run_cli(logged.root, "audit", "verify").exit_code == 0
    forge = f"UPDATE {ROWS} SET person = '{ANALYST}' WHERE person = '{LEAD}'"
    if store == "file":
        with sqlite3.connect(logged.audit_index_file) as conn:
            conn.execute(forge)
    else:
        table = log_of(logged.root)
        assert isinstance(table, TableLog)
        table.sql(forge)
    assert show(logged, portal.Person(LEAD), portal.ExecutionFilter())["total"] == 0
    result = run_cli(logged.root, "audit", "verify")
    assert result.exit_code == 1
    assert "the executions index differs from the log" in result.stderr
    assert "it was rebuilt from the log" in result.stderr
    assert show(logged, portal.Person(LEAD), portal.ExecutionFilter()) == mine
    again = run_cli(logged.root, "audit", "verify")
    assert again.exit_code == 0 and "executions index: in step with the log" in again.stdout
    # the same for a kernel call: who restarted a colleague's kernel is not rewritten either
    sql_of(logged, store, f"UPDATE {KERNELS} SET person = '{ANALYST}' WHERE person = '{LEAD}'")
    result = run_cli(logged.root, "audit", "verify")
    assert result.exit_code == 1
    assert "the executions index differs from the log at its kernel call 1" in result.stderr
    calls = ExecutionIndex.for_log(AuditLog(logged)).kernel_calls(Where(person=LEAD))
    assert [x.action for x in calls] == ["restart"]


def sql_of(home: Home, store: str, statement: str) -> None:
    """Run `statement` on the index where it is kept, as someone outside dossierhub would."""
    if store == "file":
        with sqlite3.connect(home.audit_index_file) as conn:
            conn.execute(statement)
    else:
        table = log_of(home.root)
        assert isinstance(table, TableLog)
        table.sql(statement)


def test_an_index_made_before_it_held_kernel_calls_is_rebuilt_at_its_next_read(
    logged: Home, store: str
) -> None:
    """An index an earlier dossierhub kept (format 1: executions only, no table of kernel
    calls) is rebuilt from the log at the first read after the upgrade, with no step by the
    admin: the pages then list the kernel calls the log held all along."""
    assert_in_step(logged)
    sql_of(logged, store, f"DROP TABLE {KERNELS}")
    sql_of(logged, store, f"UPDATE {STATE} SET version = 1")
    auditindex._schema_made.clear()  # the upgraded service starts afresh
    upgraded = ExecutionIndex.for_log(AuditLog(Home(logged.root)))
    assert upgraded.kernel_call_count(Where()) == 3
    assert_in_step(logged)


@pytest.mark.parametrize("store", ["file"])
def test_a_cell_id_with_a_line_separator_hides_nothing(logged: Home) -> None:
    """A cell id is the client's claim: a member's page can send one holding U+2028, which
    the log keeps as is (JSON does not escape it). The file log was split there too, so that
    batch vanished from every page and `audit verify` called the log broken."""
    append_batch(
        logged,
        "armoede",
        [execute(ANALYST, at(20), "hidden work", cell_id="c\u2028x", path="hide.ipynb")],
    )
    found = portal.my_executions(logged, portal.Person(ANALYST), portal.ExecutionFilter())
    assert "hidden work" in [row["first_line"] for row in found["executions"]]
    result = run_cli(logged.root, "audit", "verify")
    assert result.exit_code == 0, result.stderr
    assert_in_step(logged)


@pytest.mark.parametrize("store", ["file"])
@pytest.mark.parametrize("damage", ["not a database", "cannot be opened"])
def test_an_index_that_cannot_be_used_changes_nothing_the_pages_show(
    logged: Home, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The index file overwritten with something else is made anew; one that cannot be
    opened at all (here a folder in its place) leaves the pages reading the log."""
    assert_in_step(logged)
    index_file = logged.audit_index_file
    for suffix in ("", "-wal", "-shm"):
        Path(f"{index_file}{suffix}").unlink(missing_ok=True)
    if damage == "not a database":
        index_file.write_bytes(b"\x00" * 4096)
    else:
        index_file.mkdir()
    assert_in_step(logged)
    said = "made anew from the log" if damage == "not a database" else "from the log in memory"
    assert said in caplog.text


def test_the_trail_reads_the_log_once_and_still_shows_a_broken_one(applied_home: Path) -> None:
    """The audit trail verifies and reads in one pass; with the chain broken (a record
    edited) it still shows the records, and says the chain is broken where."""
    home = Home(applied_home)
    append_batch(home, "armoede", [execute(ANALYST, at(1), "x = 1", cell_id="c1")])
    trail = portal.audit_trail(home, "armoede", portal.Person(LEAD))
    assert trail["chain"]["ok"] and trail["records"][0]["action"] == "workspace.executions"
    lines = home.audit_log_file.read_text().split("\n")
    lines[1] = lines[1].replace('"action":', '"action": ', 1)  # same record, other bytes
    home.audit_log_file.write_text("\n".join(lines))
    broken = portal.audit_trail(home, "armoede", portal.Person(LEAD))
    assert not broken["chain"]["ok"] and broken["chain"]["first_bad"] == 3
    assert [r["seq"] for r in broken["records"]] == [r["seq"] for r in trail["records"]]
