"""The hub's PostgreSQL database as dossierhub's own code reaches it (the audit table,
state/auditstore.py): `hub.db_url` with the password from `hub.db_password_file`.

JupyterHub opens the same database from workspaces/hubconfig.py; the password is read here,
once for both, so there is one rule for where it comes from and how a bad file is reported.
The password never appears in an error, a log line or a repr: it lives only inside a
SQLAlchemy URL object, which renders it as ***.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL, make_url

if TYPE_CHECKING:
    from dossierhub.state.settings import Settings


class DatabaseSettingsError(Exception):
    """The database cannot be reached from settings.yaml (a missing or empty password file).
    The message names the file and what is wrong with it, never a line of it."""


def read_db_password(settings: Settings) -> str:
    """The database password from `hub.db_password_file` ("" without one)."""
    name = settings.hub.db_password_file
    if name is None:
        return ""
    where = f"settings.yaml: hub.db_password_file {name}"
    if settings.hub.db_url is None or settings.hub.db_url.startswith("sqlite"):
        raise DatabaseSettingsError(f"{where}: a SQLite database takes no password; remove the key")
    try:
        password = Path(name).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise DatabaseSettingsError(f"{where} does not exist") from None
    except PermissionError:
        raise DatabaseSettingsError(f"{where} cannot be read by this user") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatabaseSettingsError(f"{where} cannot be read ({type(exc).__name__})") from None
    if not password:
        raise DatabaseSettingsError(f"{where} is empty")
    return password


def is_postgresql(settings: Settings) -> bool:
    """`hub.db_url` names a PostgreSQL server (not the SQLite default)."""
    return (settings.hub.db_url or "").startswith("postgresql")


def postgresql_url(settings: Settings) -> URL:
    """`hub.db_url` for SQLAlchemy's psycopg (3) driver, with the password in it (shown as ***
    by str() and repr())."""
    assert settings.hub.db_url is not None and is_postgresql(settings)
    url = make_url(settings.hub.db_url).set(drivername="postgresql+psycopg")
    password = read_db_password(settings)
    return url.set(password=password) if password else url


def describe(url: URL) -> str:
    """Where a URL points, for messages: user@host:port/database, never the password."""
    port = f":{url.port}" if url.port else ""
    return f"{url.username}@{url.host}{port}/{url.database}"


# one engine (and its pool of connections) per URL and process: a forked child must not
# reuse its parent's sockets
_engines: dict[tuple[int, str], Engine] = {}


def engine(url: URL) -> Engine:
    """The process's engine for `url`. Every use ends its transaction (commit or rollback),
    so a connection goes back to the pool clean without the pool's extra ROLLBACK, and it is
    not pinged before use: each is a round trip, and under many writers the head row's lock
    is waited for behind them. A connection a database restart broke is noticed by its first
    statement instead (the audit table retries once: audittable.TableStore.exclusive)."""
    key = (os.getpid(), url.render_as_string(hide_password=False))
    found = _engines.get(key)
    if found is None:
        found = _engines[key] = create_engine(url, pool_size=2, pool_reset_on_return=None)
    return found
