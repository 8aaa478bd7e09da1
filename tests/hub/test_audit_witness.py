"""An audit log that cannot be wiped or rolled back silently (docs/audit.md).

The attacker here can write HOME but does not hold the master key: they delete audit/, cut the
log, or put back an older copy of audit/ (a consistent log and head). Each attack runs for
real against a HOME built by the product's own commands, and is judged by the real CLI.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from auditstores import (
    RECORDS,
    RUN,
    STATE,
    TableLog,
    log_of,
    move_to_table,
    plant_succeeded_run,
    release,
)

from helpers import run_cli, run_cli_process


def log_lines(home: Path) -> list[str]:
    return log_of(home).lines()  # the file, or the table (tests/auditstores.py)


def records(home: Path) -> list[dict]:
    return [json.loads(line) for line in log_lines(home)]


def digest(line: str) -> str:
    return hashlib.sha256(line.encode()).hexdigest()


def verify(home: Path, *args: str) -> tuple[int, str, str]:
    result = run_cli(home, "audit", "verify", *args)
    return result.exit_code, result.stdout, result.stderr


def snapshot(home: Path, name: str) -> Path:
    """What an attacker keeps: a copy of audit/ (log and head together, so they agree)."""
    copy = home.parent / name
    shutil.copytree(home / "audit", copy)
    return copy


def restore(home: Path, copy: Path) -> None:
    shutil.rmtree(home / "audit")
    shutil.copytree(copy, home / "audit")


def write_settings(home: Path, audit: dict) -> None:
    (home / "settings.yaml").write_text(json.dumps({"audit": audit}))  # JSON is YAML


# ---------------------------------------------------------------- genesis


def test_init_begins_the_log_with_an_authenticated_genesis(tmp_path: Path) -> None:
    home = tmp_path / "new"
    assert run_cli(home, "init").exit_code == 0
    first, second = records(home)
    assert first["seq"] == 1 and first["action"] == "audit.genesis" and first["mac"]
    details = first["details"]
    assert details["reason"] == "init" and details["home"] == str(home)
    assert len(details["installation"]) == 16
    key = (home / "secrets" / "master.key").read_text().strip()
    assert details["installation"] not in key  # an id, not a piece of the key
    assert second["action"] == "init"
    code, out, _ = verify(home)
    assert code == 0
    assert "audit log ok: 2 records, chain intact" in out
    assert f"genesis: record 1 (init, {first['time']}), installation " in out
    # init again: no second genesis
    assert run_cli(home, "init").exit_code == 0
    assert [r["action"] for r in records(home)].count("audit.genesis") == 1


def delete_audit_folder(home: Path) -> None:
    shutil.rmtree(home / "audit")


def delete_log_and_head(home: Path) -> None:
    (home / "audit" / "audit.jsonl").unlink()
    (home / "audit" / "head.json").unlink()


def empty_log_and_delete_head(home: Path) -> None:
    (home / "audit" / "audit.jsonl").write_text("")
    (home / "audit" / "head.json").unlink()


def drop_the_tables(home: Path) -> None:
    table = log_of(home)
    assert isinstance(table, TableLog)
    table.sql(f"DROP TABLE {RECORDS}, {STATE}")


def delete_every_row(home: Path) -> None:
    table = log_of(home)
    assert isinstance(table, TableLog)
    table.sql(f"DELETE FROM {RECORDS}")
    table.sql(f"DELETE FROM {STATE}")


@pytest.mark.parametrize(
    ("store", "wipe"),
    [
        ("file", delete_audit_folder),
        ("file", delete_log_and_head),
        ("file", empty_log_and_delete_head),
        ("postgresql", drop_the_tables),
        ("postgresql", delete_every_row),
    ],
)
def test_a_wiped_log_fails_verify_and_stays_failed(
    home: Path, store: str, wipe: Callable[[Path], None], request: pytest.FixtureRequest
) -> None:
    if store == "postgresql":
        move_to_table(home, request.getfixturevalue("postgres"))
    assert run_cli(home, "apply").exit_code == 0
    wipe(home)
    code, _, err = verify(home)
    assert code == 1
    assert (
        "audit log broken at record 1: the audit log is missing or empty, yet this HOME was "
        in (err)
    )
    assert "the log was deleted" in err
    # dossierhub goes on recording (nothing is lost from now on), and init, run again by a
    # well-meaning admin, does not make the deletion pass
    assert run_cli(home, "init").exit_code == 0
    assert run_cli(home, "apply").exit_code == 0
    assert [r["action"] for r in records(home)] == ["init", "apply"]
    code, _, err = verify(home)
    assert code == 1
    assert "audit log broken at record 1: the log has no genesis record" in err


def as_written_without_genesis(home: Path) -> None:
    """The log as a dossierhub from before genesis records wrote it: the same records,
    chained and authenticated under the master key, without the genesis."""
    import hmac

    master = bytes.fromhex((home / "secrets" / "master.key").read_text().strip())
    key = hmac.new(master, b"dossierhub audit head", hashlib.sha256).digest()
    prev, lines = "0" * 64, []
    for record in records(home)[1:]:
        record.pop("mac")
        record.update(seq=len(lines) + 1, prev=prev)
        body = json.dumps(record, sort_keys=True, ensure_ascii=False)
        record["mac"] = hmac.new(key, body.encode(), hashlib.sha256).hexdigest()
        lines.append(json.dumps(record, sort_keys=True, ensure_ascii=False))
        prev = digest(lines[-1])
    (home / "audit" / "audit.jsonl").write_text("".join(line + "\n" for line in lines))
    head = {"seq": len(lines), "hash": prev}
    head["mac"] = hmac.new(key, f"{len(lines)}:{prev}".encode(), hashlib.sha256).hexdigest()
    (home / "audit" / "head.json").write_text(json.dumps(head))


def test_a_log_from_before_genesis_records_needs_one_explicit_genesis(home: Path) -> None:
    assert run_cli(home, "apply").exit_code == 0
    as_written_without_genesis(home)
    count = len(log_lines(home))
    code, _, err = verify(home)
    assert code == 1 and "no genesis record" in err and "dossierhub audit genesis" in err
    before = snapshot(home, "before-genesis")

    adopted = run_cli(home, "audit", "genesis")
    assert adopted.exit_code == 0, adopted.stderr
    assert f"genesis written: record {count + 1}" in adopted.stdout
    assert f"it vouches for the {count} records before it" in adopted.stderr
    genesis = records(home)[-1]
    assert genesis["action"] == "audit.genesis" and genesis["details"]["reason"] == "adopted"
    code, out, _ = verify(home)
    assert code == 0 and f"records 1 to {count} predate it" in out

    again = run_cli(home, "audit", "genesis")
    assert again.exit_code == 1
    assert f"already has its genesis (record {count + 1}" in again.stderr
    restore(home, before)  # the copy from before the adoption no longer passes
    assert verify(home)[0] == 1


def test_no_genesis_is_written_over_a_broken_log(home: Path) -> None:
    as_written_without_genesis(home)
    lines = log_lines(home)
    lines[0] = lines[0].replace('"init"', '"lnit"')
    (home / "audit" / "audit.jsonl").write_text("".join(line + "\n" for line in lines))
    result = run_cli(home, "audit", "genesis")
    assert result.exit_code == 1
    assert "audit log broken at record 1: record 1 was changed" in result.stderr
    assert "no genesis is written over a broken log" in result.stderr
    assert "audit.genesis" not in (home / "audit" / "audit.jsonl").read_text()


def test_a_genesis_needs_the_master_key(home: Path) -> None:
    shutil.rmtree(home / "audit")
    (home / "secrets" / "master.key").unlink()
    result = run_cli(home, "audit", "genesis")
    assert result.exit_code == 1
    assert "secrets/master.key is missing or unreadable" in result.stderr
    assert not (home / "audit" / "audit.jsonl").exists()


# ---------------------------------------------------------------- releases carry the head


@pytest.fixture
def applied(applied_home: Path, tmp_path: Path) -> Path:
    """A fresh copy of an applied HOME, with a succeeded run of a.jansen's (as `report run`
    leaves it: tests/e2e/test_audit_rollback.py releases a real one)."""
    root = tmp_path / "home"
    shutil.copytree(applied_home, root, symlinks=True)
    plant_succeeded_run(root)
    return root


def test_a_release_carries_the_head_it_was_released_under(applied: Path) -> None:
    head = release(applied)["audit_head"]
    lines = log_lines(applied)
    assert set(head) == {"seq", "hash", "mac"}
    assert head["hash"] == digest(lines[head["seq"] - 1])
    following = json.loads(lines[head["seq"]])
    assert following["action"] == "report.release" and following["details"]["run"] == RUN
    # not head.json's MAC: a release.json (readable by the dossier's group) cannot stand in
    # for the head of a cut log
    assert head["mac"] != json.loads((applied / "audit" / "head.json").read_text())["mac"]
    code, out, _ = verify(applied)
    assert code == 0 and "releases: 1 carry a head, each in the log" in out


def restore_copy_from_before_the_release(home: Path, copy: Path) -> None:
    restore(home, copy)


def cut_to_before_the_release(home: Path, copy: Path) -> None:
    """Cut the live log back to the copy's length and put the copy's head beside it."""
    keep = len((copy / "audit.jsonl").read_text().splitlines())
    (home / "audit" / "audit.jsonl").write_text(
        "".join(line + "\n" for line in log_lines(home)[:keep])
    )
    shutil.copy(copy / "head.json", home / "audit" / "head.json")


@pytest.mark.parametrize(
    "attack", [restore_copy_from_before_the_release, cut_to_before_the_release]
)
@pytest.mark.parametrize("taken", ["just before the release", "two records earlier"])
def test_a_rollback_below_a_release_fails_verify(
    applied: Path, attack: Callable[[Path, Path], None], taken: str
) -> None:
    if taken == "two records earlier":
        copy = snapshot(applied, "copy")
        assert run_cli(applied, "init").exit_code == 0
        assert run_cli(applied, "init").exit_code == 0
    else:
        assert run_cli(applied, "init").exit_code == 0
        copy = snapshot(applied, "copy")
    count = len((copy / "audit.jsonl").read_text().splitlines())
    head = release(applied)["audit_head"]
    assert run_cli(applied, "init").exit_code == 0  # the log goes on after the release
    assert verify(applied)[0] == 0

    attack(applied, copy)
    code, _, err = verify(applied)
    assert code == 1
    where = f"reports/armoede/{RUN}/release.json"
    if taken == "two records earlier":
        assert head["seq"] == count + 2
        assert (
            f"audit log broken at record {count + 1}: run armoede/{RUN} was released under "
            f"record {count + 2} ({where}), but the log ends at record {count}: records "
            f"{count + 1} to {count + 2} at least were removed" in err
        ), err
    else:  # the log still holds the head: the release's own record is what is missing
        assert head["seq"] == count
        assert (
            f"audit log broken at record {count + 1}: run armoede/{RUN} was released under "
            f"record {count} ({where}), but no report.release record for it follows" in err
        ), err


def test_a_release_head_lowered_by_hand_is_caught(applied: Path) -> None:
    path = applied / "reports" / "armoede" / RUN / "release.json"
    record = release(applied)
    record["audit_head"]["seq"] -= 1  # to hide a rollback below the real head
    path.write_text(json.dumps(record))
    code, _, err = verify(applied)
    assert code == 1
    assert f"reports/armoede/{RUN}/release.json: its audit_head was altered" in err


# ---------------------------------------------------------------- the witness: settings, failures


def test_verify_says_when_no_witness_is_configured(home: Path) -> None:
    write_settings(home, {"witness": "none"})
    code, out, _ = verify(home)
    assert code == 0 and "witness: none configured (audit.witness: none" in out
    missing = home / "no-such-socket"
    write_settings(home, {"syslog": {"address": str(missing)}})  # witness: auto
    code, out, _ = verify(home)
    assert code == 0 and f"witness: none configured ({missing} does not exist here" in out


def unresponsive_syslog_host() -> tuple[socket.socket, list[socket.socket]]:
    """A TCP port whose queue is full: a connection to it hangs, as to a SIEM that is down
    behind a firewall that drops packets."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(server.getsockname())
        fillers.append(filler)
    return server, fillers


def test_an_unreachable_witness_neither_loses_nor_holds_up_an_append(home: Path) -> None:
    server, fillers = unresponsive_syslog_host()
    try:
        port = server.getsockname()[1]
        write_settings(
            home,
            {
                "witness": "syslog",
                "syslog": {
                    "address": f"127.0.0.1:{port}",
                    "protocol": "tcp",
                    "timeout_seconds": 0.5,
                },
            },
        )
        before = len(log_lines(home))
        started = time.monotonic()
        assert run_cli(home, "init").exit_code == 0
        elapsed = time.monotonic() - started
        process = run_cli_process(home, "init")  # as an admin sees it
    finally:
        for sock in (server, *fillers):
            sock.close()
    assert elapsed < 2, elapsed
    assert len(log_lines(home)) == before + 2  # the records are there
    assert process.returncode == 0
    assert f"audit record {before + 2} was not witnessed: cannot reach syslog" in process.stderr
    code, out, _ = verify(home)
    assert code == 0
    assert f"witness: syslog tcp 127.0.0.1:{port} (facility auth)" in out
    assert f"2 head(s) could not be sent to the witness; the last, record {before + 2}" in out
    assert "timed out" in out


def test_a_witness_refusing_connections_is_reported(home: Path) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    write_settings(home, {"syslog": {"address": f"127.0.0.1:{port}", "protocol": "tcp"}})
    assert run_cli(home, "init").exit_code == 0
    assert run_cli(home, "init").exit_code == 0
    code, out, _ = verify(home)
    assert code == 0
    assert "2 head(s) could not be sent" in out and "Connection refused" in out


def test_invalid_witness_settings_never_stop_an_append(home: Path) -> None:
    write_settings(home, {"syslog": {"address": "siem.example.org:99999"}})
    before = len(log_lines(home))
    assert run_cli(home, "init").exit_code == 0
    assert len(log_lines(home)) == before + 1
    code, out, _ = verify(home)
    assert code == 0
    assert "witness: settings.yaml is not valid, no head is sent" in out
    assert "audit.syslog.address" in out
