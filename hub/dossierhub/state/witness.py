"""The audit log's witness outside HOME: every append's head, sent to syslog.

Whoever can write HOME can delete audit/ or put back an older copy of it, and the chain and
head.json agree with any such copy. A copy of each head kept where HOME's writers cannot
reach it (the machine's syslog, or a city's SIEM through a remote syslog host) does not:
`dossierhub audit verify --syslog FILE` compares the log with the heads recorded there.

A witness line is the tag `dossierhub-audit:` and one JSON object: the installation's id, the
record's sequence number and hash, its action, and a MAC under the witness key. That MAC is
not head.json's: syslog is read by many, and a head.json MAC from there would let a HOME
writer pair any cut of the log with a valid head.

Sending never loses an append nor holds it up for long: it happens after the record is
written, every socket operation times out (`audit.syslog.timeout_seconds`), and a failure is
returned for the caller to report, never raised.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from logging.handlers import SysLogHandler
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dossierhub.state.home import Home
    from dossierhub.state.settings import AuditSettings, Settings, SyslogSettings

TAG = "dossierhub-audit"


@dataclass(frozen=True)
class SyslogTarget:
    settings: SyslogSettings

    def describe(self) -> str:
        where = self.settings.endpoint()
        if isinstance(where, str):
            return f"syslog {where} (facility {self.settings.facility})"
        host, port = where
        shown = f"[{host}]" if ":" in host else host
        return f"syslog {self.settings.protocol} {shown}:{port} (facility {self.settings.facility})"


def configured_target(home: Home) -> tuple[SyslogTarget | None, str]:
    """The witness settings.yaml asks for, or None and why there is none."""
    audit = _audit_settings(home)
    if audit.witness == "none":
        return None, "none configured (audit.witness: none in settings.yaml)"
    where = audit.syslog.endpoint()
    if audit.witness == "auto" and isinstance(where, str) and not os.path.exists(where):
        return None, (
            f"none configured ({where} does not exist here; set audit.syslog.address in "
            "settings.yaml to the local socket or a remote syslog host)"
        )
    return SyslogTarget(audit.syslog), ""


# settings.yaml as last parsed, by file identity: the hub appends often and YAML is slow
_parsed: dict[Path, tuple[tuple[int, int, int] | None, Settings]] = {}


def _audit_settings(home: Home) -> AuditSettings:
    return cached_settings(home).audit


def cached_settings(home: Home) -> Settings:
    """settings.yaml, parsed again only when the file changed (raises RefusedError when it is
    not valid)."""
    from dossierhub.state.settings import (
        load_settings,  # settings pulls in policy and DuckDB: only when needed
    )

    path = home.settings_file
    try:
        stat = path.stat()
        identity: tuple[int, int, int] | None = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    except FileNotFoundError:
        identity = None
    cached = _parsed.get(path)
    if cached is not None and cached[0] == identity:
        return cached[1]
    settings = load_settings(home)
    _parsed[path] = (identity, settings)
    return settings


def send(target: SyslogTarget, message: dict[str, Any]) -> str | None:
    """Send one witness line; the reason it could not be sent, or None."""
    try:
        handler = _BoundedSysLogHandler(target.settings)
    except OSError as exc:
        return f"cannot reach {target.describe()}: {exc}"
    try:
        text = json.dumps(message, sort_keys=True)
        if handler.socktype == socket.SOCK_STREAM:
            text += "\n"  # one line per message, as syslog servers frame TCP
        handler.emit(logging.makeLogRecord({"msg": text, "levelno": 20, "levelname": "INFO"}))
    finally:
        handler.close()
    if handler.failure is not None:
        return f"cannot send to {target.describe()}: {handler.failure}"
    return None


class _BoundedSysLogHandler(SysLogHandler):
    """The standard SysLogHandler with sockets that time out and errors kept, not printed.

    The standard one connects TCP and sends to a full local socket without a timeout (holding
    an append up as long as the network lets it), and prints a failure to stderr."""

    def __init__(self, settings: SyslogSettings) -> None:
        self.timeout = settings.timeout_seconds
        self.failure: BaseException | None = None
        where = settings.endpoint()
        stream = settings.protocol == "tcp" and not isinstance(where, str)
        super().__init__(
            where,
            SysLogHandler.facility_names[settings.facility],
            socket.SOCK_STREAM if stream else None,
        )
        self.ident = f"{TAG}: "
        self.append_nul = False

    def createSocket(self) -> None:  # the standard library's name
        # never unixsocket: its resend path reconnects without a timeout
        self.unixsocket = False
        if isinstance(self.address, str):
            self.socket, self.socktype = _local_socket(self.address, self.timeout)
        elif self.socktype == socket.SOCK_STREAM:
            self.socket = socket.create_connection(self.address, timeout=self.timeout)
        else:
            family, kind, proto, _, where = socket.getaddrinfo(*self.address, 0, socket.SOCK_DGRAM)[
                0
            ]
            self.socket = socket.socket(family, kind, proto)
            self.socktype = kind
            # resolved once: sendto would look the name up again
            self.address = where  # type: ignore[assignment]  # typeshed omits IPv6's 4-tuple
            self.socket.settimeout(self.timeout)

    def handleError(self, record: logging.LogRecord) -> None:
        self.failure = sys.exc_info()[1]


def _local_socket(path: str, timeout: float) -> tuple[socket.socket, socket.SocketKind]:
    """A connected Unix socket to syslog: datagrams (rsyslog, journald), else a stream."""
    failure: OSError | None = None
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        sock = socket.socket(socket.AF_UNIX, kind)
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except OSError as exc:
            sock.close()
            failure = failure or exc
            continue
        return sock, kind
    assert failure is not None
    raise failure


@dataclass(frozen=True)
class WitnessedHead:
    line: int  # in the syslog file, from 1
    message: dict[str, Any]

    @property
    def seq(self) -> int:
        return int(self.message["seq"])


def read_heads(path: Path) -> Iterator[WitnessedHead]:
    """The witness lines of a syslog file (any installation), as syslog wrote them: the
    timestamp and host before the tag are syslog's, whatever its format."""
    marker = TAG
    with path.open(encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, start=1):
            start = line.find(marker)
            brace = line.find("{", start) if start >= 0 else -1
            if brace < 0 or line[start + len(marker) : brace].strip(" :[]0123456789"):
                continue
            try:
                message = json.loads(line[brace:].rstrip())
                int(message["seq"])
            except (ValueError, KeyError, TypeError):
                continue  # not ours, or cut by the syslog server's line limit
            if isinstance(message, dict):
                yield WitnessedHead(number, message)
