"""Where the audit log's records and head are kept: a file under HOME, or a table in the hub's
PostgreSQL database. state/audit.py builds, chains, authenticates and verifies the records
the same way for both; a store only keeps lines and the head, and serializes appends.

- `FileStore` (the single-machine default): HOME/audit/audit.jsonl and head.json under a file
  lock. An append writes the record, then the head, so it can be cut between the two.
- `TableStore` (`audit.store: postgresql`; state/audittable.py): every record's line, byte
  for byte as the file holds it, in `dossierhub_audit_records` (seq, line), and head.json's
  object in the `head` row of `dossierhub_audit_state`. An append is one transaction that
  first locks the head row (SELECT ... FOR UPDATE): the database serializes appends from any
  process on any machine, the lock goes with the transaction (a writer that dies releases
  it), and the record and the head are committed together, so an append is never half done.
  `seq` is the primary key: should two writers ever get past the lock, the second insert
  fails instead of forking the chain.

`dossierhub.state.audit.open_store` is the one place that decides which store a HOME uses,
from settings.yaml.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from filelock import FileLock

from dossierhub.state.atomic import take_folder_owner, write_json
from dossierhub.state.home import Home


@dataclass(frozen=True)
class Mark:
    """A record a reader of the log read last (state/auditindex.py): its number, the SHA-256
    of its line and, in the file, the byte offset the line starts at (0 in the table)."""

    seq: int
    digest: str
    offset: int


# lines_since's answer: (seq, offset, line) of each record after the mark
Tail = list[tuple[int, int, str]]


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
        """The records' lines. Split at "\\n" only: a record is written with
        ensure_ascii=False, so text in it (a cell id, a notebook's name) can hold U+2028 or
        U+2029, which str.splitlines would also split at, hiding the record."""
        path = self.home.audit_log_file
        if not path.exists():
            return []
        lines = path.read_bytes().decode("utf-8").split("\n")
        return lines[:-1] if lines[-1] == "" else lines

    def last_line(self) -> str | None:
        """The log's last line (None for an empty or missing log), read from the end: an
        append looks at it, and must not cost the whole log."""
        try:
            handle = self.home.audit_log_file.open("rb")
        except FileNotFoundError:
            return None
        with handle:
            end = handle.seek(0, os.SEEK_END)
            found, start, step = b"", end, 65536
            while start > 0:
                start, step = max(0, end - step), step * 2  # a batch's line can be megabytes
                handle.seek(start)
                found = handle.read(end - start)
                if found.rstrip(b"\n").count(b"\n"):  # the line before the last begins here
                    break
        line = found.rstrip(b"\n").rsplit(b"\n", 1)[-1] if found.strip(b"\n") else None
        return line.decode("utf-8", errors="replace") if line is not None else None

    def lines_since(self, mark: Mark | None) -> Tail | None:
        """The whole lines after `mark` (all for None), each with its number and the byte
        offset it starts at; None when the line at the mark is not the one it names (the
        log was cut, replaced or put back). A line still being appended is left for the next
        read."""
        path = self.home.audit_log_file
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            return [] if mark is None else None
        with handle:
            seq, offset = (0, 0) if mark is None else (mark.seq, mark.offset)
            handle.seek(offset)
            if mark is not None:
                last = handle.readline()
                if not last.endswith(b"\n") or _digest(last[:-1]) != mark.digest:
                    return None
                offset += len(last)
            data = handle.read()
        tail: Tail = []
        for raw in data.split(b"\n")[:-1]:  # the piece after the last "\n" is not whole yet
            seq += 1
            tail.append((seq, offset, raw.decode("utf-8", errors="replace")))
            offset += len(raw) + 1
        return tail

    def head_text(self) -> str | None:
        path = self.home.audit_head_file
        return path.read_text("utf-8") if path.exists() else None

    def write(self, line: str, head: dict[str, Any]) -> None:
        """Inside exclusive(): the record (synced), then the head."""
        fd = os.open(self.home.audit_log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        take_folder_owner(fd, self.home.audit_dir)  # on pods, never root's (atomic.py)
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
            write_json(self.home.audit_witness_file, change(object_of(self.witness_text())))


def _digest(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def object_of(found: str | None) -> dict[str, Any]:
    """A stored JSON object ({} when missing or not one)."""
    try:
        state = json.loads(found) if found else {}
    except ValueError:
        return {}
    return state if isinstance(state, dict) else {}
