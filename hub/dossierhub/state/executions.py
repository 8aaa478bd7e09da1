"""Who ran what in a shared workspace: the execution records and their one way into the audit log.

A workspace's network bridge (workspaces/netbridge.py, root, outside the sandbox) sees every
kernel message a person's browser sends and names the person from the credential that opened
the connection, checked with the hub. It writes what it saw in batches (`write_batch`) into a
spool only root can reach, HOME/audit/spool/<dossier>/. The dossierhub service takes each
batch, oldest first, into the audit log as ONE chained record, `workspace.executions`, that
holds the batch's events (`ingest_spool`), then removes it. So the audit log is the store of
executions: they are as tamper-evident as the rest of the trail, kept in whichever store
`audit.store` names, and `audit verify` covers them.

Everything else reads executions through `executions_from` (rows with their outcome joined),
`latest_by_cell` (the panel: who last ran each cell), `kernel_events_from` (kernels people
started, restarted, interrupted or shut down) and `export_rows` (an access request's CSV or
JSON); nobody else parses events. Nothing of a cell's output is ever recorded; the code
only as a SHA-256 and its first line, unless settings say `audit.executions_code: full`.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter, ValidationError, field_validator

from dossierhub.state.atomic import write_atomic
from dossierhub.state.home import Home
from dossierhub.state.models import DOSSIER_ID, Strict

ACTION = "workspace.executions"
ACTOR = "netbridge"  # the records' maker; the people are in each event
FORMAT = 1
BATCH_ID = re.compile(r"\A[0-9A-Za-z][0-9A-Za-z._-]{0,120}\Z")
FIRST_LINE_CHARS = 120

_log = logging.getLogger("dossierhub.executions")

Text = Annotated[str, Field(max_length=400)]
Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Outcome = Literal["ok", "error", "aborted"]


class ExecuteEvent(Strict):
    """Code a person sent to a kernel (execute_request, a debugger request that runs code, or
    an answer to input(), which is code under pdb)."""

    event: Literal["execute"]
    at: dt.datetime
    person: Text
    kernel: Text
    channel: Literal["shell", "control", "stdin"]
    kind: Literal["execute", "debug", "input"]  # input: an answer to input(), code under pdb
    msg_id: Text
    cell_id: Text | None = None  # the client's claim (JupyterLab's cell id)
    path: Text | None = None  # the workspace's claim (its sessions)
    code_sha256: Hex
    first_line: Annotated[str, Field(max_length=FIRST_LINE_CHARS)]
    code: str | None = None  # only with audit.executions_code: full; at most 64 KiB of it
    code_length: int | None = None  # the whole code's length when `code` was cut
    outcome: Outcome | None = None


class OutcomeEvent(Strict):
    """The reply to an execute event that left in an earlier batch."""

    event: Literal["outcome"]
    at: dt.datetime
    kernel: Text
    msg_id: Text
    outcome: Outcome


class RefusedEvent(Strict):
    """A connection or message the bridge did not let through, and why."""

    event: Literal["refused"]
    at: dt.datetime
    person: Text | None = None
    kernel: Text | None = None
    reason: Annotated[str, Field(max_length=1000)]


class KernelEvent(Strict):
    """A person started, restarted, interrupted or shut down a kernel over the REST API (or
    over the kernel's websocket: all but a start)."""

    event: Literal["kernel"]
    at: dt.datetime
    person: Text
    kernel: Text | None = None
    action: Literal["start", "restart", "interrupt", "shutdown"]
    path: Text | None = None


Event = Annotated[
    ExecuteEvent | OutcomeEvent | RefusedEvent | KernelEvent, Field(discriminator="event")
]


class Batch(Strict):
    """One spool file: what one bridge saw in one flush."""

    format: Literal[1]
    dossier: str
    batch: str
    events: list[Event] = Field(min_length=1, max_length=100_000)

    @field_validator("dossier")
    @classmethod
    def _dossier_id(cls, value: str) -> str:
        if not DOSSIER_ID.match(value):
            raise ValueError("not a dossier id")
        return value

    @field_validator("batch")
    @classmethod
    def _batch_id(cls, value: str) -> str:
        if not BATCH_ID.match(value):
            raise ValueError("not a batch id (letters, digits, . _ -)")
        return value


_BATCH = TypeAdapter(Batch)


class SpoolError(ValueError):
    """A batch that cannot be spooled as given (names what and why)."""


def spool_file(home: Home, dossier_id: str, batch_id: str) -> Path:
    if not DOSSIER_ID.match(dossier_id):
        raise SpoolError(f"{dossier_id!r} is not a dossier id")
    if not BATCH_ID.match(batch_id):
        raise SpoolError(f"{batch_id!r} is not a batch id (letters, digits, . _ -)")
    return home.execution_spool_dir(dossier_id) / f"{batch_id}.json"


def write_batch(
    home: Home, dossier_id: str, batch_id: str, events: list[dict[str, Any]], *, mode: int = 0o600
) -> Path:
    """Spool one batch (root only: the folders 0700, the file 0600, written atomically: the
    service never reads half a batch). The events are checked here, so a bridge learns at
    once of an event the service would refuse. A pod's recorder writes `mode` 0640 into the
    folder apply made for it (`SPOOL_FOLDER_MODE`), whose group is the service's."""
    path = spool_file(home, dossier_id, batch_id)
    batch_of(dossier_id, batch_id, events)
    document = {"format": FORMAT, "dossier": dossier_id, "batch": batch_id, "events": events}
    for folder in (path.parent.parent, path.parent):
        folder.mkdir(mode=0o700, exist_ok=True)
    write_atomic(path, json.dumps(document, separators=(",", ":")) + "\n", mode=mode)
    return path


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}"


SPOOL_FOLDER_MODE = 0o2770
"""A pod's spool folder, made by apply: its recorder's number owns it, the service's group
(the control identity's) reads and removes its batches, setgid so each batch takes that group."""


def spooled(home: Home) -> list[Path]:
    """The batches waiting, per dossier oldest first (batch ids sort in order). A folder that
    is a link is not read, nor one anyone may write in (said so in the log)."""
    root = home.execution_spool_root
    if not root.is_dir():
        return []
    found = []
    for folder in sorted(root.iterdir()):
        if not folder.is_dir() or folder.is_symlink() or not DOSSIER_ID.match(folder.name):
            continue
        if os.lstat(folder).st_mode & 0o002:
            _log.error("execution spool %s is writable by anyone: not read until closed", folder)
            continue
        found += sorted(
            entry
            for entry in folder.iterdir()
            if entry.suffix == ".json" and not entry.name.startswith(".")
        )
    return found


def _batch_owners(folder: Path) -> set[int]:
    """Who may own a dossier's batches: root (one machine's bridge), whoever the service runs
    as, and the folder's owner (a pod's recorder: only root, apply, gives a folder of
    audit/spool/ to another owner, and only it and the service may write in audit/)."""
    return {0, os.geteuid(), os.lstat(folder).st_uid}


def _open_batch(path: Path) -> bytes:
    """A batch's bytes, read through a descriptor that followed no link, of a plain file with
    one name, of an owner `_batch_owners` allows, written by none but its owner and read by
    nobody outside the group: anything else is refused (ValueError naming why)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            raise ValueError("not a plain file with one name")
        if info.st_uid not in _batch_owners(path.parent):
            raise ValueError(f"owned by uid {info.st_uid}, not by the spool's writer")
        if info.st_mode & 0o027:
            raise ValueError(f"mode {stat.S_IMODE(info.st_mode):04o} lets others write or read it")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read()
    finally:
        os.close(fd)


class Ingester:
    """Takes spooled batches into the audit log, each once (the service runs one). A batch
    already in the log (the service stopped between append and unlink) is only unlinked."""

    def __init__(self, log: Any):  # state.audit.AuditLog (state/audit.py imports this module)
        self.log = log
        self.seen = {
            record["details"].get("batch")
            for record in log.read()
            if record.get("action") == ACTION and isinstance(record.get("details"), dict)
        }

    def ingest(self, home: Home) -> int:
        """Take in every waiting batch; the number of batches appended. A batch that does not
        parse is set aside as <name>.bad (kept: nothing recorded is thrown away) and logged."""
        taken = 0
        stuck: set[str] = set()  # a dossier whose batch could not be appended waits, in order
        for path in spooled(home):
            if path.parent.name in stuck:
                continue
            batch = _read_batch(path)
            if batch is None:
                os.replace(path, path.with_name(path.name + ".bad"))
                continue
            if batch.batch not in self.seen:
                try:
                    append_batch(self.log, batch)
                except Exception:  # one dossier's batch never holds up the others'
                    _log.exception("execution batch %s not taken in yet", path)
                    stuck.add(path.parent.name)
                    continue
                self.seen.add(batch.batch)
                taken += 1
            path.unlink()
        return taken


def _read_batch(path: Path) -> Batch | None:
    try:
        batch = _BATCH.validate_json(_open_batch(path))
    except (OSError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        _log.error("execution batch %s is unreadable, set aside: %s", path, reason)
        return None
    if path.parent.name != batch.dossier or path.stem != batch.batch:
        _log.error("execution batch %s names another dossier or batch, set aside", path)
        return None
    return batch


def append_batch(log: Any, batch: Batch) -> dict[str, Any]:
    """Append `batch` to the audit log `log` as its one `workspace.executions` record."""
    return log.append(ACTION, actor=ACTOR, **audit_details(batch))


def batch_of(dossier_id: str, batch_id: str, events: list[dict[str, Any]]) -> Batch:
    """A batch as the bridge spools it (SpoolError naming the first problem)."""
    document = {"format": FORMAT, "dossier": dossier_id, "batch": batch_id, "events": events}
    try:
        return _BATCH.validate_python(document)
    except ValidationError as exc:
        raise SpoolError(f"batch {batch_id} of dossier {dossier_id}: {_first_error(exc)}") from None


def audit_details(batch: Batch) -> dict[str, Any]:
    """The audit record's details for a batch: a summary a reader of the trail can take in,
    and the events themselves."""
    events = [event.model_dump(mode="json", exclude_none=True) for event in batch.events]
    runs = [event for event in batch.events if isinstance(event, ExecuteEvent)]
    return {
        "dossier": batch.dossier,
        "batch": batch.batch,
        "count": len(runs),
        "people": sorted({event.person for event in runs}),
        "notebooks": sorted({event.path for event in runs if event.path}),
        "events": events,
    }


@dataclass(frozen=True)
class Execution:
    """One execution as people see it, its outcome joined from a later batch when need be."""

    at: dt.datetime
    person: str
    dossier: str
    kernel: str
    channel: str
    kind: str
    msg_id: str
    cell_id: str | None
    path: str | None
    code_sha256: str
    first_line: str
    code: str | None
    outcome: str | None
    batch: str


EXPORT_COLUMNS = (
    "at",
    "person",
    "dossier",
    "path",
    "cell_id",
    "kernel",
    "kind",
    "channel",
    "first_line",
    "code_sha256",
    "outcome",
    "code",
    "event",
)
"""An export's columns. `event` says what a row is: `execution`, or a kernel call (`kernel
start`, `kernel restart`, `kernel interrupt`, `kernel shutdown`), whose row has no code, cell,
channel or outcome. It is last so the earlier columns keep their places for existing readers."""

EXECUTION = "execution"  # the `event` of an execution's export row


@dataclass(frozen=True)
class KernelCall:
    """A kernel a person started, restarted, interrupted or shut down, as people see it."""

    at: dt.datetime
    person: str
    dossier: str
    kernel: str | None
    action: str
    path: str | None
    batch: str


def _events(records: Iterable[dict[str, Any]]) -> Iterable[tuple[str, str, dict[str, Any]]]:
    for record in records:
        details = record.get("details")
        if record.get("action") != ACTION or not isinstance(details, dict):
            continue
        events = details.get("events")
        for event in events if isinstance(events, list) else ():
            if isinstance(event, dict):
                yield str(details.get("dossier")), str(details.get("batch")), event


def _when(value: Any) -> dt.datetime | None:
    try:
        moment = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def executions_from(
    records: Iterable[dict[str, Any]],
    *,
    dossier: str | None = None,
    person: str | None = None,
    path: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> list[Execution]:
    """The executions in audit `records` (as AuditLog.read gives them), oldest first, with
    their outcomes; filtered by dossier, person, notebook path and time (since <= at < until;
    naive times are UTC)."""
    since, until = (_aware(moment) for moment in (since, until))
    outcomes: dict[tuple[str, str, str], str] = {}
    found: list[tuple[str, str, dict[str, Any]]] = []
    for where, batch, event in _events(records):
        if dossier is not None and where != dossier:
            continue  # the cheap tests first: a year's log holds many dossiers' events
        if event.get("event") == "outcome":
            key = (where, str(event.get("kernel")), str(event.get("msg_id")))
            outcomes[key] = str(event.get("outcome"))
        elif (
            event.get("event") == "execute"
            and (person is None or event.get("person") == person)
            and (path is None or event.get("path") == path)
        ):
            found.append((where, batch, event))
    rows = []
    for where, batch, event in found:
        row = _row(where, batch, event, outcomes)
        if row is not None and _wanted(row, dossier, person, path, since, until):
            rows.append(row)
    rows.sort(key=lambda row: row.at)
    return rows


def _aware(moment: dt.datetime | None) -> dt.datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=dt.UTC)


def _row(
    dossier: str, batch: str, event: dict[str, Any], outcomes: dict[tuple[str, str, str], str]
) -> Execution | None:
    at = _when(event.get("at"))
    if at is None:
        return None
    kernel, msg_id = str(event.get("kernel")), str(event.get("msg_id"))
    outcome = event.get("outcome") or outcomes.get((dossier, kernel, msg_id))
    return Execution(
        at=at,
        person=str(event.get("person")),
        dossier=dossier,
        kernel=kernel,
        channel=str(event.get("channel")),
        kind=str(event.get("kind")),
        msg_id=msg_id,
        cell_id=event.get("cell_id"),
        path=event.get("path"),
        code_sha256=str(event.get("code_sha256")),
        first_line=str(event.get("first_line", "")),
        code=event.get("code"),
        outcome=outcome,
        batch=batch,
    )


def _wanted(
    row: Execution,
    dossier: str | None,
    person: str | None,
    path: str | None,
    since: dt.datetime | None,
    until: dt.datetime | None,
) -> bool:
    return (
        (dossier is None or row.dossier == dossier)
        and (person is None or row.person == person)
        and (path is None or row.path == path)
        and (since is None or row.at >= since)
        and (until is None or row.at < until)
    )


@dataclass(frozen=True)
class Refusal:
    """A connection or message the bridge did not let through (a kernel channel opened with
    the workspace's own token, a message it could not read), and why."""

    at: dt.datetime
    dossier: str
    person: str | None
    kernel: str | None
    reason: str
    batch: str


def refusals_from(
    records: Iterable[dict[str, Any]], *, dossier: str | None = None
) -> list[Refusal]:
    """The refusals in audit `records`, oldest first, of one dossier or all."""
    found = []
    for where, batch, event in _events(records):
        at = _when(event.get("at"))
        if event.get("event") != "refused" or at is None:
            continue
        if dossier is None or where == dossier:
            person, kernel = event.get("person"), event.get("kernel")
            found.append(
                Refusal(
                    at=at,
                    dossier=where,
                    person=str(person) if person is not None else None,
                    kernel=str(kernel) if kernel is not None else None,
                    reason=str(event.get("reason", "")),
                    batch=batch,
                )
            )
    found.sort(key=lambda refusal: refusal.at)
    return found


def kernel_events_from(
    records: Iterable[dict[str, Any]],
    *,
    dossier: str | None = None,
    person: str | None = None,
    path: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> list[KernelCall]:
    """The kernel calls in audit `records`, oldest first (as logged among equal times),
    filtered as `executions_from` filters executions."""
    since, until = (_aware(moment) for moment in (since, until))
    found = []
    for where, batch, event in _events(records):
        call = _kernel_call(where, batch, event)
        if call is not None and (
            (dossier is None or call.dossier == dossier)
            and (person is None or call.person == person)
            and (path is None or call.path == path)
            and (since is None or call.at >= since)
            and (until is None or call.at < until)
        ):
            found.append(call)
    found.sort(key=lambda call: call.at)
    return found


def _kernel_call(dossier: str, batch: str, event: dict[str, Any]) -> KernelCall | None:
    at = _when(event.get("at"))
    if event.get("event") != "kernel" or at is None:
        return None
    kernel, path = event.get("kernel"), event.get("path")
    return KernelCall(
        at=at,
        person=str(event.get("person", "")),
        dossier=dossier,
        kernel=kernel if isinstance(kernel, str) else None,
        action=str(event.get("action", "")),
        path=path if isinstance(path, str) else None,
        batch=batch,
    )


def kernel_calls_from(
    records: Iterable[dict[str, Any]], *, dossier: str | None = None
) -> list[tuple[str, str]]:
    """(person, action) of each kernel started, restarted, interrupted or shut down over the
    workspace's REST API in audit `records`, oldest first, of one dossier or all."""
    return [(call.person, call.action) for call in kernel_events_from(records, dossier=dossier)]


def latest_by_cell(executions: Iterable[Execution]) -> dict[str, Execution]:
    """cell id -> the last execution of that cell (executions without a cell id are left out)."""
    latest: dict[str, Execution] = {}
    for row in executions:
        if row.cell_id and (row.cell_id not in latest or latest[row.cell_id].at <= row.at):
            latest[row.cell_id] = row
    return latest


def export_rows(
    executions: Iterable[Execution], kernel_calls: Iterable[KernelCall] = ()
) -> list[dict[str, str | None]]:
    """The rows of an export, with `EXPORT_COLUMNS` as keys, times in UTC ISO 8601: the
    executions and the kernel calls in one list, oldest first (an execution before a kernel
    call of the same moment)."""
    rows = [(row.at, _execution_row(row)) for row in executions]
    rows += [(call.at, _kernel_row(call)) for call in kernel_calls]
    rows.sort(key=lambda pair: pair[0])  # stable: each list's own order among equal times
    return [row for _at, row in rows]


def _execution_row(row: Execution) -> dict[str, str | None]:
    return {
        "at": row.at.astimezone(dt.UTC).isoformat(),
        "person": row.person,
        "dossier": row.dossier,
        "path": row.path,
        "cell_id": row.cell_id,
        "kernel": row.kernel,
        "kind": row.kind,
        "channel": row.channel,
        "first_line": row.first_line,
        "code_sha256": row.code_sha256,
        "outcome": row.outcome,
        "code": row.code,
        "event": EXECUTION,
    }


def _kernel_row(call: KernelCall) -> dict[str, str | None]:
    """A kernel call as an export row: what an execution's row says of where and who, and
    nothing of code (none ran)."""
    row: dict[str, str | None] = dict.fromkeys(EXPORT_COLUMNS)
    row.update(
        at=call.at.astimezone(dt.UTC).isoformat(),
        person=call.person,
        dossier=call.dossier,
        path=call.path,
        kernel=call.kernel,
        event=f"kernel {call.action}",
    )
    return row


def export_text(
    executions: Iterable[Execution],
    form: Literal["csv", "json"],
    kernel_calls: Iterable[KernelCall] = (),
) -> str:
    """An export as CSV (a header row of EXPORT_COLUMNS) or as a JSON list of objects."""
    rows = export_rows(executions, kernel_calls)
    if form == "json":
        return json.dumps(rows, indent=2, ensure_ascii=False) + "\n"
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: _cell(value) for key, value in row.items()} for row in rows)
    return out.getvalue()


def _cell(value: str | None) -> str | None:
    """A CSV cell a spreadsheet shows as text: a first line of code such as `=HYPERLINK(...)`
    is anyone's to write, and the export is opened by an admin (OWASP's CSV injection advice:
    a leading quote)."""
    if value and value[0] in "=+-@\t\r":
        return "'" + value
    return value
