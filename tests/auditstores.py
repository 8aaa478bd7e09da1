"""The audit log's two stores as an attacker reaches them: the file under HOME, or the table
in PostgreSQL (with the database role's own password, as anyone holding the hub's database
Secret could). Tests written against `log_of(home)` run on either store."""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

from pg import Postgres

from helpers import run_cli

STORES = ["file", "postgresql"]
RECORDS, STATE = "dossierhub_audit_records", "dossierhub_audit_state"


@dataclass(frozen=True)
class FileLog:
    home: Path

    def lines(self) -> list[str]:
        return (self.home / "audit" / "audit.jsonl").read_text().splitlines()

    def write(self, new: list[str]) -> None:
        (self.home / "audit" / "audit.jsonl").write_text("".join(line + "\n" for line in new))

    def head(self) -> dict[str, Any]:
        return json.loads((self.home / "audit" / "head.json").read_text())

    def write_head(self, head: dict[str, Any]) -> None:
        (self.home / "audit" / "head.json").write_text(json.dumps(head))


@dataclass(frozen=True)
class TableLog:
    url: URL

    def _run(self, statement: str, rows: Any = None) -> list[Any]:
        engine = create_engine(self.url)
        try:
            with engine.begin() as conn:
                found = conn.execute(text(statement), rows)
                return list(found) if found.returns_rows else []
        finally:
            engine.dispose()

    def lines(self) -> list[str]:
        return [line for (line,) in self._run(f"SELECT line FROM {RECORDS} ORDER BY seq")]

    def write(self, new: list[str]) -> None:
        """The table rewritten to hold `new`, row n holding line n."""
        self._run(f"DELETE FROM {RECORDS}")
        if new:
            rows = [{"seq": n, "line": line} for n, line in enumerate(new, 1)]
            self._run(f"INSERT INTO {RECORDS} (seq, line) VALUES (:seq, :line)", rows)

    def head(self) -> dict[str, Any]:
        ((value,),) = self._run(f"SELECT value FROM {STATE} WHERE name = 'head'")
        return json.loads(value)

    def write_head(self, head: dict[str, Any]) -> None:
        self._run(f"UPDATE {STATE} SET value = :v WHERE name = 'head'", {"v": json.dumps(head)})

    def sql(self, statement: str) -> None:
        self._run(statement)


def log_of(home: Path) -> FileLog | TableLog:
    """The store HOME's settings.yaml names, opened as the attacker would."""
    settings_file = home / "settings.yaml"
    settings = yaml.safe_load(settings_file.read_text()) if settings_file.exists() else {}
    if (settings or {}).get("audit", {}).get("store") != "postgresql":
        return FileLog(home)
    hub = settings["hub"]
    password = Path(hub["db_password_file"]).read_text().strip()
    url = make_url(hub["db_url"]).set(drivername="postgresql+psycopg", password=password)
    return TableLog(url)


def table_settings(home: Path, postgres: Postgres) -> dict[str, Any]:
    """A database of its own for this HOME, and the settings that name it (store: file)."""
    name = "audit_" + secrets.token_hex(6)
    postgres.sql(f"CREATE DATABASE {name} OWNER {postgres.user}")
    password_file = home.parent / f"{name}.password"
    password_file.write_text(postgres.password + "\n")
    url = f"postgresql://{postgres.user}@{postgres.host}:{postgres.port}/{name}"
    return {"hub": {"db_url": url, "db_password_file": str(password_file)}}


def write_settings(home: Path, settings: dict[str, Any]) -> None:
    (home / "settings.yaml").write_text(yaml.safe_dump(settings))


def move_to_table(home: Path, postgres: Postgres) -> None:
    """HOME's log moved into a fresh table by `audit migrate`, and the table made its store."""
    settings = table_settings(home, postgres)
    write_settings(home, settings)
    result = run_cli(home, "audit", "migrate")
    assert result.exit_code == 0, result.stderr
    settings["audit"] = {"store": "postgresql"}
    write_settings(home, settings)


RUN = "20260101T000000-abcdef"


def plant_succeeded_run(home: Path) -> None:
    """A succeeded run of a.jansen's in an applied HOME, as `report run` leaves it
    (tests/e2e/test_audit_rollback.py releases a real one)."""
    folder = home / "reports" / "armoede" / RUN
    folder.mkdir(parents=True)
    (folder / "report.ipynb").write_text('{"cells": []}')
    provenance = {
        "run_id": RUN,
        "dossier": "armoede",
        "template": "district_profile",
        "user": "a.jansen",
        "status": "succeeded",
        "outputs": {"report.ipynb": hashlib.sha256(b'{"cells": []}').hexdigest()},
        "checks_passed": True,
    }
    (folder / "provenance.json").write_text(json.dumps(provenance))
    (folder / "checks.json").write_text("[]")


def release(home: Path) -> dict:
    """The planted run released by a second lead; its release.json."""
    result = run_cli(home, "report", "release", "armoede", RUN, "--user", "e.mulder")
    assert result.exit_code == 0, result.stderr
    return json.loads((home / "reports" / "armoede" / RUN / "release.json").read_text())
