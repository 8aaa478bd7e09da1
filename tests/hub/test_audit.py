"""The audit log is hash-chained; `audit verify` names the first bad record on any tampering,
in the file under HOME and in the PostgreSQL table alike (tests/auditstores.py)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import pwd
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from auditstores import STORES, log_of, move_to_table

from helpers import run_cli, run_cli_process


@pytest.fixture
def store() -> str:
    """The store a test's log is kept in; tests parametrized over STORES run on both."""
    return "file"


@pytest.fixture(scope="module")
def logged_once(demo_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A HOME whose log holds its genesis, init, a refused validation, two applies, init:
    written once per module, each test tampers with a copy of it (`logged_home`)."""
    home = tmp_path_factory.mktemp("logged") / "home"
    shutil.copytree(demo_data, home, symlinks=True)
    (home / "dossiers" / "broken.yaml").write_text("id: [\n")
    assert run_cli(home, "validate").exit_code == 1
    (home / "dossiers" / "broken.yaml").unlink()
    assert run_cli(home, "apply").exit_code == 0
    assert run_cli(home, "apply").exit_code == 0
    assert run_cli(home, "init").exit_code == 0
    return home


@pytest.fixture
def logged_home(
    logged_once: Path, tmp_path: Path, store: str, request: pytest.FixtureRequest
) -> Path:
    """A fresh copy of `logged_once`, log, head and key included; for postgresql its log
    moved to a table of its own by `audit migrate`."""
    home = tmp_path / "home"
    shutil.copytree(logged_once, home, symlinks=True)
    if store == "postgresql":
        move_to_table(home, request.getfixturevalue("postgres"))
    return home


def lines(home: Path) -> list[str]:
    return log_of(home).lines()


def write(home: Path, new: list[str]) -> None:
    log_of(home).write(new)


def test_records_say_who_did_what(logged_home: Path) -> None:
    records = [json.loads(line) for line in lines(logged_home)]
    actions = [r["action"] for r in records]
    assert actions == ["audit.genesis", "init", "validate.refused", "apply", "apply", "init"]
    apply = records[-3]
    assert apply["actor"]
    armoede = next(d for d in apply["details"]["dossiers"] if d["id"] == "armoede")
    assert armoede["status"] == "built" and len(armoede["policy_hash"]) == 64
    assert {v["view"] for v in armoede["views"]} == {
        "residents",
        "households",
        "incomes",
        "payments",
    }
    assert all(v["rows_out"] > 0 for v in armoede["views"])
    refused = records[-4]["details"]["problems"][0]
    assert "dossiers/broken.yaml" in refused


def os_login() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def test_records_say_through_which_channel_and_os_user(
    logged_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SUDO_USER", raising=False)
    assert run_cli_process(logged_home, "init").returncode == 0
    monkeypatch.setenv("SUDO_USER", "alice")
    assert run_cli_process(logged_home, "init").returncode == 0
    records = [json.loads(line) for line in lines(logged_home)]
    assert {r["channel"] for r in records} == {"cli"}
    assert records[-2]["os_user"] == os_login()
    assert records[-1]["os_user"] == f"{os_login()} (sudo: alice)"
    assert records[-1]["actor"] == "alice"  # what `actor` means is unchanged


@pytest.mark.parametrize("store", STORES)
def test_untouched_log_verifies(logged_home: Path) -> None:
    result = run_cli(logged_home, "audit", "verify")
    assert result.exit_code == 0
    assert f"{len(lines(logged_home))} records, chain intact" in result.stdout


def edit_record(home: Path) -> int:
    old = lines(home)
    record = json.loads(old[2])
    record["actor"] = "someone-else"
    old[2] = json.dumps(record, sort_keys=True)
    write(home, old)
    return 3


def edit_channel(home: Path) -> int:
    old = lines(home)
    old[-1] = old[-1].replace('"channel": "cli"', '"channel": "service"')
    write(home, old)
    return len(old)


def edit_os_user(home: Path) -> int:
    old = lines(home)
    record = json.loads(old[1])
    record["os_user"] = "alice"
    old[1] = json.dumps(record, sort_keys=True, ensure_ascii=False)
    write(home, old)
    return 2


def edit_last(home: Path) -> int:
    old = lines(home)
    old[-1] = old[-1].replace('"init"', '"inlt"')
    write(home, old)
    return len(old)


def delete_record(home: Path) -> int:
    old = lines(home)
    del old[1]
    write(home, old)
    return 2


def reorder(home: Path) -> int:
    old = lines(home)
    old[1], old[2] = old[2], old[1]
    write(home, old)
    return 2


def truncate(home: Path) -> int:
    old = lines(home)
    write(home, old[:-2])
    return len(old) - 1


def forge_head(home: Path) -> int:
    log = log_of(home)
    head = log.head()
    head["seq"] -= 1
    log.write_head(head)
    return len(lines(home)) - 1


def garbage_line(home: Path) -> int:
    old = lines(home)
    old.insert(3, "not json")
    write(home, old)
    return 4


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize(
    "tamper",
    [
        edit_record,
        edit_channel,
        edit_os_user,
        edit_last,
        delete_record,
        reorder,
        truncate,
        forge_head,
        garbage_line,
    ],
)
def test_tampering_is_caught(logged_home: Path, tamper: Callable[[Path], int]) -> None:
    first_bad = tamper(logged_home)
    result = run_cli(logged_home, "audit", "verify")
    assert result.exit_code == 1
    assert f"audit log broken at record {first_bad}:" in result.stderr, result.stderr


def test_interrupted_append_is_not_tampering(logged_home: Path) -> None:
    """Killed between writing a record and moving the head: verify passes, appends go on."""
    head = logged_home / "audit" / "head.json"
    saved = head.read_text()
    assert run_cli(logged_home, "init").exit_code == 0
    head.write_text(saved)  # as if the process died before updating the head
    assert run_cli(logged_home, "audit", "verify").exit_code == 0
    assert run_cli(logged_home, "init").exit_code == 0
    result = run_cli(logged_home, "audit", "verify")
    assert result.exit_code == 0
    assert f"{len(lines(logged_home))} records, chain intact" in result.stdout


@pytest.mark.parametrize("store", STORES)
def test_appended_forgery_is_caught(logged_home: Path) -> None:
    old = lines(logged_home)
    forged = json.loads(old[-1])
    forged.update(seq=len(old) + 1, action="apply", actor="mallory")
    import hashlib

    forged["prev"] = hashlib.sha256(old[-1].encode()).hexdigest()
    write(logged_home, [*old, json.dumps(forged, sort_keys=True)])
    result = run_cli(logged_home, "audit", "verify")
    assert result.exit_code == 1
    assert f"broken at record {len(old) + 1}" in result.stderr


def as_written_before_channels(home: Path) -> None:
    """Rewrite the log as an older dossierhub wrote it: no channel or os_user, chained and
    authenticated all the same."""
    master = bytes.fromhex((home / "secrets" / "master.key").read_text().strip())
    key = hmac.new(master, b"dossierhub audit head", hashlib.sha256).digest()
    prev, old = "0" * 64, []
    for line in lines(home):
        record = json.loads(line)
        for field in ("channel", "os_user", "mac"):
            record.pop(field)
        record["prev"] = prev
        body = json.dumps(record, sort_keys=True, ensure_ascii=False, default=str)
        record["mac"] = hmac.new(key, body.encode(), hashlib.sha256).hexdigest()
        old.append(json.dumps(record, sort_keys=True, ensure_ascii=False, default=str))
        prev = hashlib.sha256(old[-1].encode()).hexdigest()
    write(home, old)
    head = {"seq": len(old), "hash": prev}
    head["mac"] = hmac.new(key, f"{len(old)}:{prev}".encode(), hashlib.sha256).hexdigest()
    (home / "audit" / "head.json").write_text(json.dumps(head))


def test_records_from_before_channels_still_verify(logged_home: Path) -> None:
    as_written_before_channels(logged_home)
    assert "channel" not in lines(logged_home)[0]
    assert run_cli(logged_home, "audit", "verify").exit_code == 0
    assert run_cli(logged_home, "init").exit_code == 0
    result = run_cli(logged_home, "audit", "verify")
    assert result.exit_code == 0, result.stderr
    assert json.loads(lines(logged_home)[-1])["channel"] == "cli"


@pytest.mark.skipif(os.geteuid() != 0, reason="runs a process as a uid with no account")
def test_a_process_whose_uid_has_no_account_still_says_who_it_is() -> None:
    """In a pod the uid often has no entry in the image's /etc/passwd and no USER or LOGNAME
    in its environment (the hub's, the service's, apply's): a record must still be written,
    naming the uid, rather than the append failing on the lookup."""
    from e2e_hub import reachable_python

    uid = 4_242_424
    assert not any(entry.pw_uid == uid for entry in pwd.getpwall())
    code = (
        "from dossierhub.state.audit import current_actor, current_os_user\n"
        "print(current_actor(), current_os_user(), sep='|')"
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("USER", "LOGNAME", "LNAME", "USERNAME", "SUDO_USER")
    }
    done = subprocess.run(
        [reachable_python(), "-c", code],
        user=uid,
        group=uid,
        extra_groups=[],
        env=env,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == f"uid {uid}|uid {uid}"
