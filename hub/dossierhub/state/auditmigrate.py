"""`dossierhub audit migrate`: the file log (audit/audit.jsonl) moved into the PostgreSQL
table, line for line, so every hash, MAC and release head stays valid.

Safe to run again and safe to fail: the file log is only read (under its lock, so nothing on
this machine appends to it meanwhile); the table is filled in one transaction holding its head
row, which checks the chain it holds before committing, so a failure leaves the table as it
was. A table that already holds the file's first records gets the rest (records appended to
the file since an earlier run); one that holds other records is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from dossierhub.state.audit import AuditLog, Verification, _digest
from dossierhub.state.auditstore import FileStore
from dossierhub.state.audittable import TableStore, table_store
from dossierhub.state.home import Home


class MigrationRefused(Exception):
    """The file log cannot be moved; the message says why, and that nothing was changed."""


@dataclass(frozen=True)
class Migration:
    moved: int  # records copied by this run (0: the table held them all already)
    table: TableStore
    verification: Verification  # the table's, after the move


def migrate_to_table(home: Home) -> Migration:
    """Move the file log into the table `hub.db_url` names and verify it there."""
    table = table_store(home)
    source = FileStore(home)
    file_log = AuditLog(home, store=source)
    with source.exclusive():
        checked = file_log.verify()
        if not checked.ok:
            where = f" at record {checked.first_bad}" if checked.first_bad else ""
            raise MigrationRefused(
                f"the file log is broken{where}: {checked.message}; a broken log is not moved, "
                "nothing was changed"
            )
        keys = file_log._keys()
        if keys is None:
            raise MigrationRefused(
                f"{file_log._key_source()} is missing or unreadable: the table's head must be "
                "authenticated with the audit key; nothing was changed"
            )
        moved = _fill(AuditLog(home, store=table), source.lines(), keys.record)
        noted = source.witness_text()
        if noted:  # what the witness last did, for `audit verify` to go on reporting
            table.update_witness(lambda state: state or json.loads(noted))
    return Migration(moved, table, AuditLog(home, store=table).verify())


def _fill(target: AuditLog, lines: list[str], key: bytes) -> int:
    """Add the lines the table lacks and move its head, in one transaction."""
    table = target.store
    assert isinstance(table, TableStore)
    with table.exclusive():
        have = table.lines()
        if have == lines:
            return 0
        if have != lines[: len(have)]:
            differs = next(
                (n for n, (a, b) in enumerate(zip(have, lines, strict=False), 1) if a != b), None
            )
            why = (
                f"its record {differs} is not the file's"
                if differs
                else f"it holds {len(have)} records, the file {len(lines)}"
            )
            raise MigrationRefused(
                f"{table.describe()} already holds another log ({why}): records were appended "
                "to the table since it became the store; nothing was changed"
            )
        table.insert_lines(len(have) + 1, lines[len(have) :])
        table.set_head(target._head_object(len(lines), _digest(lines[-1]), key))
        check = target._check_chain(table.lines(), key, [])
        if not check.ok:  # rolls the transaction back: the table stays as it was
            raise MigrationRefused(
                f"the table did not verify after the move (record {check.first_bad}: "
                f"{check.message}); nothing was changed"
            )
    return len(lines) - len(have)
