"""Who started, restarted, interrupted or shut down a kernel (issue 16), on the session hub's
running armoede workspace: the workspace's bridge records each such REST call the workspace
carried out under the person whose credential made it, and turns away one made with no
person's credential (the workspace's own token, which every kernel holds) as it turns away
kernel channels. Read as root from the spool and the audit log, and as the admin sees them
in a person's export for an access request."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from dossierhub.state.audit import AuditLog
from dossierhub.state.executions import ACTION

from e2e_hub import ADMIN, Hub
from kernelclient import execute

ARMOEDE = "dossier-armoede"
NOTEBOOK = "kernel-calls.ipynb"


@pytest.fixture(scope="module")
def people(hub: Hub) -> dict[str, dict[str, str]]:
    """Each person's Authorization header."""
    made = {name: hub.token(name) for name in ("a.jansen", "b.devries")}
    hub.ensure_running(ARMOEDE, made["a.jansen"])
    return {name: {"Authorization": f"token {token}"} for name, token in made.items()}


def spooled(hub: Hub) -> list[dict[str, Any]]:
    """Every event of armoede's bridge, in the audit log or still in the spool."""
    events: list[dict[str, Any]] = []
    for record in AuditLog(hub.home).read():
        if record.get("action") == ACTION:
            events += record["details"]["events"]
    for path in sorted(hub.home.execution_spool_dir("armoede").glob("*.json")):
        with contextlib.suppress(OSError, ValueError):  # taken in by the service meanwhile
            events += json.loads(path.read_text())["events"]
    return events


def kernel_events(hub: Hub, kernels: set[str], count: int) -> list[tuple[str, str, str | None]]:
    """(person, action, path) of the `kernel` events about `kernels` once there are `count`
    (the bridge spools every 2 s), oldest first."""
    deadline = time.monotonic() + 10
    while True:
        found = [
            (event["person"], event["action"], event.get("path"))
            for event in spooled(hub)
            if event["event"] == "kernel" and event["kernel"] in kernels
        ]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_kernel_calls_are_recorded_under_the_person_who_made_them(
    hub: Hub, people: dict[str, dict[str, str]]
) -> None:
    """And the workspace's own token, read from a kernel's environment, starts none: 403."""
    base = f"{hub.url}user/{ARMOEDE}/api"
    a, b = people["a.jansen"], people["b.devries"]
    started = httpx.post(f"{base}/kernels", headers=a, json={"name": "dossier"}, timeout=60)
    assert started.status_code == 201, started.text
    kernel = started.json()["id"]
    for action in ("interrupt", "restart"):
        done = httpx.post(f"{base}/kernels/{kernel}/{action}", headers=b, timeout=60)
        assert done.status_code in (200, 204), done.text
    assert httpx.delete(f"{base}/kernels/{kernel}", headers=a, timeout=60).status_code == 204
    # opening a notebook starts its kernel; a colleague opening it too joins that one, runs a
    # cell there and closes the notebook (kernelclient deletes the session: its kernel ends)
    session = {"path": NOTEBOOK, "type": "notebook", "kernel": {"name": "dossier"}}
    opened = httpx.post(f"{base}/sessions", headers=b, json=session, timeout=60)
    assert opened.status_code == 201, opened.text
    code = "import os; print(os.environ['JUPYTERHUB_API_TOKEN'])"
    token = a["Authorization"].removeprefix("token ")
    stolen = execute(hub.url, ARMOEDE, token, code, timeout=60, notebook=NOTEBOOK).stdout.strip()
    kernels = {kernel, opened.json()["kernel"]["id"]}
    assert kernel_events(hub, kernels, 6) == [
        ("a.jansen", "start", None),
        ("b.devries", "interrupt", None),
        ("b.devries", "restart", None),
        ("a.jansen", "shutdown", None),
        ("b.devries", "start", NOTEBOOK),
        ("a.jansen", "shutdown", NOTEBOOK),
    ]

    assert stolen and stolen != token
    before = {k["id"] for k in httpx.get(f"{base}/kernels", headers=a, timeout=60).json()}
    stolen_header = {"Authorization": f"token {stolen}"}
    refused = httpx.post(f"{base}/kernels", headers=stolen_header, json={"name": "dossier"})
    assert refused.status_code == 403, refused.text
    refused = httpx.post(f"{base}/sessions", headers=stolen_header, json=session)
    assert refused.status_code == 403, refused.text
    after = {k["id"] for k in httpx.get(f"{base}/kernels", headers=a, timeout=60).json()}
    assert after <= before  # nothing started
    deadline = time.monotonic() + 10
    while not [e for e in spooled(hub) if "is started only with" in e.get("reason", "")]:
        assert time.monotonic() < deadline, "no refusal recorded"
        time.sleep(0.2)


def test_a_colleague_restarting_a_kernel_is_in_their_export(
    hub: Hub, people: dict[str, dict[str, str]], client: Callable[[str], httpx.Client]
) -> None:
    """a.jansen starts a kernel, b.devries restarts and interrupts it through the workspace's
    REST API: the admin's export of b.devries's activity (the service's API, read from the
    executions index) holds both, as rows beside their executions, in time order."""
    base = f"{hub.url}user/{ARMOEDE}/api"
    a, b = people["a.jansen"], people["b.devries"]
    started = httpx.post(f"{base}/kernels", headers=a, json={"name": "dossier"}, timeout=60)
    assert started.status_code == 201, started.text
    kernel = started.json()["id"]
    try:
        for action in ("restart", "interrupt"):
            done = httpx.post(f"{base}/kernels/{kernel}/{action}", headers=b, timeout=60)
            assert done.status_code in (200, 204), done.text
    finally:
        httpx.delete(f"{base}/kernels/{kernel}", headers=a, timeout=60)
    deadline = time.monotonic() + 15  # the bridge spools every 2 s, the service takes in every 1 s
    while not in_the_log(hub, kernel, 4):
        assert time.monotonic() < deadline, "the kernel calls did not reach the audit log"
        time.sleep(0.3)
    export = client(ADMIN).get("admin/people/b.devries/executions", params={"format": "csv"})
    assert export.status_code == 200, export.text
    rows = list(csv.DictReader(io.StringIO(export.text)))
    mine = [(r["event"], r["dossier"]) for r in rows if r["kernel"] == kernel]
    assert mine == [("kernel restart", "armoede"), ("kernel interrupt", "armoede")]
    assert {r["person"] for r in rows} == {"b.devries"}  # not a.jansen's start nor shutdown
    moments = [dt.datetime.fromisoformat(r["at"]) for r in rows]
    assert moments == sorted(moments)  # executions and kernel calls in one list, in time order


def in_the_log(hub: Hub, kernel: str, count: int) -> bool:
    """Whether the audit log holds `count` kernel events of `kernel` (taken in by the service)."""
    found = [
        event
        for record in AuditLog(hub.home).read()
        if record.get("action") == ACTION
        for event in record["details"]["events"]
        if event["event"] == "kernel" and event.get("kernel") == kernel
    ]
    return len(found) >= count
