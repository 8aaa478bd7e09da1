"""Where the audit log's records and head are kept: a file under HOME, or a table in the hub's
PostgreSQL database. state/audit.py builds, chains, authenticates and verifies the records
the same way for both; a store only keeps lines and the head, and serializes appends.

- `FileStore` (the single-machine default): HOME/audit/audit.jsonl and head.json under a file
  lock. An append writes the record, then the head, so it can be cut between the two.
- `TableStore` (`audit.store: postgresql`): every record's line, byte for byte as the file
  holds it, in `dossierhub_audit_records` (seq, line), and head.json's object in the `head`
  row of `dossierhub_audit_state`. An append is one transaction that first locks the head row
  (SELECT ... FOR UPDATE): the database serializes appends from any process on any machine,
  the lock goes with the transaction (a writer that dies releases it), and the record and the
  head are committed together, so an append is never half done. `seq` is the primary key:
  should two writers ever get past the lock, the second insert fails instead of forking the
  chain.

`open_store` is the one place that decides which store a HOME uses, from settings.yaml.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

from filelock import FileLock
from psycopg.errors import UndefinedTable
from sqlalchemy import Connection, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import ProgrammingError, SQLAlchemyError

from dossierhub.state import database, witness
from dossierhub.state.atomic import write_json
from dossierhub.state.home import Home
from dossierhub.state.problems import RefusedError
from dossierhub.state.yamlfile import load_yaml

RECORDS = "dossierhub_audit_records"
STATE = "dossierhub_audit_state"  # rows: head (head.json's object), witness (witness.json's)


class AuditStoreError(Exception):
    """The audit table cannot be used (the database is down, a password file is missing).
    The message names the database as user@host:port/db, never the password."""


class FileStore:
    """HOME/audit/audit.jsonl, head.json and witness.json, under a file lock."""

    kind = "file"
    unit = "line"  # how verify names a record's place
    head_name = "the head file audit/head.json"
    # record and head are written one after the other: a killed append leaves one
    # authenticated record past the head, which verify accepts and the next append adopts
    atomic_append = False

    def __init__(self, home: Home):
        self.home = home
        self._lock = FileLock(str(home.audit_lock_file))  # re-entrant within a process

    def describe(self) -> str:
        return self.home.relative(self.home.audit_log_file)

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """One append (or read-then-append) at a time, across this machine's processes."""
        self.home.audit_dir.mkdir(parents=True, exist_ok=True)
        with self._lock:
            yield

    def lines(self) -> list[str]:
        path = self.home.audit_log_file
        return path.read_text("utf-8").splitlines() if path.exists() else []

    def head_text(self) -> str | None:
        path = self.home.audit_head_file
        return path.read_text("utf-8") if path.exists() else None

    def write(self, line: str, head: dict[str, Any]) -> None:
        """Inside exclusive(): the record (synced), then the head."""
        import os

        fd = os.open(self.home.audit_log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        write_json(self.home.audit_head_file, head)

    def witness_text(self) -> str | None:
        try:
            return self.home.audit_witness_file.read_text("utf-8")
        except OSError:
            return None

    def update_witness(self, change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        with self.exclusive():
            write_json(self.home.audit_witness_file, change(_object(self.witness_text())))


class TableStore:
    """The log in the hub's PostgreSQL database (docs/audit.md, "The log in PostgreSQL")."""

    kind = "postgresql"
    unit = "row"
    head_name = f"the head row of table {STATE}"
    atomic_append = True  # record and head in one transaction: nothing past the head, ever

    def __init__(self, home: Home, url: URL):
        self.home = home
        self.url = url
        # exclusive()'s open transaction and the head it locked, per thread
        self._local = threading.local()

    def describe(self) -> str:
        return f"table {RECORDS} in postgresql://{database.describe(self.url)}"

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """One transaction holding the head row's lock; committed when the block ends,
        rolled back (nothing written) when it raises. Re-entrant within a thread."""
        if getattr(self._local, "conn", None) is not None:
            yield
            return
        with self._errors():
            for attempt in (1, 2):
                self._ensure_schema()
                transaction = contextlib.ExitStack()
                conn = transaction.enter_context(database.engine(self.url).begin())
                try:
                    head = _lock_row(conn, "head")
                except ProgrammingError as exc:
                    transaction.close()  # rolled back
                    if attempt == 2 or not isinstance(exc.orig, UndefinedTable):
                        raise
                    # the tables were dropped since this process made sure of them: the log
                    # goes on in new ones (verify then fails for want of a genesis)
                    _schema_checked.discard(self._schema_key())
                    continue
                with transaction:
                    self._local.conn, self._local.head = conn, head
                    try:
                        yield
                    finally:
                        self._local.conn = self._local.head = None
                return

    def lines(self) -> list[str]:
        with self._connection() as conn:
            if not self._exists(conn):
                return []
            rows = conn.execute(text(f"SELECT line FROM {RECORDS} ORDER BY seq"))
            return [line for (line,) in rows]

    def head_text(self) -> str | None:
        if getattr(self._local, "conn", None) is not None:
            return self._local.head  # as locked (and as this transaction last set it)
        return self._value("head")

    def write(self, line: str, head: dict[str, Any]) -> None:
        """Inside exclusive(): the record and the head in one statement (the lock is held
        for as few round trips as can be), committed together when exclusive() ends."""
        conn = self._local.conn
        assert conn is not None, "TableStore.write outside exclusive()"
        value = json.dumps(head, sort_keys=True)
        with self._errors():
            conn.execute(
                text(
                    f"WITH added AS (INSERT INTO {RECORDS} (seq, line) VALUES (:seq, :line)) "
                    f"UPDATE {STATE} SET value = :value WHERE name = 'head'"
                ),
                {"seq": head["seq"], "line": line, "value": value},
            )
        self._local.head = value

    def witness_text(self) -> str | None:
        return self._value("witness")

    def update_witness(self, change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        # its own row and transaction: noting the witness never holds up the next append
        with self._errors():
            self._ensure_schema()
            with database.engine(self.url).begin() as conn:
                state = change(_object(_lock_row(conn, "witness")))
                conn.execute(
                    text(f"UPDATE {STATE} SET value = :value WHERE name = 'witness'"),
                    {"value": json.dumps(state, sort_keys=True)},
                )

    def insert_lines(self, first_seq: int, lines: list[str]) -> None:
        """Inside exclusive(): records moved from a file log (`audit migrate`), as they are."""
        conn = self._local.conn
        assert conn is not None, "TableStore.insert_lines outside exclusive()"
        rows = [{"seq": first_seq + n, "line": line} for n, line in enumerate(lines)]
        with self._errors():
            if rows:
                conn.execute(text(f"INSERT INTO {RECORDS} (seq, line) VALUES (:seq, :line)"), rows)

    def set_head(self, head: dict[str, Any]) -> None:
        """Inside exclusive(): the head row, as `write` sets it."""
        value = json.dumps(head, sort_keys=True)
        with self._errors():
            self._local.conn.execute(
                text(f"UPDATE {STATE} SET value = :value WHERE name = 'head'"), {"value": value}
            )
        self._local.head = value

    def _value(self, name: str) -> str | None:
        with self._connection() as conn:
            if not self._exists(conn):
                return None
            found = conn.execute(
                text(f"SELECT value FROM {STATE} WHERE name = :name"), {"name": name}
            )
            return found.scalar()

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Connection]:
        """exclusive()'s transaction when inside one (its locks, its view), else a new one."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            yield conn
            return
        with self._errors(), database.engine(self.url).connect() as fresh:
            yield fresh

    def _exists(self, conn: Connection) -> bool:
        """Both tables are there (a read before the first append, or after a DROP, finds an
        empty log; it never creates them)."""
        found = conn.execute(
            text("SELECT to_regclass(:records) IS NOT NULL AND to_regclass(:state) IS NOT NULL"),
            {"records": RECORDS, "state": STATE},
        )
        return bool(found.scalar())

    def _ensure_schema(self) -> None:
        """Create the tables on this process's first append. Concurrent CREATE TABLE IF NOT
        EXISTS can still collide in PostgreSQL's catalog, so creators queue on a
        transaction-scoped advisory lock (there is no row to lock yet). Checked once per
        process; exclusive() checks again when they were dropped since."""
        checked = self._schema_key()
        if checked in _schema_checked:
            return
        with database.engine(self.url).begin() as conn:
            if not self._exists(conn):
                conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('dossierhub audit'))"))
                conn.execute(
                    text(
                        f"CREATE TABLE IF NOT EXISTS {RECORDS} "
                        "(seq bigint PRIMARY KEY, line text NOT NULL)"
                    )
                )
                conn.execute(
                    text(f"CREATE TABLE IF NOT EXISTS {STATE} (name text PRIMARY KEY, value text)")
                )
        _schema_checked.add(checked)

    def _schema_key(self) -> str:
        return self.url.render_as_string(hide_password=False)

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """A database failure as one sentence naming the database, never its password."""
        try:
            yield
        except database.DatabaseSettingsError as exc:
            raise AuditStoreError(f"the audit log's table cannot be reached: {exc}") from None
        except SQLAlchemyError as exc:
            cause = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            said = cause[0] if cause else type(exc).__name__
            if self.url.password:
                said = said.replace(self.url.password, "***")
            raise AuditStoreError(
                f"the audit log's table in {database.describe(self.url)} cannot be used: {said}"
            ) from None


_schema_checked: set[str] = set()  # the databases whose tables this process has seen


def _lock_row(conn: Connection, name: str) -> str | None:
    """Lock the state row `name` for this transaction and return its value, creating the row
    first if it is missing (a new table, or a row someone deleted): concurrent creators wait
    on the key, then lock."""
    lock = text(f"SELECT value FROM {STATE} WHERE name = :name FOR UPDATE")
    found = conn.execute(lock, {"name": name}).first()
    if found is None:
        conn.execute(
            text(f"INSERT INTO {STATE} (name, value) VALUES (:name, NULL) ON CONFLICT DO NOTHING"),
            {"name": name},
        )
        found = conn.execute(lock, {"name": name}).first()
    return found[0] if found is not None else None


def _object(found: str | None) -> dict[str, Any]:
    try:
        state = json.loads(found) if found else {}
    except ValueError:
        return {}
    return state if isinstance(state, dict) else {}


def open_store(home: Home) -> FileStore | TableStore:
    """The store settings.yaml names (`audit.store`, default file).

    An invalid settings.yaml leaves appends on the file log (a broken witness setting must not
    stop one, docs/audit.md), unless it asks for the table: then its error is raised, since
    writing to the file would split the log in two."""
    try:
        settings = witness.cached_settings(home)
    except RefusedError:
        if _asks_for_table(home):
            raise
        return FileStore(home)
    if settings.audit.store == "postgresql":
        try:
            return TableStore(home, database.postgresql_url(settings))
        except database.DatabaseSettingsError as exc:
            raise AuditStoreError(f"the audit log's table cannot be reached: {exc}") from None
    return FileStore(home)


def table_store(home: Home) -> TableStore:
    """The table `hub.db_url` names, whatever audit.store says (`audit migrate` fills it
    before the operator switches to it)."""
    settings = witness.cached_settings(home)
    if not database.is_postgresql(settings):
        raise AuditStoreError(
            "hub.db_url in settings.yaml does not name a PostgreSQL database: the audit table "
            "lives in the hub's PostgreSQL database"
        )
    try:
        return TableStore(home, database.postgresql_url(settings))
    except database.DatabaseSettingsError as exc:
        raise AuditStoreError(f"the audit log's table cannot be reached: {exc}") from None


def _asks_for_table(home: Home) -> bool:
    try:
        raw = load_yaml(home.settings_file, "settings.yaml")
    except Exception:  # not even YAML: it asks for nothing
        return False
    audit = raw.get("audit") if isinstance(raw, dict) else None
    return isinstance(audit, dict) and audit.get("store") == "postgresql"
