"""One apply at a time on PostgreSQL (state/applylock.py), on a real server (tests/pg.py):
applies started together run one after the other, each waiting one saying so, and an apply
killed while it holds the lock leaves nothing held (the server ends its session). The
lock is read where the server keeps it, pg_locks; the applies are real processes."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from auditstores import table_settings, write_settings
from dossierhub.apply import WAITING
from dossierhub.state.applylock import APPLY_LOCK_KEY
from dossierhub.state.home import Home
from pg import Postgres

from e2e_hub import DOSSIERHUB
from helpers import run_cli

# pg_locks shows a bigint advisory key as two 32-bit halves
CLASSID, OBJID = (APPLY_LOCK_KEY >> 32) & 0xFFFFFFFF, APPLY_LOCK_KEY & 0xFFFFFFFF


@pytest.fixture
def pg_home(home: Path, postgres: Postgres) -> Iterator[Path]:
    """The demo HOME with its hub database (and so apply's lock) in a database of its own."""
    settings = table_settings(home, postgres)
    write_settings(home, settings)
    yield home


def holders(postgres: Postgres, database: str) -> list[bool]:
    """granted, per session that holds or waits for apply's lock in `database`."""
    rows = postgres.sql(
        "SELECT l.granted FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
        f"WHERE l.locktype = 'advisory' AND l.classid = {CLASSID} AND l.objid = {OBJID} "
        f"AND d.datname = '{database}'"
    )
    return [row == "t" for row in rows.split()]


def start_apply(home: Path) -> subprocess.Popen[str]:
    # one dossier, the demo's smaller: the lock is the same for any selection
    return subprocess.Popen(
        [DOSSIERHUB, "--home", str(home), "apply", "armoede"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def database_of(home: Path) -> str:
    settings = yaml.safe_load(Home(home).settings_file.read_text())
    return str(make_url(settings["hub"]["db_url"]).database)


def engine_of(home: Path, postgres: Postgres) -> Engine:
    """HOME's hub database, as apply reaches it."""
    database = database_of(home)
    password = (home.parent / f"{database}.password").read_text().strip()
    url = make_url(postgres.url).set(
        drivername="postgresql+psycopg", database=database, password=password
    )
    return create_engine(url)


def until(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what} within {timeout} s"
        time.sleep(0.02)


def test_applies_started_together_run_one_after_the_other(
    pg_home: Path, postgres: Postgres
) -> None:
    """Another apply (here the test, in the same database) holds the lock: two applies
    wait, say so, and build nothing; let go, they take it in turn, never both at once."""
    database = database_of(pg_home)
    engine = engine_of(pg_home, postgres)
    with engine.connect() as held:
        held.execute(text("SELECT pg_advisory_lock(:key)"), {"key": APPLY_LOCK_KEY})
        held.commit()
        applies = [start_apply(pg_home), start_apply(pg_home)]
        until(lambda: holders(postgres, database).count(False) == 2, 30, "both applies waiting")
        time.sleep(0.5)
        assert not Home(pg_home).extract_dir("armoede").exists()
        held.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": APPLY_LOCK_KEY})
        held.commit()
    engine.dispose()
    seen = set()
    while any(a.poll() is None for a in applies):
        state = holders(postgres, database)
        assert state.count(True) <= 1, "two applies held the lock at once"
        seen.add(tuple(sorted(state)))
    assert (False, True) in seen, "never saw one apply run while the other waited"
    for apply in applies:
        _, err = apply.communicate()
        assert apply.returncode == 0, err[-2000:]
        assert WAITING in err
    assert holders(postgres, database) == []


def test_an_apply_killed_holding_the_lock_leaves_it_free(pg_home: Path, postgres: Postgres) -> None:
    database = database_of(pg_home)
    first = start_apply(pg_home)
    until(lambda: holders(postgres, database) == [True], 30, "the first apply holding the lock")
    first.send_signal(signal.SIGKILL)
    first.communicate()
    until(lambda: holders(postgres, database) == [], 10, "the killed apply's lock released")
    # the next apply takes it at once, as the test does here (in HOME's database)
    engine = engine_of(pg_home, postgres)
    with engine.connect() as conn:
        taken = conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": APPLY_LOCK_KEY})
        assert taken.scalar() is True
    engine.dispose()


def test_an_apply_waits_for_a_lock_never_let_go_only_so_long(
    pg_home: Path, postgres: Postgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Red team: any session with the hub's database login can take apply's lock and keep
    it; every apply after would wait for ever (and the CronJob starts none while one runs).
    An apply waits a bounded time, then stops saying why and how to find the holder, having
    built nothing."""
    from dossierhub.state import applylock

    monkeypatch.setattr(applylock, "WAIT_SECONDS", 1.0)
    engine = engine_of(pg_home, postgres)
    with engine.connect() as held:
        held.execute(text("SELECT pg_advisory_lock(:key)"), {"key": APPLY_LOCK_KEY})
        held.commit()
        result = run_cli(pg_home, "apply", "armoede")
    engine.dispose()
    assert result.exit_code == 1
    said = " ".join(result.stderr.split())
    assert "another apply has held apply's lock in the hub's database" in said
    assert "for over 1 s; nothing was built" in said and str(APPLY_LOCK_KEY) in said
    assert postgres.password not in said
    assert not Home(pg_home).extract_dir("armoede").exists()
