"""Execution records as the dossierhub service appends them (the contract of issue 16): one
`workspace.executions` audit record per batch the workspace's relay spooled, its events
inside. The tests of the views (API, pages, the export) write them this way instead of
running a relay."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
from typing import Any

from dossierhub.state import executions
from dossierhub.state.audit import AuditLog
from dossierhub.state.executions import batch_of
from dossierhub.state.home import Home

_seq = itertools.count(1)


def execute(
    person: str,
    at: dt.datetime,
    code: str,
    *,
    path: str | None = "poverty.ipynb",
    cell_id: str | None = None,
    kernel: str = "k-1",
    outcome: str | None = "ok",
    kind: str = "execute",
) -> dict[str, Any]:
    """An execute event as the relay records it (person from the connection's login)."""
    return {
        "event": "execute",
        "at": at.astimezone(dt.UTC).isoformat(timespec="microseconds"),
        "person": person,
        "kernel": kernel,
        "channel": "shell",
        "kind": kind,
        "msg_id": f"msg-{next(_seq)}",
        "cell_id": cell_id,
        "path": path,
        "code_sha256": hashlib.sha256(code.encode("utf-8")).hexdigest(),
        "first_line": next((line for line in code.splitlines() if line.strip()), "")[:120],
        "outcome": outcome,
    }


def kernel_call(
    person: str,
    at: dt.datetime,
    action: str,
    *,
    path: str | None = None,
    kernel: str = "k-1",
) -> dict[str, Any]:
    """A kernel event as the relay records it: `person` started, restarted, interrupted or
    shut down `kernel` (`path`: the notebook, where the workspace said it)."""
    event = {
        "event": "kernel",
        "at": at.astimezone(dt.UTC).isoformat(timespec="microseconds"),
        "person": person,
        "kernel": kernel,
        "action": action,
    }
    return {**event, "path": path} if path is not None else event


def append_batch(home: Home, dossier: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    """One batch's record, appended by the service's own function (no spool: a running
    service would take a spooled batch in at the same time)."""
    batch = batch_of(dossier, f"test-relay-{next(_seq):08d}", events)
    return executions.append_batch(AuditLog(home), batch)
