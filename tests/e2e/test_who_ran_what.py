"""Who ran what, end to end (issue 16): two members of armoede, each in their own headless
Chromium and over their own websocket, run cells of one notebook with real-time collaboration
on. Each execution is recorded under the person whose login opened that socket: not the one a
message names (a forged `header.username`), and out of the workspace's reach."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from e2e_hub import Hub
from e2e_pages import shot
from helpers import run_cli
from kernelclient import execute

WORKSPACE = "dossier-armoede"
NOTEBOOK = "who-ran-what.ipynb"
CELLS = {  # cell id -> source: nbformat 4.5 ids, which JupyterLab sends as `cellId`
    "cell-jansen": "by_jansen = 6 * 7",
    "cell-devries": "by_devries = 'b'",
}
FORGED = "forged_as_jansen = True"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(scope="module")
def shared_notebook(hub: Hub) -> Iterator[str]:
    """armoede's workspace running, with NOTEBOOK in it: two code cells with fixed ids (one
    notebook for the module's tests: it was written and removed for each). a.jansen's
    token."""
    token = hub.token("a.jansen")
    hub.ensure_running(WORKSPACE, token)
    base = f"{hub.url}user/{WORKSPACE}/api"
    notebook = {
        "cells": [
            {
                "id": cell,
                "cell_type": "code",
                "source": source,
                "metadata": {},
                "outputs": [],
                "execution_count": None,
            }
            for cell, source in CELLS.items()
        ],
        "metadata": {
            "kernelspec": {"name": "dossier", "display_name": "Dossier", "language": "python"}
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    headers = {"Authorization": f"token {token}"}
    saved = httpx.put(
        f"{base}/contents/{NOTEBOOK}",
        json={"type": "notebook", "format": "json", "content": notebook},
        headers=headers,
        timeout=60,
    )
    assert saved.status_code in (200, 201), saved.text
    hub.reset_lab_layouts(WORKSPACE, token)
    yield token
    httpx.delete(f"{base}/contents/{NOTEBOOK}", headers=headers, timeout=30)


def notebook_session(hub: Hub, token: str) -> bool:
    """The notebook has its session (and so its kernel) in the workspace."""
    headers = {"Authorization": f"token {token}"}
    listed = httpx.get(f"{hub.url}user/{WORKSPACE}/api/sessions", headers=headers, timeout=30)
    return any(s["path"].endswith(NOTEBOOK) for s in listed.json())


def open_in_lab(hub: Hub, token: str, first: Page, second: Page) -> None:
    """The notebook in each person's JupyterLab (their own login, so their own websocket).
    The second browser sets out as soon as the first one's JupyterLab made the notebook's
    session: it then joins that session's kernel, as a colleague opening it later would (two
    JupyterLabs finding no session at once would each start a kernel), and both load on side
    by side for the rest."""
    url = f"{hub.url}user/{WORKSPACE}/lab/tree/{NOTEBOOK}"
    first.goto(url, wait_until="commit")
    deadline = time.monotonic() + 90
    while not notebook_session(hub, token):
        assert time.monotonic() < deadline, f"{NOTEBOOK} got no session within 90 s"
        time.sleep(0.1)
    second.goto(url, wait_until="commit")
    for page in (first, second):
        page.wait_for_url(
            lambda url: "/lab" in url or "oauth2/authorize" in url, wait_until="commit"
        )
        if "oauth2/authorize" in page.url:
            page.get_by_role("button", name="Authorize").click()
        page.wait_for_url(f"{hub.url}user/{WORKSPACE}/lab**", timeout=60_000, wait_until="commit")
        expect(page.locator(".jp-Notebook .jp-Cell").nth(1)).to_be_visible(timeout=90_000)
        # JupyterLab runs nothing while the notebook's kernel is still connecting: wait for it
        expect(page.get_by_role("button", name="Dossier | Idle")).to_be_visible(timeout=90_000)


def run_cell(page: Page, index: int) -> None:
    """Click into cell `index` and run it as a person does (Shift+Enter); wait for its count."""
    cell = page.locator(".jp-Notebook .jp-Cell").nth(index)
    cell.locator(".jp-InputArea").click()
    page.keyboard.press("Shift+Enter")
    expect(cell.locator(".jp-InputPrompt")).to_have_text(re.compile(r"\[\d+\]"), timeout=60_000)


FORGE = """async ([base, code]) => {
  // as JupyterLab asks: the cookie, and the _xsrf cookie's value in a header
  const xsrf = document.cookie.split('; ').find(c => c.startsWith('_xsrf=')).slice(6);
  const listed = await fetch(base + 'api/sessions', {headers: {'X-XSRFToken': xsrf}});
  const sessions = await listed.json();
  const kernel = sessions.find(s => s.path.endsWith('who-ran-what.ipynb')).kernel.id;
  const url = base.replace('http', 'ws') + 'api/kernels/' + kernel + '/channels';
  const socket = new WebSocket(url);  // the browser's own cookie: this person's login
  await new Promise((ok, fail) => { socket.onopen = ok; socket.onerror = fail; });
  const msgId = crypto.randomUUID();
  const replied = new Promise(ok => socket.onmessage = event => {
    const msg = JSON.parse(event.data);
    if (msg.msg_type === 'execute_reply' && msg.parent_header.msg_id === msgId) ok(msg);
  });
  socket.send(JSON.stringify({
    header: {msg_id: msgId, username: 'a.jansen', session: crypto.randomUUID(),
             msg_type: 'execute_request', version: '5.3', date: new Date().toISOString()},
    parent_header: {}, metadata: {cellId: 'cell-forged'}, channel: 'shell', buffers: [],
    content: {code, silent: false, store_history: true, user_expressions: {},
              allow_stdin: false, stop_on_error: true}}));
  const reply = await replied;
  socket.close();
  return [kernel, reply.content.status];
}"""


def rows_for(hub: Hub, token_of: Callable[[str], str], want: int) -> list[dict[str, Any]]:
    """The notebook's executions as the lead sees them over the API, once `want` are in (the
    bridge hands a batch over within ~2 s, the service takes it in within ~1 s)."""
    headers = {"Authorization": f"token {token_of('a.jansen')}"}
    url = f"{hub.service}api/dossiers/armoede/executions"
    deadline = time.monotonic() + 30
    while True:
        answer = httpx.get(url, params={"path": NOTEBOOK}, headers=headers, timeout=30)
        assert answer.status_code == 200, answer.text
        rows = answer.json()["executions"]
        if len(rows) >= want or time.monotonic() > deadline:
            return rows
        time.sleep(0.5)


def test_two_people_one_notebook_each_recorded_as_themselves(
    hub: Hub, person: Callable[..., Page], shared_notebook: str
) -> None:
    jansen, devries = person("a.jansen"), person("b.devries")
    # one notebook, shared through the collaboration room
    open_in_lab(hub, shared_notebook, jansen, devries)
    run_cell(jansen, 0)
    run_cell(devries, 1)
    base = f"{hub.url}user/{WORKSPACE}/"
    kernel, status = devries.evaluate(FORGE, [base, FORGED])
    assert status == "ok"

    rows = rows_for(hub, hub.token, want=3)
    by_code = {row["code_sha256"]: row for row in rows}
    assert by_code[sha256(CELLS["cell-jansen"])]["person"] == "a.jansen"
    assert by_code[sha256(CELLS["cell-devries"])]["person"] == "b.devries"
    forged = by_code[sha256(FORGED)]
    assert forged["person"] == "b.devries"  # not the header's a.jansen
    assert forged["first_line"] == FORGED
    assert {row["kernel"] for row in rows} == {kernel}
    assert all(row["path"] == NOTEBOOK for row in rows)
    assert by_code[sha256(CELLS["cell-jansen"])]["cell_id"] == "cell-jansen"

    # in the panel of each person: who last ran each cell (from the records, not the browser)
    for page in (jansen, devries):
        for cell, who in (("cell-jansen", "a.jansen"), ("cell-devries", "b.devries")):
            marker = page.locator(f".dh-cell-run[data-cell-id='{cell}']")
            expect(marker).to_have_attribute("data-person", who, timeout=30_000)
            expect(marker).to_contain_text(f"Run by {who}")
    shot(jansen, "16-who-ran-what-jansen")
    shot(devries, "16-who-ran-what-devries")

    # on the dossier's audit page, as its lead reads it
    jansen.goto(f"{hub.service}dossiers/armoede/audit?notebook={NOTEBOOK}#executions")
    rows = jansen.locator("#executions-rows tr.execution")
    expect(rows.filter(has_text=FORGED)).to_have_attribute("data-person", "b.devries")
    expect(rows.filter(has_text=CELLS["cell-jansen"])).to_have_attribute("data-person", "a.jansen")
    expect(rows.filter(has_text=CELLS["cell-devries"])).to_have_attribute(
        "data-person", "b.devries"
    )
    shot(jansen, "16-who-ran-what-audit-page")


def test_a_workspace_process_cannot_reach_the_records(hub: Hub, shared_notebook: str) -> None:
    """From a kernel of the workspace: the spool, the audit log and the bridge are not there to
    alter, remove or stop (another file system view and PID namespace)."""
    audit = hub.home.audit_dir
    probe = f"""
import json, os
found = {{}}
for path in {json.dumps([str(audit / "audit.jsonl"), str(audit / "spool"), str(audit)])}:
    try:
        open(os.path.join(path, "x") if os.path.isdir(path) else path, "a").close()
        found[path] = "written"
    except OSError as exc:
        found[path] = type(exc).__name__
bridges = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        bridges += [pid] if b"netbridge" in open(f"/proc/{{pid}}/cmdline", "rb").read() else []
    except OSError:
        pass
print(json.dumps({{"files": found, "bridges": bridges}}))
"""
    result = execute(hub.url, WORKSPACE, shared_notebook, probe)
    assert result.error is None, result.error
    seen = json.loads(result.stdout)
    assert "written" not in seen["files"].values(), seen
    assert seen["bridges"] == [], seen


def test_the_export_for_one_person_holds_exactly_their_executions(hub: Hub) -> None:
    done = run_cli(hub.home.root, "audit", "export", "--person", "b.devries", "--format", "json")
    assert done.exit_code == 0, done.stderr
    rows = json.loads(done.stdout)
    assert rows and {row["person"] for row in rows} == {"b.devries"}
