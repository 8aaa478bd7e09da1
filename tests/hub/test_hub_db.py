"""The hub's database (issue 14): `hub.db_url` and `hub.db_password_file` in settings.yaml, the
values the pure hub config gives JupyterHub, and what an operator sees when one is wrong. The
password never shows: not in the settings, the Config as printed, or an error. A real
throwaway PostgreSQL (tests/pg.py) checks that the values open the database JupyterHub would."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml
from jupyterhub import orm
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from dossierhub.state.home import Home
from dossierhub.state.problems import RefusedError
from dossierhub.state.settings import Settings, load_settings
from dossierhub.workspaces.hubconfig import (
    HubConfigError,
    HubInputs,
    make_config,
    read_db_password,
)
from pg import Postgres

from helpers import run_cli

HOME = Path("/srv/dossierhub")
SECRET = "pw-Zq8'x y\\z"  # quotes, a space and a backslash: conninfo escaping must hold


def config(hub: dict, password: str = ""):
    inputs = HubInputs(
        HOME,
        Settings.model_validate({"hub": hub}),
        (),
        "proxy-secret",
        "service-secret",
        "/opt/env/bin/python",
        db_password=password,
    )
    return make_config(inputs)


def test_sqlite_under_home_stays_the_default() -> None:
    c = config({})
    assert c.JupyterHub.db_url == "sqlite:////srv/dossierhub/hub/jupyterhub.sqlite"
    assert type(c.JupyterHub.db_url) is str


def test_postgresql_gets_psycopg_and_the_password_out_of_sight() -> None:
    url = "postgresql://jupyterhub@db.example.org:5432/jupyterhub?sslmode=require"
    c = config({"db_url": url, "db_password_file": "/run/secrets/db"}, SECRET)
    given = make_url(str(c.JupyterHub.db_url))  # what JupyterHub hands SQLAlchemy
    assert given.drivername == "postgresql+psycopg"
    assert (given.username, given.password) == ("jupyterhub", SECRET)
    assert (given.host, given.port, given.database) == ("db.example.org", 5432, "jupyterhub")
    assert dict(given.query) == {"sslmode": "require"}
    quoted = quote(SECRET, safe="")
    for shown in (repr(c), str(c), repr(c.JupyterHub.db_url), repr(given)):
        assert SECRET not in shown and quoted not in shown and "***" in shown, shown
    explicit = config({"db_url": "postgresql+psycopg://h@db/j"})
    assert explicit.JupyterHub.db_url == "postgresql+psycopg://h@db/j"


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("mysql://hub@db/jupyterhub", "not a mysql URL"),
        ("postgresql+psycopg2://hub@db/jupyterhub", "not a postgresql+psycopg2 URL"),
        ("db.example.org/jupyterhub", "not a schemeless URL"),
        ("postgresql://hub:Hunter2-secret@db/jupyterhub", "the URL holds a password"),
        ("postgresql://hub:Hunter2-secret@db:99999999/jupyterhub", "the URL holds a password"),
    ],
)
def test_a_wrong_db_url_is_refused_without_repeating_it(tmp_path: Path, url: str, said: str):
    (tmp_path / "settings.yaml").write_text(yaml.safe_dump({"hub": {"db_url": url}}))
    with pytest.raises(RefusedError) as caught:
        load_settings(Home(tmp_path))
    message = str(caught.value)
    assert message.startswith("settings.yaml, line 2, hub.db_url: "), message
    assert said in message
    assert url not in message and "Hunter2" not in message


def test_the_password_file_is_named_by_its_full_path(tmp_path: Path) -> None:
    (tmp_path / "settings.yaml").write_text(yaml.safe_dump({"hub": {"db_password_file": "pw"}}))
    with pytest.raises(RefusedError, match=r"hub\.db_password_file: give the file's full path"):
        load_settings(Home(tmp_path))


def test_the_password_file_is_read_at_start_and_errors_name_the_file(tmp_path: Path) -> None:
    name = tmp_path / "db-password"
    settings = Settings.model_validate(
        {"hub": {"db_url": "postgresql://hub@db/jupyterhub", "db_password_file": str(name)}}
    )
    with pytest.raises(HubConfigError, match=f"hub.db_password_file {name} does not exist"):
        read_db_password(settings)
    name.write_text("\n")
    with pytest.raises(HubConfigError, match="is empty"):
        read_db_password(settings)
    name.write_bytes(b"\xff\xfeHunter2\n")
    with pytest.raises(HubConfigError, match="cannot be read") as caught:
        read_db_password(settings)
    assert "Hunter2" not in str(caught.value)
    name.write_text(f"{SECRET}\n")
    assert read_db_password(settings) == SECRET  # the line ending is not part of it
    sqlite = Settings.model_validate({"hub": {"db_password_file": str(name)}})
    with pytest.raises(HubConfigError, match="a SQLite database takes no password"):
        read_db_password(sqlite)


def test_serve_stops_at_once_when_the_password_file_is_missing(applied_home: Path) -> None:
    missing = applied_home / "no-such-password"
    settings = applied_home / "settings.yaml"
    before = settings.read_text() if settings.exists() else None
    settings.write_text(
        yaml.safe_dump(
            {"hub": {"db_url": "postgresql://hub@127.0.0.1/jh", "db_password_file": str(missing)}}
        )
    )
    try:
        result = run_cli(applied_home, "serve")
    finally:
        settings.write_text(before) if before is not None else settings.unlink()
    assert result.exit_code == 1
    assert f"hub.db_password_file {missing} does not exist" in result.stderr
    assert not Home(applied_home).hub_config_file.exists()  # stopped before writing anything


def test_jupyterhub_opens_a_new_database_with_the_values_and_not_without_the_password(
    postgres: Postgres,
) -> None:
    """JupyterHub's own start on an empty database (tables, then its alembic stamp, which
    opens the database from the URL alone), on a real server that asks for the password
    (scram-sha-256 over TCP)."""
    quoted = SECRET.replace("'", "''")
    postgres.sql(f"CREATE ROLE unit LOGIN PASSWORD '{quoted}'")
    postgres.sql("CREATE DATABASE unit OWNER unit")
    url = f"postgresql://unit@{postgres.host}:{postgres.port}/unit"
    try:
        for password in ("not-" + SECRET, SECRET):
            c = config({"db_url": url, "db_password_file": "/unused"}, password)
            try:
                factory = orm.new_session_factory(c.JupyterHub.db_url)
                factory().close()
                factory.kw["bind"].dispose()
            except OperationalError as exc:
                assert password != SECRET, exc
                assert "password authentication failed" in str(exc)
                assert password not in str(exc) and SECRET not in str(exc)
            else:
                assert password == SECRET
        unit = replace(postgres, database="unit")
        tables = unit.sql("SELECT tablename FROM pg_tables WHERE tableowner = 'unit'")
        assert {"users", "groups", "spawners", "alembic_version"} <= set(tables.split())
    finally:
        postgres.sql("DROP DATABASE unit WITH (FORCE)")
        postgres.sql("DROP ROLE unit")
