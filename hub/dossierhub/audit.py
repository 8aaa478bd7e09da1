"""Tamper-evident audit log: HOME/audit/audit.jsonl, one JSON record per line, hash-chained.

Each record carries `prev`, the SHA-256 of the previous record's line, and `mac`, an HMAC of
the record under a key derived from the master key. The head (sequence number and hash of the
last record) is kept apart in head.json, also with an HMAC, so editing, deleting, reordering
and cutting off the tail are all caught: a forger would need the master key.

`actor` is the person a record is about (for `report release --user NAME`, NAME); `channel`
(the way in: cli, service, hub) and `os_user` (the Unix login of the process) say who could
claim that, so a release typed on the command line is not taken for one made in the pages.
Both are covered by the MAC and the chain; records written before they existed lack them and
still verify.

A process killed between writing its record and moving the head leaves one authenticated
record past the head; verify accepts exactly that, and the next append moves the head on.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import hmac
import json
import os
import pwd
from dataclasses import dataclass
from typing import Any

from filelock import FileLock

from .home import Home
from .pseudonym import MasterKeyError, read_master_key

GENESIS = "0" * 64

_channel = "python"  # dossierhub used as a library (a script, a test): no entry point said


def set_channel(name: str) -> None:
    """Name the way into dossierhub this process serves, once, at its entry point: "cli" for
    the dossierhub command, "service" for the web service, "hub" inside JupyterHub. Every
    record this process appends from then on carries it."""
    global _channel
    _channel = name


def current_actor() -> str:
    """The person behind a command: the sudo caller if any, else the login user."""
    return os.environ.get("SUDO_USER") or getpass.getuser()


def current_os_user() -> str:
    """The Unix login of this process, with the sudo caller beside it ("root (sudo: alice)").

    SUDO_USER is only what the environment says, so it never replaces the effective user."""
    uid = os.geteuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:  # a uid without a passwd entry (a container)
        name = f"uid {uid}"
    caller = os.environ.get("SUDO_USER")
    return f"{name} (sudo: {caller})" if caller else name


@dataclass(frozen=True)
class Verification:
    ok: bool
    records: int
    message: str
    first_bad: int | None = None


class AuditLog:
    def __init__(self, home: Home):
        self.home = home
        self.path = home.audit_dir / "audit.jsonl"
        self.head_path = home.audit_dir / "head.json"
        self._lock = FileLock(str(home.audit_dir / ".lock"))

    def _mac_key(self) -> bytes | None:
        try:
            master = read_master_key(self.home.master_key_file)
        except MasterKeyError:
            return None
        return hmac.new(master, b"dossierhub audit head", hashlib.sha256).digest()

    def _head_mac(self, key: bytes, seq: int, digest: str) -> str:
        return hmac.new(key, f"{seq}:{digest}".encode(), hashlib.sha256).hexdigest()

    def append(self, action: str, actor: str | None = None, **details: Any) -> dict[str, Any]:
        """Append one record; serialized across processes by a file lock."""
        self.home.audit_dir.mkdir(parents=True, exist_ok=True)
        with self._lock:
            seq, prev = self._read_head()
            seq, prev = self._adopt_interrupted(seq, prev)
            record: dict[str, Any] = {
                "seq": seq + 1,
                "time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
                "actor": actor or current_actor(),
                "channel": _channel,
                "os_user": current_os_user(),
                "action": action,
                "details": details,
                "prev": prev,
            }
            key = self._mac_key()
            if key is not None:
                record["mac"] = _record_mac(key, record)
            line = _line(record)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as handle:
                handle.write(line + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            self._write_head(record["seq"], _digest(line))
        return record

    def _adopt_interrupted(self, seq: int, prev: str) -> tuple[int, str]:
        """Continue after an authenticated record whose head update was cut short."""
        lines = self._lines()
        key = self._mac_key()
        if len(lines) == seq + 1 and key is not None:
            try:
                record = json.loads(lines[-1])
            except ValueError:
                return seq, prev
            if record.get("prev") == prev and record.get("mac") == _record_mac(key, record):
                return seq + 1, _digest(lines[-1])
        return seq, prev

    def read(self) -> list[dict[str, Any]]:
        """The records as written, oldest first; lines that do not parse are skipped
        (verify() names them)."""
        records = []
        for line in self._lines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        return records

    def _lines(self) -> list[str]:
        return self.path.read_text("utf-8").splitlines() if self.path.exists() else []

    def _read_head(self) -> tuple[int, str]:
        if self.head_path.exists():
            head = json.loads(self.head_path.read_text(encoding="utf-8"))
            return int(head["seq"]), str(head["hash"])
        if self.path.exists() and self.path.stat().st_size:
            # A log without a head (the head was lost): continue from the last line as written.
            lines = self.path.read_text(encoding="utf-8").splitlines()
            return len(lines), _digest(lines[-1])
        return 0, GENESIS

    def _write_head(self, seq: int, digest: str) -> None:
        head: dict[str, Any] = {"seq": seq, "hash": digest}
        key = self._mac_key()
        if key is not None:
            head["mac"] = self._head_mac(key, seq, digest)
        tmp = self.head_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(head) + "\n", encoding="utf-8")
        os.replace(tmp, self.head_path)

    def verify(self) -> Verification:
        """Walk the chain; name the first record that does not fit."""
        lines = self._lines()
        key = self._mac_key()
        prev = GENESIS
        for number, line in enumerate(lines, start=1):
            try:
                record = json.loads(line)
                seq, claimed = int(record["seq"]), record["prev"]
            except (ValueError, KeyError, TypeError):
                return _broken(number, f"record {number} (line {number}) is not a valid record")
            if seq != number:
                return _broken(
                    number,
                    f"record {number} (line {number}) has sequence number {seq}: records were "
                    "deleted, inserted or reordered here",
                )
            if claimed != prev:
                return _broken(
                    number,
                    f"record {number} does not follow its predecessor (hash mismatch): record "
                    f"{number - 1} was changed, or records were removed or reordered",
                )
            if key is not None and record.get("mac") != _record_mac(key, record):
                return _broken(number, f"record {number} was changed (its MAC does not match)")
            prev = _digest(line)
        return self._check_head(len(lines), prev, key)

    def _check_head(self, count: int, last: str, key: bytes | None) -> Verification:
        if not self.head_path.exists():
            if count == 0:
                return Verification(True, 0, "the audit log is empty")
            return _broken(count, "the head file audit/head.json is missing")
        head = json.loads(self.head_path.read_text("utf-8"))
        seq, digest = int(head.get("seq", -1)), str(head.get("hash", ""))
        if key is not None and not hmac.compare_digest(
            str(head.get("mac", "")), self._head_mac(key, seq, digest)
        ):
            return _broken(min(seq, count) or 1, "the head file audit/head.json was altered")
        if count < seq:
            return _broken(
                count + 1,
                f"the log ends at record {count} but {seq} were written: records "
                f"{count + 1} to {seq} were cut off",
            )
        if count == seq + 1 and key is not None:
            # the last append was interrupted after its (authenticated) record was written
            return Verification(
                True,
                count,
                f"{count} records, chain intact (the last "
                "append was interrupted before updating the head)",
            )
        if count > seq:
            return _broken(seq + 1, f"records {seq + 1} to {count} were added outside dossierhub")
        if digest != last:
            return _broken(count, f"record {count} (the last one) was changed")
        note = "" if key is not None else " (head not authenticated: master key unavailable)"
        return Verification(True, count, f"{count} records, chain intact{note}")


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, ensure_ascii=False, default=str)


def _record_mac(key: bytes, record: dict[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "mac"}
    return hmac.new(key, _line(body).encode("utf-8"), hashlib.sha256).hexdigest()


def _digest(line: str) -> str:
    return hashlib.sha256(line.encode("utf-8")).hexdigest()


def _broken(number: int, message: str) -> Verification:
    return Verification(False, number, message, first_bad=number)
