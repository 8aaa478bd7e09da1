"""Tamper-evident audit log: HOME/audit/audit.jsonl, one JSON record per line, hash-chained
(or the same lines in a PostgreSQL table: `open_store` decides, auditstore.py and
audittable.py keep them).

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

The chain and the head cannot tell a deleted log, or an older copy of audit/ put back, from
the real one. Three witnesses can (docs/audit.md):

- the genesis record (`audit.genesis`), written at `init` with the installation's id: a HOME
  with a master key and no log, or a log without a genesis, fails verify;
- every released run's release.json carries the head it was released under (`head()`): the
  log must still hold that record, and the release's record after it;
- every append sends its head to syslog (witness.py), which `verify(syslog_file=...)` reads.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import hmac
import json
import logging
import os
import pwd
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dossierhub import __version__
from dossierhub.state import witness
from dossierhub.state.auditstore import FileStore
from dossierhub.state.home import Home
from dossierhub.state.masterkey import MasterKeyError, read_master_key
from dossierhub.state.problems import RefusedError
from dossierhub.state.yamlfile import load_yaml

if TYPE_CHECKING:
    from dossierhub.state.audittable import TableStore

GENESIS = "0" * 64  # the `prev` of record 1
GENESIS_ACTION = "audit.genesis"

_log = logging.getLogger("dossierhub.audit")

_channel = "python"  # dossierhub used as a library (a script, a test): no entry point said


def set_channel(name: str) -> None:
    """Name the way into dossierhub this process serves, once, at its entry point: "cli" for
    the dossierhub command, "service" for the web service, "hub" inside JupyterHub. Every
    record this process appends from then on carries it."""
    global _channel
    _channel = name


def current_actor() -> str:
    """The person behind a command: the sudo caller if any, else the login user; in a pod
    whose uid has no account in its image (the hub's, the service's, apply's), "uid N"."""
    try:
        return os.environ.get("SUDO_USER") or getpass.getuser()
    except (KeyError, OSError):  # getpass asks pwd when no login variable is set
        return f"uid {os.geteuid()}"


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
    # which copy disagrees: "log" (the chain), "head" (head.json), "genesis", "release", "syslog"
    witness: str = "log"
    notes: tuple[str, ...] = ()  # what else was checked, one line each (`audit verify` prints them)


class GenesisRefused(Exception):
    """A genesis record cannot be written (one exists, or no master key to authenticate it)."""


@dataclass(frozen=True)
class _Keys:
    record: bytes  # records and head.json
    witness: bytes  # heads kept outside audit/: syslog lines, release.json
    installation: str  # names this installation in syslog; reveals nothing of the key


KEY_FILE_FORMAT = "dossierhub audit keys 1"


class AuditKeyError(Exception):
    """An audit key file is missing or malformed; its text never appears in the message."""


def derive_keys(master: bytes) -> _Keys:
    """The audit keys, derived one-way from the master key: holding them gives no pseudonym
    key and cannot give back the master key."""

    def derive(label: bytes) -> bytes:
        return hmac.new(master, label, hashlib.sha256).digest()

    return _Keys(
        record=derive(b"dossierhub audit head"),
        witness=derive(b"dossierhub audit witness"),
        installation=derive(b"dossierhub installation id").hex()[:16],
    )


def write_key_file(home: Home, out: Path) -> None:
    """Write the audit keys (and nothing else of the master key) to `out`, mode 0600, for a
    process that appends without the master key (`audit.key_file`; a Kubernetes Secret).
    Never overwrites a file."""
    keys = derive_keys(read_master_key(home))
    body = {
        "format": KEY_FILE_FORMAT,
        "installation": keys.installation,
        "record": keys.record.hex(),
        "witness": keys.witness.hex(),
    }
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(body, sort_keys=True) + "\n")
    except OSError:
        out.unlink(missing_ok=True)  # no half-written key file left behind
        raise


def read_key_file(path: Path) -> _Keys:
    where = f"the audit key file {path} (settings.yaml: audit.key_file)"
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AuditKeyError(f"{where} does not exist; `dossierhub audit key` writes it") from None
    except PermissionError:
        raise AuditKeyError(f"{where} cannot be read by this user") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise AuditKeyError(f"{where} is not an audit key file ({type(exc).__name__})") from None
    malformed = AuditKeyError(f"{where} is not an audit key file `dossierhub audit key` wrote")
    if not isinstance(body, dict) or body.get("format") != KEY_FILE_FORMAT:
        raise malformed
    try:
        record, witness_key = bytes.fromhex(body["record"]), bytes.fromhex(body["witness"])
    except (KeyError, TypeError, ValueError):
        raise malformed from None
    installation = body.get("installation")
    if len(record) != 32 or len(witness_key) != 32 or not isinstance(installation, str):
        raise malformed
    return _Keys(record=record, witness=witness_key, installation=installation)


def _key_file(home: Home) -> Path | None:
    """`audit.key_file` from settings.yaml (None when unset or settings.yaml is invalid)."""
    try:
        name = witness.cached_settings(home).audit.key_file
    except RefusedError:
        return None
    return Path(name) if name is not None else None


class AuditLog:
    """The installation's audit log, in the store settings.yaml names (`open_store`: the file
    under HOME by default, the hub's PostgreSQL with `audit.store: postgresql`)."""

    def __init__(self, home: Home, store: FileStore | TableStore | None = None):
        self.home = home
        self.store = store if store is not None else open_store(home)

    def _keys(self) -> _Keys | None:
        """The audit keys: from `audit.key_file` when settings.yaml names one (the master key
        is then never read), else derived from the master key; None when unavailable."""
        key_file = _key_file(self.home)
        if key_file is not None:
            try:
                return read_key_file(key_file)
            except AuditKeyError as exc:
                _log.warning("%s", exc)
                return None
        try:
            return derive_keys(read_master_key(self.home))
        except MasterKeyError:
            return None

    def _initialised(self) -> bool:
        """This HOME was initialised: it has its master key, or its keys come from a key file."""
        return self.home.master_key_file.exists() or _key_file(self.home) is not None

    def _key_source(self) -> str:
        found = _key_file(self.home)
        return str(found) if found is not None else self.home.relative(self.home.master_key_file)

    def _mac_key(self) -> bytes | None:
        keys = self._keys()
        return keys.record if keys else None

    def _head_mac(self, key: bytes, seq: int, digest: str) -> str:
        return hmac.new(key, f"{seq}:{digest}".encode(), hashlib.sha256).hexdigest()

    def installation_id(self) -> str | None:
        """This installation's id in witness lines (None without the master key)."""
        keys = self._keys()
        return keys.installation if keys else None

    def append(self, action: str, actor: str | None = None, **details: Any) -> dict[str, Any]:
        """Append one record, then send its head to the witness (which never fails the append)."""
        record, digest = self._append(action, actor, details)
        self._witness(record, digest)
        return record

    def write_genesis(self, reason: str) -> dict[str, Any]:
        """Write the log's genesis record: at `init` on a new HOME ("init"), or once by an
        admin for a log begun without one ("adopted" when it holds records, else "explicit").

        Refused when the log has a genesis already or the master key is unavailable (an
        unauthenticated genesis would prove nothing)."""
        keys = self._keys()
        if keys is None:
            raise GenesisRefused(
                f"{self._key_source()} is missing or unreadable: "
                "a genesis record must be authenticated with it"
            )
        with self.store.exclusive():  # one genesis, even with two admins at it (re-entrant)
            records = self.read()
            found = _genesis_of(records)
            if found is not None:
                raise GenesisRefused(
                    f"the audit log already has its genesis: record {found.get('seq')}, "
                    f"written {found.get('time')}"
                )
            details: dict[str, Any] = {
                "installation": keys.installation,
                "reason": "adopted" if records else reason,
                "home": str(self.home.root),
                "host": socket.gethostname(),
                "version": __version__,
            }
            if records:
                details.update(
                    records_before=len(records),
                    first_time=records[0].get("time"),
                    last_time=records[-1].get("time"),
                )
            record, digest = self._append(GENESIS_ACTION, None, details)
        self._witness(record, digest)
        return record

    def genesis(self) -> dict[str, Any] | None:
        """The log's genesis record, if it has one."""
        return _genesis_of(self.read())

    def head(self) -> dict[str, Any]:
        """The head as it stands, for a copy kept outside audit/ (a release's release.json):
        {"seq", "hash", "mac"}. The MAC is under the witness key, not head.json's, so the copy
        cannot be put in place of head.json (mac None without the master key)."""
        with self.store.exclusive():
            seq, digest = self._adopt_interrupted(*self._read_head())
        keys = self._keys()
        mac = _witness_mac(keys, seq, digest) if keys else None
        return {"seq": seq, "hash": digest, "mac": mac}

    def _append(
        self, action: str, actor: str | None, details: dict[str, Any]
    ) -> tuple[dict[str, Any], str]:
        """Write one record and move the head; serialized across processes by the store (a
        file lock, or the head row's lock in PostgreSQL). What does not depend on the head is
        gathered before taking the lock, which every other writer waits on."""
        key = self._mac_key()
        who = {"actor": actor or current_actor(), "channel": _channel, "os_user": current_os_user()}
        with self.store.exclusive():
            seq, prev = self._read_head()
            seq, prev = self._adopt_interrupted(seq, prev)
            record: dict[str, Any] = {
                "seq": seq + 1,
                "time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
                **who,
                "action": action,
                "details": details,
                "prev": prev,
            }
            if key is not None:
                record["mac"] = _record_mac(key, record)
            line = _line(record)
            self.store.write(line, self._head_object(record["seq"], _digest(line), key))
        return record, _digest(line)

    def _witness(self, record: dict[str, Any], digest: str) -> None:
        """Send the new head to the witness; a failure is logged and kept for `audit verify`,
        never raised: the record is written and stays written."""
        seq, target, error = record["seq"], "the witness", None
        try:
            found, _ = witness.configured_target(self.home)
            if found is None:
                return
            target = found.describe()
            keys = self._keys()
            if keys is None:
                error = "the master key is unavailable"
            else:
                message = {
                    "installation": keys.installation,
                    "seq": seq,
                    "hash": digest,
                    "action": record["action"],
                    "mac": _witness_mac(keys, seq, digest),
                }
                error = witness.send(found, message)
        except RefusedError as exc:  # settings.yaml is not valid: the append stands all the same
            error = str(exc)
        except Exception as exc:  # whatever else: the record is written, and stays
            error = f"{type(exc).__name__}: {exc}"
        if error is not None:
            _log.warning("audit record %d was not witnessed: %s", seq, error)
        try:
            self._note_witness(seq, target, error)
        except OSError as exc:  # a full disk, say: the warning above is all there is
            _log.warning("audit/witness.json could not be written: %s", exc)

    def _note_witness(self, seq: int, target: str, error: str | None) -> None:
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")

        def change(state: dict[str, Any]) -> dict[str, Any]:
            if error is None:
                state["sent"] = {"seq": seq, "at": now, "to": target}
            else:
                failed = state.get("failed")
                count = int(failed.get("count", 0)) + 1 if isinstance(failed, dict) else 1
                state["failed"] = {"count": count, "seq": seq, "at": now, "error": error}
            return state

        self.store.update_witness(change)

    def witness_state(self) -> dict[str, Any]:
        """What the witness last did here: {"sent": {seq, at, to}, "failed": {count, seq, at,
        error}} (either may be missing). Only a report: anyone who writes HOME can change it."""
        try:
            state = json.loads(self.store.witness_text() or "{}")
        except ValueError:
            return {}
        return state if isinstance(state, dict) else {}

    def witness_report(self) -> list[str]:
        """Lines for `audit verify`: where heads go, and whether they got there."""
        try:
            target, why = witness.configured_target(self.home)
        except Exception as exc:
            return [f"witness: settings.yaml is not valid, no head is sent: {exc}"]
        lines = [f"witness: {target.describe() if target else why}"]
        state = self.witness_state()
        if isinstance(sent := state.get("sent"), dict):
            lines.append(f"witness: last head sent: record {sent.get('seq')} at {sent.get('at')}")
        if isinstance(failed := state.get("failed"), dict):
            lines.append(
                f"warning: {failed.get('count')} head(s) could not be sent to the witness; the "
                f"last, record {failed.get('seq')} at {failed.get('at')}: {failed.get('error')}"
            )
        return lines

    def _adopt_interrupted(self, seq: int, prev: str) -> tuple[int, str]:
        """Continue after an authenticated record whose head update was cut short (only a
        file can be cut there: the table commits record and head together)."""
        if not isinstance(self.store, FileStore):  # the table: record and head together
            return seq, prev
        # the last line only, not the whole log: every page's decision is an append
        last = self.store.last_line()
        key = self._mac_key()
        if last is not None and key is not None:
            try:
                record = json.loads(last)
            except ValueError:
                return seq, prev
            if (
                isinstance(record, dict)
                and record.get("seq") == seq + 1
                and record.get("prev") == prev
                and record.get("mac") == _record_mac(key, record)
            ):
                return seq + 1, _digest(last)
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
        return self.store.lines()

    def _read_head(self) -> tuple[int, str]:
        found = self.store.head_text()
        if found is not None:
            head = json.loads(found)
            return int(head["seq"]), str(head["hash"])
        lines = self._lines()
        if lines:
            # A log without a head (the head was lost): continue from the last line as written.
            return len(lines), _digest(lines[-1])
        return 0, GENESIS

    def _head_object(self, seq: int, digest: str, key: bytes | None) -> dict[str, Any]:
        """The head as head.json (or the head row) holds it, with its MAC when there is a key."""
        head: dict[str, Any] = {"seq": seq, "hash": digest}
        if key is not None:
            head["mac"] = self._head_mac(key, seq, digest)
        return head

    def verify_and_read(self) -> tuple[Verification, list[dict[str, Any]]]:
        """verify() and read() from one pass over the log, for a page that shows both (the
        audit trail, the admin's overview): the log is read and parsed once, not twice."""
        records: list[dict[str, Any]] = []
        result = self.verify(read_into=records)
        return result, records if records or result.ok else self.read()

    def verify(
        self, syslog_file: Path | None = None, *, read_into: list[dict[str, Any]] | None = None
    ) -> Verification:
        """Walk the chain and check it against head.json, the genesis, every release's head
        and, if given, the heads a syslog file witnessed; name the first record that does
        not fit and which of them disagrees. `read_into` gets every record (as read() gives
        them) when the chain itself holds, whatever else disagrees."""
        lines = self._lines()
        keys = self._keys()
        records: list[dict[str, Any]] = []
        chain = self._check_chain(lines, keys.record if keys else None, records)
        if not chain.ok:
            return chain
        if read_into is not None:
            read_into.extend(records)
        notes: list[str] = []
        genesis = _genesis_of(records)
        problem = self._check_genesis(records, genesis, notes)
        if problem is None:
            problem = self._check_releases(lines, records, keys, notes)
        if problem is None and syslog_file is not None:
            assert genesis is not None  # checked above
            problem = _check_syslog(syslog_file, lines, keys, genesis, notes)
        if problem is not None:
            return problem
        return Verification(True, chain.records, chain.message, notes=tuple(notes))

    def _check_chain(
        self, lines: list[str], key: bytes | None, records: list[dict[str, Any]]
    ) -> Verification:
        """The chain and head.json; fills `records` with the parsed records."""
        prev = GENESIS
        for number, line in enumerate(lines, start=1):
            try:
                record = json.loads(line)
                seq, claimed = int(record["seq"]), record["prev"]
            except (ValueError, KeyError, TypeError):
                place = f"{self.store.unit} {number}"
                return _broken(number, f"record {number} ({place}) is not a valid record")
            records.append(record)
            if seq != number:
                return _broken(
                    number,
                    f"record {number} ({self.store.unit} {number}) has sequence number {seq}: "
                    "records were "
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
        name, found = self.store.head_name, self.store.head_text()
        if found is None:
            if count == 0:
                return Verification(True, 0, "the audit log is empty")
            return _broken(count, f"{name} is missing", "head")
        try:
            head = json.loads(found)
            seq, digest = int(head.get("seq", -1)), str(head.get("hash", ""))
        except (ValueError, AttributeError, TypeError):
            return _broken(count or 1, f"{name} is not valid", "head")
        if key is not None and not _same(str(head.get("mac")), self._head_mac(key, seq, digest)):
            return _broken(min(seq, count) or 1, f"{name} was altered", "head")
        if count < seq:
            return _broken(
                count + 1,
                f"the log ends at record {count} but {seq} were written: records "
                f"{count + 1} to {seq} were cut off",
                "head",
            )
        if count == seq + 1 and key is not None and not self.store.atomic_append:
            # the last append was interrupted after its (authenticated) record was written
            return Verification(
                True,
                count,
                f"{count} records, chain intact (the last "
                "append was interrupted before updating the head)",
            )
        if count > seq and self.store.atomic_append:
            # the table commits each record with its head: a record past it was added, or
            # the head put back, outside dossierhub
            return _broken(
                seq + 1,
                f"records {seq + 1} to {count} lie past {name}: they were added, or the head "
                "was put back, outside dossierhub",
                "head",
            )
        if count > seq:
            return _broken(
                seq + 1, f"records {seq + 1} to {count} were added outside dossierhub", "head"
            )
        if digest != last:
            return _broken(count, f"record {count} (the last one) was changed", "head")
        unavailable = "master key" if _key_file(self.home) is None else "audit key file"
        note = "" if key is not None else f" (head not authenticated: {unavailable} unavailable)"
        return Verification(True, count, f"{count} records, chain intact{note}")

    def _check_genesis(
        self, records: list[dict[str, Any]], genesis: dict[str, Any] | None, notes: list[str]
    ) -> Verification | None:
        """A HOME that was initialised has a log, and the log has its genesis."""
        if not records:
            if self._initialised():
                return _broken(
                    1,
                    "the audit log is missing or empty, yet this HOME was initialised "
                    f"({self._key_source()} exists): the log was deleted",
                    "genesis",
                )
            return _broken(
                1,
                f"there is no audit log and no master key in {self.home.root}: not an "
                "initialised HOME (dossierhub init makes one)",
                "genesis",
            )
        if genesis is None:
            return _broken(
                1,
                "the log has no genesis record: it was deleted and begun again, or begun by a "
                "dossierhub that wrote none; only in the latter case run `dossierhub audit "
                "genesis` once (docs/audit.md)",
                "genesis",
            )
        details = genesis.get("details") or {}
        seq = genesis.get("seq")
        before = f"; records 1 to {seq - 1} predate it" if isinstance(seq, int) and seq > 1 else ""
        notes.append(
            f"genesis: record {seq} ({details.get('reason')}, {genesis.get('time')}), "
            f"installation {details.get('installation')}{before}"
        )
        return None

    def _check_releases(
        self,
        lines: list[str],
        records: list[dict[str, Any]],
        keys: _Keys | None,
        notes: list[str],
    ) -> Verification | None:
        """Every release made under a head: the log holds that head, then the release."""
        released: dict[tuple[str, str], list[int]] = {}
        for record in records:
            if record.get("action") == "report.release":
                details = record.get("details") or {}
                key = (str(details.get("dossier")), str(details.get("run")))
                released.setdefault(key, []).append(int(record["seq"]))
        checked = without = 0
        for path in self.home.release_files():
            where = self.home.relative(path)
            run = (path.parent.parent.name, path.parent.name)
            try:
                release = json.loads(path.read_text("utf-8"))
            except (OSError, ValueError):
                release = None
            # present, the file releases the run (records.is_released), unreadable or not
            if not isinstance(release, dict):
                return _broken(
                    len(lines), f"{where} is not a release record dossierhub wrote", "release"
                )
            head = release.get("audit_head")
            if head is None:
                # from before releases carried a head: the log must still record the release
                if not released.get(run):
                    return _broken(
                        len(lines),
                        f"run {run[1]} of dossier {run[0]} is released ({where}) but the log "
                        "has no report.release for it: the log was rolled back, or the release "
                        "was made outside dossierhub",
                        "release",
                    )
                without += 1
                continue
            problem = _check_release(where, run, head, lines, released.get(run, []), keys)
            if problem is not None:
                return problem
            checked += 1
        if checked or without:
            older = f"; {without} released before releases carried one" if without else ""
            notes.append(f"releases: {checked} carry a head, each in the log{older}")
        return None


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
        from dossierhub.state.audittable import table_store  # SQLAlchemy: only when asked

        return table_store(home)
    return FileStore(home)


def _asks_for_table(home: Home) -> bool:
    try:
        raw = load_yaml(home.settings_file, "settings.yaml").data
    except Exception:  # not even YAML: it asks for nothing
        return False
    audit = raw.get("audit") if isinstance(raw, dict) else None
    return isinstance(audit, dict) and audit.get("store") == "postgresql"


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, ensure_ascii=False, default=str)


def _record_mac(key: bytes, record: dict[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "mac"}
    return hmac.new(key, _line(body).encode("utf-8"), hashlib.sha256).hexdigest()


def _digest(line: str) -> str:
    return hashlib.sha256(line.encode("utf-8")).hexdigest()


def _witness_mac(keys: _Keys, seq: int, digest: str) -> str:
    return hmac.new(keys.witness, f"{seq}:{digest}".encode(), hashlib.sha256).hexdigest()


def _same(given: str, expected: str) -> bool:
    """A constant-time comparison that takes any text (a forged value need not be ASCII)."""
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _genesis_of(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((r for r in records if r.get("action") == GENESIS_ACTION), None)


def _broken(number: int, message: str, witness: str = "log") -> Verification:
    return Verification(False, number, message, first_bad=number, witness=witness)


def _check_release(
    where: str,
    run: tuple[str, str],
    head: Any,
    lines: list[str],
    releases: list[int],
    keys: _Keys | None,
) -> Verification | None:
    """One release.json's audit_head against the log (the run's report.release records at
    `releases`)."""
    count, name = len(lines), "/".join(run)
    try:
        seq, digest = int(head["seq"]), str(head["hash"])
    except (KeyError, TypeError, ValueError):
        return _broken(count, f"{where}: its audit_head is not a head", "release")
    if keys is not None and not _same(str(head.get("mac")), _witness_mac(keys, seq, digest)):
        altered = f"{where}: its audit_head was altered (the MAC does not match)"
        return _broken(min(max(seq, 1), count), altered, "release")
    if seq > count:
        return _broken(
            count + 1,
            f"run {name} was released under record {seq} ({where}), but the log ends at "
            f"record {count}: records {count + 1} to {seq} at least were removed (the log was "
            "rolled back or cut)",
            "release",
        )
    if seq >= 1 and _digest(lines[seq - 1]) != digest:
        return _broken(
            seq,
            f"record {seq} is not the one run {name} was released under ({where}): the log "
            f"was replaced from record {seq} or earlier",
            "release",
        )
    if not any(at > seq for at in releases):
        return _broken(
            seq + 1,
            f"run {name} was released under record {seq} ({where}), but no report.release "
            f"record for it follows: records after {seq} were removed (the log was rolled "
            "back), or the release was interrupted before it was recorded",
            "release",
        )
    return None


def _check_syslog(
    path: Path,
    lines: list[str],
    keys: _Keys | None,
    genesis: dict[str, Any],
    notes: list[str],
) -> Verification | None:
    """The heads a syslog file witnessed for this installation: each must be in the log."""
    installation = keys.installation if keys else (genesis.get("details") or {}).get("installation")
    mine: list[witness.WitnessedHead] = []
    forged = 0
    for head in witness.read_heads(path):
        if head.message.get("installation") != installation:
            continue  # another installation's, or not a head at all
        digest = str(head.message.get("hash"))
        if keys and not _same(str(head.message.get("mac")), _witness_mac(keys, head.seq, digest)):
            forged += 1
            continue
        mine.append(head)
    if forged:
        notes.append(
            f"warning: syslog {path}: {forged} line(s) name installation {installation} with a "
            "MAC that does not match: not sent by dossierhub, ignored"
        )
    count = len(lines)
    if not mine:
        return Verification(
            False,
            count,
            f"syslog {path} holds no head of installation {installation}: the wrong file, or "
            "the witness does not reach it (see `audit verify` without --syslog)",
            witness="syslog",
        )
    latest = max(mine, key=lambda head: head.seq)
    if latest.seq > count:
        return _broken(
            count + 1,
            f"syslog {path} (line {latest.line}) witnessed record {latest.seq} "
            f"({latest.message.get('action')}), but the log ends at record {count}: records "
            f"{count + 1} to {latest.seq} were removed (the log was rolled back or cut)",
            "syslog",
        )
    for head in sorted(mine, key=lambda head: head.seq):
        if head.seq < 1 or _digest(lines[head.seq - 1]) != head.message.get("hash"):
            return _broken(
                max(head.seq, 1),
                f"record {head.seq} is not the one syslog {path} (line {head.line}) "
                f"witnessed: the log was replaced from record {head.seq} or earlier",
                "syslog",
            )
    unwitnessed = f"; records {latest.seq + 1} to {count} not there" if count > latest.seq else ""
    notes.append(
        f"syslog {path}: {len(mine)} head(s) of installation {installation}, the latest "
        f"record {latest.seq}, each in the log{unwitnessed}"
    )
    return None
