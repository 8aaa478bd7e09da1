"""The audit log in a table of the hub's PostgreSQL database (`audit.store: postgresql`):
the store state/auditstore.py describes, in a module of its own so that SQLAlchemy and psycopg
are imported only by processes that use it."""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from psycopg.errors import UndefinedTable
from sqlalchemy import Connection, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from dossierhub.state import database, witness
from dossierhub.state.auditstore import AuditStoreError, Mark, Tail, object_of
from dossierhub.state.home import Home

_T = TypeVar("_T")

RECORDS = "dossierhub_audit_records"
STATE = "dossierhub_audit_state"  # rows: head (head.json's object), witness (witness.json's)


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
                except DBAPIError as exc:
                    transaction.__exit__(type(exc), exc, exc.__traceback__)  # rolled back
                    if attempt == 2:
                        raise
                    if isinstance(exc.orig, UndefinedTable):
                        # the tables were dropped since this process made sure of them: the
                        # log goes on in new ones (verify then fails for want of a genesis)
                        _schema_checked.discard(self._schema_key())
                    elif not exc.connection_invalidated:
                        raise
                    continue  # or the pooled connection was broken: once more, a new one
                with transaction:
                    self._local.conn, self._local.head = conn, head
                    try:
                        yield
                    finally:
                        self._local.conn = self._local.head = None
                return

    def lines(self) -> list[str]:
        def read(conn: Connection) -> list[str]:
            if not self._exists(conn):
                return []
            rows = conn.execute(text(f"SELECT line FROM {RECORDS} ORDER BY seq"))
            return [line for (line,) in rows]

        return self._read(read)

    def lines_since(self, mark: Mark | None) -> Tail | None:
        """The records after `mark` (all for None) as (seq, 0, line); None when the table
        does not hold the record the mark names as it was (rows deleted, or put back)."""
        first = 1 if mark is None else mark.seq

        def read(conn: Connection) -> list[tuple[int, str]]:
            if not self._exists(conn):
                return []
            rows = conn.execute(
                text(f"SELECT seq, line FROM {RECORDS} WHERE seq >= :first ORDER BY seq"),
                {"first": first},
            )
            return [(int(seq), line) for seq, line in rows]

        found = self._read(read)
        if mark is not None:
            if not found or found[0][0] != mark.seq or _digest(found[0][1]) != mark.digest:
                return None
            found = found[1:]
        return [(seq, 0, line) for seq, line in found]

    def errors(self) -> contextlib.AbstractContextManager[None]:
        """A database failure as AuditStoreError (for the executions index beside the table)."""
        return self._errors()

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
                state = change(object_of(_lock_row(conn, "witness")))
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
        def read(conn: Connection) -> str | None:
            if not self._exists(conn):
                return None
            found = conn.execute(
                text(f"SELECT value FROM {STATE} WHERE name = :name"), {"name": name}
            )
            return found.scalar()

        return self._read(read)

    def _read(self, query: Callable[[Connection], _T]) -> _T:
        """`query` in exclusive()'s transaction when inside one (its locks, its view), else on
        a pooled connection; one a database restart broke is noticed by the first statement
        and the read is made once more on a new one, as an append is (a long-running service
        reads the log for its pages after PostgreSQL restarted under it)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return query(conn)
        with self._errors():
            for attempt in (1, 2):
                try:
                    with database.engine(self.url).connect() as fresh:
                        return query(fresh)
                except DBAPIError as exc:
                    if attempt == 2 or not exc.connection_invalidated:
                        raise
        raise AssertionError("unreachable")  # the loop returns or raises

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


def _digest(line: str) -> str:
    return hashlib.sha256(line.encode("utf-8")).hexdigest()


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
