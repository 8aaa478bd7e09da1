"""No member's content runs script in another member's JupyterLab (issue 16, red teams).

In the session hub's running armoede workspace, a.jansen saves a notebook whose outputs are
script (`application/javascript`, `<img onerror=...>` and `<script>` in HTML, and an anywidget
whose module, kept in the notebook's widget state, anywidget's front end would import from a
`blob:` URL) and makes it trusted both ways a member can: the trust route of the contents API,
and, as any collaborator's client may, `trusted` in every cell's shared metadata in the
notebook's collaboration room. b.devries then opens it in their own Chromium: none of it runs
(it would have retitled the page and written b's token to a file), while a DataFrame's HTML
table and an image still show.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import polars as pl
import pytest
from playwright.sync_api import Page, expect
from pycrdt import (
    Array,
    Doc,
    Map,
    YMessageType,
    YSyncMessageType,
    create_sync_message,
    create_update_message,
    handle_sync_message,
)
from websockets.sync.client import ClientConnection, connect

from e2e_hub import Hub
from e2e_pages import shot

WORKSPACE = "dossier-armoede"
NOTEBOOK = "from-a-colleague.ipynb"
TAKEN = "taken-by-"  # what each payload names its page title and its file

# each writes the token of whoever's page it runs in to a file the author reads
TAKE = (
    "document.title='" + TAKEN + "{route}';"
    "const c=JSON.parse(document.getElementById('jupyter-config-data').textContent);"
    "fetch(c.baseUrl+'api/contents/" + TAKEN + "{route}.txt',{{method:'PUT',headers:{{"
    "'Authorization':'token '+c.token,'Content-Type':'application/json'}},"
    "body:JSON.stringify({{type:'file',format:'text',content:c.token}})}})"
)
PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5E"
    "rkJggg=="
)
# a widget as anywidget's own Python class saves it (`_esm` is the module its front end imports
# from a blob: URL in whoever's page shows it): the module's top level runs on import
WIDGET_ID = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = {
    "version_major": 2,
    "version_minor": 0,
    "state": {
        WIDGET_ID: {
            "model_name": "AnyModel",
            "model_module": "anywidget",
            "model_module_version": "*",
            "state": {
                "_model_name": "AnyModel",
                "_model_module": "anywidget",
                "_model_module_version": "*",
                "_view_name": "AnyView",
                "_view_module": "anywidget",
                "_view_module_version": "*",
                "_esm": TAKE.format(route="anywidget") + ";export default {render() {}};",
                "_css": "",
            },
        }
    },
}
VIOLATIONS = """
window.__violations = [];
document.addEventListener('securitypolicyviolation', e => window.__violations.push(
  {directive: e.violatedDirective, blocked: e.blockedURI, sample: e.sample}));
"""


def output(data: dict[str, str]) -> dict:
    return {"output_type": "display_data", "metadata": {}, "data": data}


def code_cell(cell_id: str, outputs: list[dict]) -> dict:
    return {
        "id": cell_id,
        "cell_type": "code",
        "source": "# a.jansen's",
        "metadata": {},
        "execution_count": 1,
        "outputs": outputs,
    }


def colleague_notebook() -> dict:
    table = pl.DataFrame({"wijk": ["Noord", "Zuid"], "huishoudens": [120, 95]})
    html = (
        f'<img id="onerror-img" src="data:," onerror="{TAKE.format(route="onerror")}">'
        f"<script>{TAKE.format(route='script')}</script><b id='html-shown'>shown</b>"
    )
    return {
        "cells": [
            code_cell(
                "js",
                [
                    output(
                        {
                            "application/javascript": TAKE.format(route="javascript"),
                            "text/plain": "1",
                        }
                    )
                ],
            ),
            code_cell("html", [output({"text/html": html, "text/plain": "html"})]),
            {
                "id": "md",
                "cell_type": "markdown",
                "source": f'<img src="data:," onerror="{TAKE.format(route="markdown")}">',
                "metadata": {},
            },
            code_cell(
                "table",
                [
                    output({"text/html": table._repr_html_(), "text/plain": str(table)}),
                    output({"image/png": PNG, "text/plain": "a pixel"}),
                ],
            ),
            code_cell(
                "widget",
                [
                    output(
                        {
                            WIDGET_VIEW: {
                                "version_major": 2,
                                "version_minor": 0,
                                "model_id": WIDGET_ID,
                            },
                            "text/plain": "a widget",
                        }
                    )
                ],
            ),
        ],
        "metadata": {
            "kernelspec": {"name": "dossier", "display_name": "Dossier", "language": "python"},
            "widgets": {"application/vnd.jupyter.widget-state+json": WIDGET_STATE},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def room_url(base: str, headers: dict[str, str]) -> str:
    """The websocket of NOTEBOOK's collaboration room, as JupyterLab opens it."""
    session = httpx.put(
        f"{base}api/collaboration/session/{NOTEBOOK}",
        json={"format": "json", "type": "notebook"},
        headers=headers,
        timeout=30,
    )
    assert session.status_code in (200, 201), session.text
    room = f"json:notebook:{session.json()['fileId']}"
    url = f"{base.replace('http', 'ws', 1)}api/collaboration/room/{room}"
    return f"{url}?sessionId={session.json()['sessionId']}"


def trust_every_cell(socket: ClientConnection) -> None:
    """As any collaborator's client may: `trusted` set in every cell's shared metadata of the
    room (JupyterLab's cell model takes its trust from it)."""
    doc = Doc()
    socket.send(create_sync_message(doc))
    while True:  # until the room's whole document has come (its answer to our state)
        message = socket.recv(timeout=30)
        assert isinstance(message, bytes)
        if message[0] != YMessageType.SYNC:
            continue
        reply = handle_sync_message(message[1:], doc)
        if reply is not None:
            socket.send(reply)
        if message[1] == YSyncMessageType.SYNC_STEP2:
            break
    before = doc.get_state()
    cells = doc.get("cells", type=Array)
    assert len(cells) == 5
    for cell in cells:
        metadata = cell["metadata"]
        assert isinstance(metadata, Map)
        metadata["trusted"] = True
    socket.send(create_update_message(doc.get_update(before)))


@pytest.fixture
def from_a_colleague(hub: Hub) -> Iterator[str]:
    """NOTEBOOK saved by a.jansen, made trusted by every route a member has; its room open."""
    token = hub.token("a.jansen")
    hub.ensure_running(WORKSPACE, token)
    base = f"{hub.url}user/{WORKSPACE}/"
    headers = {"Authorization": f"token {token}"}
    body = {"type": "notebook", "format": "json", "content": colleague_notebook()}
    saved = httpx.put(f"{base}api/contents/{NOTEBOOK}", json=body, headers=headers, timeout=30)
    assert saved.status_code in (200, 201), saved.text
    trust = httpx.post(f"{base}api/contents/{NOTEBOOK}/trust", headers=headers, timeout=30)
    hub.reset_lab_layouts(WORKSPACE, token)
    try:
        # the socket stays open, so the room, and the change, stay while the colleague opens it
        with connect(room_url(base, headers), additional_headers=headers) as socket:
            trust_every_cell(socket)
            yield str(trust.status_code)
    finally:
        listed = httpx.get(f"{base}api/contents", headers=headers, timeout=30).json()
        for item in listed["content"]:
            if item["name"] == NOTEBOOK or item["name"].startswith(TAKEN):
                httpx.delete(f"{base}api/contents/{item['name']}", headers=headers, timeout=30)


def test_a_colleague_s_outputs_run_no_script_in_my_lab(
    hub: Hub, person: Callable[..., Page], from_a_colleague: str
) -> None:
    devries = person("b.devries")
    devries.add_init_script(VIOLATIONS)
    devries.goto(f"{hub.url}user/{WORKSPACE}/lab/tree/{NOTEBOOK}")
    devries.wait_for_url(
        lambda url: "/lab" in url or "oauth2/authorize" in url, wait_until="commit"
    )
    if "oauth2/authorize" in devries.url:
        devries.get_by_role("button", name="Authorize").click()
    outputs = devries.locator(".jp-Notebook .jp-OutputArea-output")
    # what analysts need still shows: the DataFrame's HTML table, the image
    expect(outputs.locator("table td", has_text="Noord")).to_be_visible(timeout=90_000)
    expect(devries.locator(".jp-Notebook .jp-RenderedImage img")).to_be_visible()
    # the room's `trusted` reached this page: the HTML came unsanitised, handler and all
    expect(devries.locator("#onerror-img")).to_have_attribute(
        "onerror", TAKE.format(route="onerror")
    )
    # no widget manager in the page to restore the anywidget from the notebook's widget state
    # (on the code before it did, once the page's kernel was ready, and its module ran): the
    # output shows its text
    expect(outputs.get_by_text("a widget", exact=True)).to_be_visible()
    time.sleep(1)  # what a script started would have sent by now
    shot(devries, "16-colleague-content-no-script")

    assert not devries.title().startswith(TAKEN), devries.title()
    headers = {"Authorization": f"token {hub.token('b.devries')}"}
    listed = httpx.get(
        f"{hub.url}user/{WORKSPACE}/api/contents", headers=headers, timeout=30
    ).json()
    taken = [item["name"] for item in listed["content"] if item["name"].startswith(TAKEN)]
    assert taken == [], f"script of a.jansen's ran in b.devries's page: {taken}"
    # JupyterLab's own stand-in for a JavaScript output, with the evaluating renderer off
    expect(outputs.get_by_text("JavaScript output is disabled in JupyterLab")).to_be_visible()
    violations = devries.evaluate("window.__violations")
    # the browser refused the handler and the script; nothing of JupyterLab's own
    assert violations, "the trusted HTML reached the page yet nothing was refused"
    assert all(TAKEN in v["sample"] for v in violations), violations
    # the trust route is closed to members (it would vouch for the notebook for everyone)
    assert from_a_colleague == "403"
    # nor does a workspace page run any module it makes itself, the way anywidget ran a
    # member's: in a second tab of b.devries's browser (the first one's requests are checked
    # for outside calls, which a blob: is not)
    assert not blob_module_runs(devries, f"{hub.url}user/{WORKSPACE}/api/status")


def blob_module_runs(page: Page, url: str) -> bool:
    """Whether a page at `url` (the workspace's policy) imports a module from a blob: URL."""
    tab = page.context.new_page()
    try:
        tab.goto(url)
        return tab.evaluate(
            """async () => {
                const url = URL.createObjectURL(
                    new Blob(['export const ran = true;'], {type: 'text/javascript'}));
                try { return (await import(url)).ran === true; } catch (refused) { return false; }
            }"""
        )
    finally:
        tab.close()
