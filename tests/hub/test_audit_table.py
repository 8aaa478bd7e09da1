"""The audit log in PostgreSQL (`audit.store: postgresql`, docs/audit.md): appends from many
processes serialized by the database, `audit migrate` moving a real file log, `audit verify`
saying the same on both stores, and appends with the audit key file alone. The tampering
tests run on the table too: tests/hub/test_audit.py and test_audit_witness.py, over STORES."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from auditstores import (
    RECORDS,
    TableLog,
    log_of,
    move_to_table,
    plant_succeeded_run,
    release,
    table_settings,
    write_settings,
)
from pg import Postgres

from helpers import run_cli

# 8 writers, each holding the head row's lock many times while the others wait on it: a
# lock that let two writers read one head breaks the chain (or trips `seq`'s key, failing a
# writer) within the first few dozen appends, so 200 each test it as 1000 each did, in a
# fifth of the time (checked with the lock taken out: each run at 200 failed)
WRITERS, EACH = 8, 200

APPENDER = """
import os, sys, time
from pathlib import Path
from dossierhub.state.audit import AuditLog, set_channel
from dossierhub.state.home import Home
home, go, n, each = Home(Path(sys.argv[1])), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
set_channel("service")
(go.parent / f"ready-{n}").touch()
while not go.exists():
    time.sleep(0.005)
for i in range(each):
    AuditLog(home).append("test.append", writer=n, i=i)
"""


@pytest.fixture
def table_home(home: Path, postgres: Postgres) -> Path:
    move_to_table(home, postgres)
    return home


@pytest.mark.slow
def test_eight_processes_appending_at_once_make_one_chain(
    table_home: Path,
) -> None:
    go = table_home.parent / "go"
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", APPENDER, str(table_home), str(go), str(n), str(EACH)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(WRITERS)
    ]
    # every interpreter up and waiting (its imports done), then all start at once: no fixed
    # pause, which was too long on an idle machine and too short on a loaded one
    deadline = time.monotonic() + 120
    while not all((go.parent / f"ready-{n}").exists() for n in range(WRITERS)):
        assert all(w.poll() is None for w in writers), "a writer ended before it started"
        assert time.monotonic() < deadline, "the writers were not up within 120 s"
        time.sleep(0.01)
    started = time.monotonic()
    go.touch()
    for writer in writers:
        _, stderr = writer.communicate(timeout=1200)
        assert writer.returncode == 0, stderr
    took = time.monotonic() - started
    before = 2  # the genesis and init moved from the file
    result = run_cli(table_home, "audit", "verify")
    assert result.exit_code == 0, result.stderr
    assert f"audit log ok: {before + WRITERS * EACH} records, chain intact" in result.stdout
    records = [json.loads(line) for line in log_of(table_home).lines()]
    appended = [r["details"] for r in records if r["action"] == "test.append"]
    assert len(appended) == WRITERS * EACH
    for n in range(WRITERS):  # each writer's records all there, in its own order
        assert [d["i"] for d in appended if d["writer"] == str(n)] == list(range(EACH))
    # interleaved: the writers really ran at once, the database put them in one line (one
    # after another would be WRITERS unbroken runs; a writer may well be alone first for a
    # while, so the whole line is counted, not its start)
    runs = 1 + sum(a["writer"] != b["writer"] for a, b in itertools.pairwise(appended))
    assert runs > 2 * WRITERS, f"the writers ran one after another: {runs} runs"
    print(f"{WRITERS}x{EACH} appends in {took:.1f}s: {WRITERS * EACH / took:.0f}/s, {runs} runs")


def verify_output(home: Path) -> str:
    result = run_cli(home, "audit", "verify")
    assert result.exit_code == 0, result.stderr
    return result.stdout


def test_migrate_moves_a_released_log_and_verify_says_the_same(
    released_home: Path, postgres: Postgres
) -> None:
    home = released_home
    before = verify_output(home)
    assert "releases: 1 carry a head, each in the log" in before
    file_lines = log_of(home).lines()
    settings = table_settings(home, postgres)
    write_settings(home, settings)
    moved = run_cli(home, "audit", "migrate")
    assert moved.exit_code == 0, moved.stderr
    assert f"moved {len(file_lines)} records from audit/audit.jsonl to table {RECORDS}" in (
        moved.stdout
    )
    assert before in moved.stdout  # verified there, with the same words
    assert "next: set audit.store: postgresql in settings.yaml" in moved.stdout
    settings["audit"] = {"store": "postgresql"}
    write_settings(home, settings)
    table = log_of(home)
    assert isinstance(table, TableLog) and table.lines() == file_lines
    assert verify_output(home) == before  # the same output, read from the table
    # a second run moves nothing and says so
    again = run_cli(home, "audit", "migrate")
    assert again.exit_code == 0, again.stderr
    assert "already holds every record of audit/audit.jsonl: none moved" in again.stdout
    assert "next:" not in again.stdout
    assert table.lines() == file_lines
    # the table is the store now: appends go there and verify
    assert run_cli(home, "init").exit_code == 0
    assert len(table.lines()) == len(file_lines) + 1
    assert log_of_file(home) == file_lines
    assert verify_output(home).startswith(f"audit log ok: {len(file_lines) + 1} records")
    # the file log and the table have parted: a third run refuses, changing nothing
    refused = run_cli(home, "audit", "migrate")
    assert refused.exit_code == 1
    assert "already holds another log" in refused.stderr
    assert "nothing was changed" in refused.stderr
    assert len(table.lines()) == len(file_lines) + 1


def log_of_file(home: Path) -> list[str]:
    return (home / "audit" / "audit.jsonl").read_text().splitlines()


@pytest.fixture
def released_home(applied_home: Path, tmp_path: Path) -> Path:
    """An applied HOME with a run released under an audit head (witness 2 in the log)."""
    home = tmp_path / "home"
    shutil.copytree(applied_home, home, symlinks=True)
    plant_succeeded_run(home)
    release(home)
    return home


def test_migrate_refuses_a_broken_log_and_leaves_the_table_empty(
    home: Path, postgres: Postgres
) -> None:
    settings = table_settings(home, postgres)
    write_settings(home, settings)
    lines = log_of_file(home)
    record = json.loads(lines[-1])
    record["actor"] = "mallory"
    lines[-1] = json.dumps(record, sort_keys=True)
    (home / "audit" / "audit.jsonl").write_text("".join(line + "\n" for line in lines))
    result = run_cli(home, "audit", "migrate")
    assert result.exit_code == 1
    assert "the file log is broken at record 2: record 2 was changed" in result.stderr
    assert "nothing was changed" in result.stderr
    assert log_of_file(home) == lines  # the file as it was
    settings["audit"] = {"store": "postgresql"}
    write_settings(home, settings)
    empty = run_cli(home, "audit", "verify")  # nothing reached the table
    assert "audit log broken at record 1: the audit log is missing or empty" in empty.stderr


def test_a_database_that_refuses_the_password_stops_migrate_without_showing_it(
    home: Path, postgres: Postgres
) -> None:
    settings = table_settings(home, postgres)
    wrong = "Wr0ng-pässword-Zq8"
    Path(settings["hub"]["db_password_file"]).write_text(wrong)
    write_settings(home, settings)
    before = log_of_file(home)
    result = run_cli(home, "audit", "migrate")
    assert result.exit_code == 1
    port = postgres.port
    assert f"the audit log's table in jupyterhub@127.0.0.1:{port}/audit_" in result.stderr
    assert "password authentication failed" in result.stderr
    assert wrong not in result.stderr + result.stdout
    assert log_of_file(home) == before
    # the same for an append once the table is the store: one sentence, no traceback
    settings["audit"] = {"store": "postgresql"}
    write_settings(home, settings)
    appended = run_cli(home, "init")
    assert appended.exit_code == 1 and "password authentication failed" in appended.stderr
    assert wrong not in appended.stderr + appended.stdout


def test_the_hub_and_service_append_with_the_audit_key_file_alone(table_home: Path) -> None:
    """What a pod gets (audit.key_file, a Secret): appends authenticated as with the master
    key, which the process never reads; the key file gives no pseudonym key."""
    home = table_home
    key_file = home.parent / "audit.keys"
    written = run_cli(home, "audit", "key", "--out", str(key_file))
    assert written.exit_code == 0, written.stderr
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    master = (home / "secrets" / "master.key").read_text().strip()
    assert master not in key_file.read_text()
    again = run_cli(home, "audit", "key", "--out", str(key_file))
    assert again.exit_code == 1 and "is never overwritten" in again.stderr
    settings = yaml.safe_load((home / "settings.yaml").read_text())
    settings["audit"]["key_file"] = str(key_file)
    write_settings(home, settings)
    hidden = home.parent / "master.key.away"
    (home / "secrets" / "master.key").rename(hidden)  # the pod has no master key
    code = (
        "from pathlib import Path; from dossierhub.state.audit import AuditLog, set_channel;"
        "from dossierhub.state.home import Home; set_channel('service');"
        f"AuditLog(Home(Path({str(home)!r})))"
        ".append('workspace.open', actor='anna', dossier='armoede')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    in_pod = verify_output(home)  # verified with the key file alone
    assert "audit log ok: 3 records, chain intact\n" in in_pod
    hidden.rename(home / "secrets" / "master.key")
    del settings["audit"]["key_file"]
    write_settings(home, settings)
    assert verify_output(home) == in_pod  # and with the master key: the same keys
    # a key file that is not one: the append goes on, unauthenticated; verify cannot check
    # MACs with it and says so, and with the key names the record
    key_file.write_text("{}")
    settings["audit"]["key_file"] = str(key_file)
    write_settings(home, settings)
    assert run_cli(home, "init").exit_code == 0
    unchecked = verify_output(home)
    assert "(head not authenticated: audit key file unavailable)" in unchecked
    del settings["audit"]["key_file"]
    write_settings(home, settings)
    broken = run_cli(home, "audit", "verify")
    assert "audit log broken at record 4: record 4 was changed" in broken.stderr


def test_the_table_needs_the_hub_on_postgresql(home: Path) -> None:
    write_settings(home, {"audit": {"store": "postgresql"}})
    result = run_cli(home, "audit", "verify")
    assert result.exit_code == 1
    assert "audit.store postgresql keeps the log in the hub's PostgreSQL database" in (
        result.stderr
    )
    # a settings.yaml that does not ask for the table leaves appends on the file, as before
    write_settings(home, {"audit": {"witness": "sometimes"}})
    assert run_cli(home, "init").exit_code == 0
    assert json.loads(log_of_file(home)[-1])["action"] == "init"


def test_an_append_survives_its_pooled_connection_being_cut(
    table_home: Path, postgres: Postgres
) -> None:
    """A database restart (or a proxy dropping idle connections) breaks the pool's connection:
    the next append notices at its first statement, before writing, and goes on with a new
    one (no ping before every append)."""
    from dossierhub.state.audit import AuditLog
    from dossierhub.state.home import Home

    log = Home(table_home)
    AuditLog(log).append("test.before")
    database = yaml_settings(table_home)["hub"]["db_url"].rsplit("/", 1)[1]
    cut = postgres.sql(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        f"WHERE datname = '{database}' AND pid <> pg_backend_pid()"
    )
    assert int(cut) >= 1  # the pooled connection was there, and is gone
    AuditLog(log).append("test.after")
    assert verify_output(table_home).startswith("audit log ok: 4 records, chain intact")


def test_a_read_survives_its_pooled_connection_being_cut(
    table_home: Path, postgres: Postgres
) -> None:
    """The service reads the log for its pages for days: after PostgreSQL restarted under it,
    the first page still shows the trail (the read is made once more on a new connection)."""
    from dossierhub.state.audit import AuditLog
    from dossierhub.state.home import Home

    log = AuditLog(Home(table_home))
    log.append("test.read-before")
    before = [r["action"] for r in log.read()]
    database = yaml_settings(table_home)["hub"]["db_url"].rsplit("/", 1)[1]
    cut = postgres.sql(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        f"WHERE datname = '{database}' AND pid <> pg_backend_pid()"
    )
    assert int(cut) >= 1
    assert [r["action"] for r in log.read()] == before
    assert before[-1] == "test.read-before"


def yaml_settings(home: Path) -> dict:
    return yaml.safe_load((home / "settings.yaml").read_text())
