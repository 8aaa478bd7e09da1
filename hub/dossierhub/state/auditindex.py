"""Executions read from an index the audit log keeps in step, not from the whole log.

The audit log is the store of executions (state/executions.py): one `workspace.executions`
record per batch, its events inside. Reading them by parsing the whole log made every page
that shows executions cost the log's size: 60,000 executions by one analyst took each such
page to 1.5-2 s. This index holds the same executions as rows, beside the log and in the same
kind of store: a SQLite file `audit/executions.sqlite` beside `audit/audit.jsonl`, or tables
beside the audit table in the hub's PostgreSQL database. Pages then cost the rows they return.

The log stays the truth; the index is derived from it and never written any other way:

- Before every read the index takes in the records appended since it last read (it keeps the
  number, SHA-256 and file offset of the last record it read: a read costs what was appended
  since, not the log).
- That record must still be in the log, unchanged: a log cut short, replaced, or rolled back
  to an older copy does not hold it, and the index is rebuilt from the whole log. The chain
  ties every record to the one before it, so the last one unchanged means all before it are
  (`audit verify` reads them all and says so when the chain is broken).
- `check` rebuilds it from the log in memory and compares (`audit verify` runs it), so rows
  changed in the index itself (someone with the database's password) are caught.
- If the index cannot be kept (the SQLite file cannot be written), the same queries run on an
  index built in memory from the log: slower, never different.

Rows come out as `executions.Execution`, in the order and with the outcomes `executions_from`
gives for the same records, and kernel calls (a person started, restarted, interrupted or shut
down a kernel) as `executions.KernelCall`, as `kernel_events_from` gives them
(tests/hub/test_executions_index.py compares them).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from dossierhub.state.atomic import take_folder_owner
from dossierhub.state.auditstore import FileStore, Mark
from dossierhub.state.executions import ACTION, Execution, KernelCall, _when

if TYPE_CHECKING:
    from dossierhub.state.audit import AuditLog

# of the rows' layout: an index of another version is rebuilt from the log at its next read
# (2: kernel calls too; an index of version 1 had none, so it is rebuilt, not caught up)
VERSION = 2
PREFIX = "dossierhub_execution_"  # the tables' names, beside dossierhub_audit_* in PostgreSQL
ROWS, OUTCOMES, STATE = f"{PREFIX}rows", f"{PREFIX}outcomes", f"{PREFIX}index"
KERNELS = f"{PREFIX}kernels"  # kernels people started, restarted, interrupted or shut down

_log = logging.getLogger("dossierhub.auditindex")

SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {STATE} (id integer PRIMARY KEY, version integer NOT NULL, "
    "seq bigint NOT NULL, digest text NOT NULL, byte_offset bigint NOT NULL)",
    f"CREATE TABLE IF NOT EXISTS {ROWS} ("
    "seq bigint NOT NULL, ord integer NOT NULL, dossier text NOT NULL, batch text NOT NULL, "
    "at_us bigint NOT NULL, at text NOT NULL, person text NOT NULL, kernel text NOT NULL, "
    "channel text NOT NULL, kind text NOT NULL, msg_id text NOT NULL, cell_id text, path text, "
    "code_sha256 text NOT NULL, first_line text NOT NULL, code text, outcome text, "
    "PRIMARY KEY (seq, ord))",
    # newest first and the counts of a dossier, of a person, of a notebook; who ran each cell
    f"CREATE INDEX IF NOT EXISTS {ROWS}_dossier ON {ROWS} (dossier, at_us, seq, ord)",
    f"CREATE INDEX IF NOT EXISTS {ROWS}_person ON {ROWS} (person, at_us, seq, ord)",
    f"CREATE INDEX IF NOT EXISTS {ROWS}_people ON {ROWS} (dossier, person, path)",
    f"CREATE INDEX IF NOT EXISTS {ROWS}_places ON {ROWS} (person, dossier, path)",
    f"CREATE INDEX IF NOT EXISTS {ROWS}_cells ON {ROWS} (dossier, path, cell_id, at_us, seq, ord)",
    f"CREATE TABLE IF NOT EXISTS {OUTCOMES} (dossier text NOT NULL, kernel text NOT NULL, "
    "msg_id text NOT NULL, outcome text, PRIMARY KEY (dossier, kernel, msg_id))",
    f"CREATE TABLE IF NOT EXISTS {KERNELS} ("
    "seq bigint NOT NULL, ord integer NOT NULL, dossier text NOT NULL, batch text NOT NULL, "
    "at_us bigint NOT NULL, at text NOT NULL, person text NOT NULL, kernel text, "
    "action text NOT NULL, path text, PRIMARY KEY (seq, ord))",
    f"CREATE INDEX IF NOT EXISTS {KERNELS}_dossier ON {KERNELS} (dossier, at_us, seq, ord)",
    f"CREATE INDEX IF NOT EXISTS {KERNELS}_person ON {KERNELS} (person, at_us, seq, ord)",
)
KERNEL_COLUMNS = "r.at, r.person, r.dossier, r.kernel, r.action, r.path, r.batch"

COLUMNS = (
    "r.at, r.person, r.dossier, r.kernel, r.channel, r.kind, r.msg_id, r.cell_id, r.path, "
    "r.code_sha256, r.first_line, r.code, COALESCE(NULLIF(r.outcome, ''), o.outcome), r.batch"
)
# an outcome that came in a later batch than its execution
OUTCOME = (
    f"LEFT JOIN {OUTCOMES} o ON o.dossier = r.dossier AND o.kernel = r.kernel "
    "AND o.msg_id = r.msg_id"
)
JOIN = f"{ROWS} r {OUTCOME}"
OLDEST_FIRST = "r.at_us, r.seq, r.ord"  # executions_from's order: by time, then as logged
NEWEST_FIRST = "r.at_us DESC, r.seq DESC, r.ord DESC"


class IndexUnavailable(Exception):
    """The index cannot be opened or kept here (the reads fall back to one built in memory)."""


@dataclass(frozen=True)
class Where:
    """What a read narrows executions to: None is anything. `since` included, `before` not
    (aware datetimes)."""

    dossier: str | None = None
    person: str | None = None
    path: str | None = None
    since: dt.datetime | None = None
    before: dt.datetime | None = None

    def sql(self) -> tuple[str, dict[str, Any]]:
        terms, values = [], {}
        for name in ("dossier", "person", "path"):
            if (value := getattr(self, name)) is not None:
                terms.append(f"r.{name} = :{name}")
                values[name] = value
        if self.since is not None:
            terms.append("r.at_us >= :since")
            values["since"] = _micros(self.since)
        if self.before is not None:
            terms.append("r.at_us < :before")
            values["before"] = _micros(self.before)
        return (" WHERE " + " AND ".join(terms)) if terms else "", values


Values = dict[str, Any] | list[dict[str, Any]]  # one statement's, or one per row


class _Db(Protocol):
    """One connection in one transaction, parameters named `:name` (sqlite3 and SQLAlchemy's
    text() both take them)."""

    def run(self, sql: str, values: Values | None = None) -> None: ...

    def rows(self, sql: str, values: dict[str, Any] | None = None) -> list[tuple[Any, ...]]: ...


class ExecutionIndex:
    """The executions of `log`, read through its index (`for_log` picks where it is kept).
    One per request: it takes in what the log gained at its first read only (a later read of
    the same object may miss a batch appended since; the next request sees it)."""

    def __init__(self, log: AuditLog, connect: _Connector):
        self.log = log
        self._connect = connect
        self._caught_up = False

    @classmethod
    def for_log(cls, log: AuditLog) -> ExecutionIndex:
        """The index beside the log's store: a SQLite file for the file log, tables in the
        same database for the PostgreSQL one; one in memory when the file cannot be kept."""
        if isinstance(log.store, FileStore):
            try:
                return cls(log, _SqliteFile(log))
            except IndexUnavailable as exc:
                _log.warning("the executions index is read from the log in memory: %s", exc)
                return cls(log, _SqliteMemory())
        return cls(log, _Postgres(log))

    # reads ---------------------------------------------------------------------------

    def executions(
        self, where: Where, *, newest_first: bool = False, limit: int | None = None
    ) -> list[Execution]:
        """The executions `where` says, oldest first (or newest first), at most `limit`."""
        rows = self._listed(f"{COLUMNS} FROM {JOIN}", where, newest_first, limit)
        return [_execution(row) for row in rows]

    def count(self, where: Where) -> int:
        return self._count(ROWS, where)

    def _listed(
        self, source: str, where: Where, newest_first: bool, limit: int | None
    ) -> list[tuple[Any, ...]]:
        """The rows of `SELECT source` that `where` says, in time order, at most `limit`."""
        clause, values = where.sql()
        order = NEWEST_FIRST if newest_first else OLDEST_FIRST
        cut = f" LIMIT {int(limit)}" if limit is not None else ""
        with self._fresh() as db:
            return list(db.rows(f"SELECT {source}{clause} ORDER BY {order}{cut}", values))

    def _count(self, table: str, where: Where) -> int:
        clause, values = where.sql()
        with self._fresh() as db:
            return int(db.rows(f"SELECT COUNT(*) FROM {table} r{clause}", values)[0][0])

    def counted(self, key: Literal["person", "path", "dossier"], where: Where) -> dict[str, int]:
        """How many executions per person, notebook or dossier, most first (equal counts in
        the names' order); executions of no notebook are not counted by notebook."""
        clause, values = where.sql()
        known = f"r.{key} IS NOT NULL"
        clause = f"{clause} AND {known}" if clause else f" WHERE {known}"
        sql = (
            f"SELECT r.{key}, COUNT(*) AS n FROM {ROWS} r{clause} "
            f"GROUP BY r.{key} ORDER BY n DESC, r.{key}"
        )
        with self._fresh() as db:
            return {str(value): int(n) for value, n in db.rows(sql, values)}

    def distinct(self, key: Literal["person", "path"], where: Where) -> list[str]:
        """The people or notebooks of the executions `where` says, sorted."""
        clause, values = where.sql()
        known = f"r.{key} IS NOT NULL"
        clause = f"{clause} AND {known}" if clause else f" WHERE {known}"
        with self._fresh() as db:
            found = db.rows(f"SELECT DISTINCT r.{key} FROM {ROWS} r{clause}", values)
        return sorted(str(value) for (value,) in found)

    def kernel_calls(
        self, where: Where, *, newest_first: bool = False, limit: int | None = None
    ) -> list[KernelCall]:
        """The kernel calls `where` says, oldest first (or newest first), at most `limit`, in
        the order executions.kernel_events_from gives them."""
        rows = self._listed(f"{KERNEL_COLUMNS} FROM {KERNELS} r", where, newest_first, limit)
        return [_kernel_call(row) for row in rows]

    def kernel_call_count(self, where: Where) -> int:
        return self._count(KERNELS, where)

    def latest_by_cell(self, dossier: str, path: str) -> dict[str, Execution]:
        """cell id -> the last execution of that cell in one notebook (executions.latest_by_cell
        over its rows: the latest by time, the one logged last among equals)."""
        # the notebook's cells, then each one's last row: index seeks, not a scan of its rows
        cells = (
            f"SELECT DISTINCT cell_id FROM {ROWS} WHERE dossier = :dossier AND path = :path "
            "AND cell_id IS NOT NULL AND cell_id <> ''"
        )
        last = (
            f"SELECT l.seq, l.ord FROM {ROWS} l WHERE l.dossier = :dossier AND l.path = :path "
            "AND l.cell_id = c.cell_id ORDER BY l.at_us DESC, l.seq DESC, l.ord DESC LIMIT 1"
        )
        sql = (
            f"SELECT {COLUMNS} FROM ({cells}) c JOIN {ROWS} r ON (r.seq, r.ord) = ({last}) "
            f"{OUTCOME} ORDER BY {OLDEST_FIRST}"
        )
        with self._fresh() as db:
            rows = [_execution(row) for row in db.rows(sql, {"dossier": dossier, "path": path})]
        return {str(row.cell_id): row for row in rows}

    def check(self) -> str | None:
        """None when the index holds exactly the executions and kernel calls the whole log
        gives, else what differs (one sentence). Reads the whole log: for `audit verify`, not
        for pages."""
        everything = Where()
        rebuilt = ExecutionIndex(self.log, _SqliteMemory())
        return _difference(
            "execution", self.executions(everything), rebuilt.executions(everything)
        ) or _difference(
            "kernel call", self.kernel_calls(everything), rebuilt.kernel_calls(everything)
        )

    def catch_up(self) -> None:
        """Take in what the log gained (the service does so after each batch it ingests, so
        a page seldom has anything left to take in)."""
        with self._fresh():
            pass

    def rebuild(self) -> None:
        """Forget the index and take in the whole log again."""
        with self._connect.writing() as db:
            _clear(db)
            _take_in(db, self.log, None)
        self._caught_up = True

    # keeping in step -------------------------------------------------------------------

    @contextlib.contextmanager
    def _fresh(self) -> Iterator[_Db]:
        """The index with every record of the log taken in (at the first read), for one read."""
        if not self._caught_up:
            try:
                with self._connect.writing() as db:
                    _catch_up(db, self.log)
            except (OSError, sqlite3.Error) as exc:
                if not isinstance(self._connect, _SqliteFile):
                    raise
                # the file cannot be kept by this process (its -wal made by another user,
                # a full disk): the same reads from the log, slower, never different
                _log.warning("the executions index is read from the log in memory: %s", exc)
                self._connect = _SqliteMemory()
                with self._connect.writing() as db:
                    _catch_up(db, self.log)
            self._caught_up = True
        with self._connect.reading() as db:
            yield db


def _difference(
    what: str, kept: Sequence[Execution | KernelCall], truth: Sequence[Execution | KernelCall]
) -> str | None:
    """Where the index's rows (`kept`) first differ from those the log gives (`truth`)."""
    if kept == truth:
        return None
    for number, (mine, real) in enumerate(zip(kept, truth, strict=False), start=1):
        if mine != real:
            return (
                f"the executions index differs from the log at its {what} {number} "
                f"(batch {real.batch}): it was changed outside dossierhub"
            )
    return (
        f"the executions index holds {len(kept)} {what}s, the log {len(truth)}: it was "
        "changed outside dossierhub"
    )


class _Connector(Protocol):
    def writing(self) -> contextlib.AbstractContextManager[_Db]: ...

    def reading(self) -> contextlib.AbstractContextManager[_Db]: ...


def _catch_up(db: _Db, log: AuditLog) -> None:
    """Take in the records appended since the index last read, or rebuild it when its last
    record is no longer the log's (or the index is of another version)."""
    found = db.rows(f"SELECT version, seq, digest, byte_offset FROM {STATE} WHERE id = 1")
    mark = None
    if found and found[0][0] == VERSION:
        mark = Mark(seq=int(found[0][1]), digest=str(found[0][2]), offset=int(found[0][3]))
    if mark is not None and _take_in(db, log, mark):
        return
    if mark is not None:
        _log.warning(
            "the audit log no longer holds record %d as the executions index read it (cut, "
            "replaced or rolled back): the index is rebuilt from the log",
            mark.seq,
        )
    _clear(db)
    _take_in(db, log, None)


def _clear(db: _Db) -> None:
    for table in (ROWS, OUTCOMES, KERNELS, STATE):
        db.run(f"DELETE FROM {table}")


def _take_in(db: _Db, log: AuditLog, mark: Mark | None) -> bool:
    """Add the records after `mark` (all of them for None); False when the log does not hold
    the record `mark` names as it was."""
    tail = log.store.lines_since(mark)
    if tail is None:
        return False
    rows: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    outcomes: dict[tuple[str, str, str], str] = {}
    for seq, _, line in tail:
        _rows_of(seq, line, rows, outcomes, calls)
    if calls:
        db.run(
            f"INSERT INTO {KERNELS} (seq, ord, dossier, batch, at_us, at, person, kernel, "
            "action, path) VALUES (:seq, :ord, :dossier, :batch, :at_us, :at, :person, "
            ":kernel, :action, :path)",
            calls,
        )
    if rows:
        db.run(
            f"INSERT INTO {ROWS} (seq, ord, dossier, batch, at_us, at, person, kernel, channel, "
            "kind, msg_id, cell_id, path, code_sha256, first_line, code, outcome) VALUES (:seq, "
            ":ord, :dossier, :batch, :at_us, :at, :person, :kernel, :channel, :kind, :msg_id, "
            ":cell_id, :path, :code_sha256, :first_line, :code, :outcome)",
            rows,
        )
    if outcomes:  # the last outcome logged for an execution wins, as in executions_from
        db.run(
            f"INSERT INTO {OUTCOMES} (dossier, kernel, msg_id, outcome) VALUES (:dossier, "
            ":kernel, :msg_id, :outcome) ON CONFLICT (dossier, kernel, msg_id) DO UPDATE SET "
            "outcome = excluded.outcome",
            [
                {"dossier": d, "kernel": k, "msg_id": m, "outcome": outcome}
                for (d, k, m), outcome in outcomes.items()
            ],
        )
    if tail:
        seq, offset, line = tail[-1]
        db.run(f"DELETE FROM {STATE}")
        db.run(
            f"INSERT INTO {STATE} (id, version, seq, digest, byte_offset) "
            "VALUES (1, :version, :seq, :digest, :offset)",
            {"version": VERSION, "seq": seq, "digest": _digest(line), "offset": offset},
        )
    return True


def _rows_of(
    seq: int,
    line: str,
    rows: list[dict[str, Any]],
    outcomes: dict[tuple[str, str, str], str],
    calls: list[dict[str, Any]],
) -> None:
    """The execute events of one record as rows, its outcome events into `outcomes`, its
    kernel events into `calls`, read as executions_from and kernel_events_from read them (a
    line that does not parse is skipped, as AuditLog.read skips it)."""
    if f'"{ACTION}"' not in line:
        return  # most records are not batches: no JSON parse for them
    try:
        record = json.loads(line)
    except ValueError:
        return
    details = record.get("details") if isinstance(record, dict) else None
    if record.get("action") != ACTION or not isinstance(details, dict):
        return
    events = details.get("events")
    dossier, batch = str(details.get("dossier")), str(details.get("batch"))
    for ord_, event in enumerate(events if isinstance(events, list) else ()):
        if not isinstance(event, dict):
            continue
        kernel, msg_id = str(event.get("kernel")), str(event.get("msg_id"))
        if event.get("event") == "outcome":
            outcomes[(dossier, kernel, msg_id)] = str(event.get("outcome"))
        elif event.get("event") == "kernel" and (at := _when(event.get("at"))) is not None:
            calls.append(
                {
                    "seq": seq,
                    "ord": ord_,
                    "dossier": dossier,
                    "batch": batch,
                    "at_us": _micros(at),
                    "at": str(event.get("at")),
                    "person": str(event.get("person", "")),
                    "kernel": _text(event.get("kernel")),
                    "action": str(event.get("action", "")),
                    "path": _text(event.get("path")),
                }
            )
        elif event.get("event") == "execute" and (at := _when(event.get("at"))) is not None:
            rows.append(
                {
                    "seq": seq,
                    "ord": ord_,
                    "dossier": dossier,
                    "batch": batch,
                    "at_us": _micros(at),
                    "at": str(event.get("at")),
                    "person": str(event.get("person")),
                    "kernel": kernel,
                    "channel": str(event.get("channel")),
                    "kind": str(event.get("kind")),
                    "msg_id": msg_id,
                    "cell_id": _text(event.get("cell_id")),
                    "path": _text(event.get("path")),
                    "code_sha256": str(event.get("code_sha256")),
                    "first_line": str(event.get("first_line", "")),
                    "code": _text(event.get("code")),
                    "outcome": _text(event.get("outcome")),
                }
            )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _micros(moment: dt.datetime) -> int:
    """A moment as whole microseconds since 1970 UTC (naive: UTC): exact, and ordered as the
    moments are."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    return (aware - EPOCH) // dt.timedelta(microseconds=1)


def _execution(row: tuple[Any, ...]) -> Execution:
    at = _when(row[0])
    assert at is not None  # only parsable times were taken in
    return Execution(
        at=at,
        person=row[1],
        dossier=row[2],
        kernel=row[3],
        channel=row[4],
        kind=row[5],
        msg_id=row[6],
        cell_id=row[7],
        path=row[8],
        code_sha256=row[9],
        first_line=row[10],
        code=row[11],
        outcome=row[12],
        batch=row[13],
    )


def _kernel_call(row: tuple[Any, ...]) -> KernelCall:
    at = _when(row[0])
    assert at is not None  # only parsable times were taken in
    return KernelCall(
        at=at,
        person=row[1],
        dossier=row[2],
        kernel=row[3],
        action=row[4],
        path=row[5],
        batch=row[6],
    )


def _digest(line: str) -> str:
    return hashlib.sha256(line.encode("utf-8")).hexdigest()


# where the index is kept ----------------------------------------------------------------


class _Sqlite:
    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def run(self, sql: str, values: Values | None = None) -> None:
        if isinstance(values, list):
            self.conn.executemany(sql, values)
        else:
            self.conn.execute(sql, values or {})

    def rows(self, sql: str, values: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, values or {}).fetchall()


class _SqliteFile:
    """audit/executions.sqlite beside the file log, root only as the log is (0600, in the
    0700 audit folder). One writer at a time (BEGIN IMMEDIATE), readers never wait."""

    def __init__(self, log: AuditLog):
        self.path = log.home.audit_index_file
        try:
            log.home.audit_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            try:
                self._make(log)
            except sqlite3.DatabaseError as exc:
                if type(exc) is not sqlite3.DatabaseError:  # locked, read-only, ...: not ours
                    raise
                # not a database (a torn or overwritten file): it is derived, so made anew
                _log.warning("%s is not a database (%s): made anew from the log", self.path, exc)
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{self.path}{suffix}").unlink(missing_ok=True)
                self._make(log)
        except (OSError, sqlite3.Error) as exc:
            raise IndexUnavailable(f"{self.path} cannot be kept: {exc}") from None

    def _make(self, log: AuditLog) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            take_folder_owner(fd, log.home.audit_dir)  # on pods, never root's (atomic.py)
        finally:
            os.close(fd)
        with self._open() as conn:
            conn.execute("PRAGMA journal_mode=WAL")  # reads go on while the index catches up
            for statement in SCHEMA:
                conn.execute(statement)

    @contextlib.contextmanager
    def _open(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        try:
            yield conn
        finally:
            conn.close()

    @contextlib.contextmanager
    def writing(self) -> Iterator[_Db]:
        with self._open() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield _Sqlite(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextlib.contextmanager
    def reading(self) -> Iterator[_Db]:
        with self._open() as conn:
            conn.execute("BEGIN")
            try:
                yield _Sqlite(conn)
            finally:
                conn.execute("ROLLBACK")


class _SqliteMemory:
    """An index in memory, built from the whole log at its first read: the truth `check`
    compares with, and the fallback when the file cannot be kept."""

    def __init__(self) -> None:
        self.conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        self.lock = threading.Lock()
        for statement in SCHEMA:
            self.conn.execute(statement)

    @contextlib.contextmanager
    def writing(self) -> Iterator[_Db]:
        with self.lock:
            yield _Sqlite(self.conn)

    def reading(self) -> contextlib.AbstractContextManager[_Db]:
        return self.writing()


class _Postgres:
    """Tables beside the audit table, in the hub's PostgreSQL database. One writer at a time:
    it holds the index's state row (SELECT ... FOR UPDATE), as appends hold the head row."""

    def __init__(self, log: AuditLog):
        from dossierhub.state.audittable import TableStore  # SQLAlchemy: only when asked

        assert isinstance(log.store, TableStore)
        self.store = log.store

    @contextlib.contextmanager
    def writing(self) -> Iterator[_Db]:
        from sqlalchemy import text

        from dossierhub.state import database

        with self.store.errors():
            self._ensure_schema()
            with database.engine(self.store.url).begin() as conn:
                found = conn.execute(text(f"SELECT id FROM {STATE} WHERE id = 1 FOR UPDATE"))
                if found.first() is None:  # an empty index: its first writer locks the table
                    conn.execute(text(f"LOCK TABLE {STATE} IN EXCLUSIVE MODE"))
                yield _Alchemy(conn)

    @contextlib.contextmanager
    def reading(self) -> Iterator[_Db]:
        from dossierhub.state import database

        with self.store.errors(), database.engine(self.store.url).connect() as conn:
            try:
                yield _Alchemy(conn)
            finally:
                conn.rollback()

    def _ensure_schema(self) -> None:
        from sqlalchemy import text

        from dossierhub.state import database

        key = self.store.url.render_as_string(hide_password=False)
        if key in _schema_made:
            return
        with database.engine(self.store.url).begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('dossierhub executions'))"))
            for statement in SCHEMA:
                conn.execute(text(statement))
        _schema_made.add(key)


_schema_made: set[str] = set()


class _Alchemy:
    def __init__(self, conn: Any):
        self.conn = conn

    def run(self, sql: str, values: Values | None = None) -> None:
        from sqlalchemy import text

        self.conn.execute(text(sql), values or {})

    def rows(self, sql: str, values: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        from sqlalchemy import text

        return [tuple(row) for row in self.conn.execute(text(sql), values or {})]
