"""Red team on who ran what (issue 16), around the relay: attacks an analyst of the armoede
team performs for real on the session hub's running workspace, each failing on the code before
its fix (or marked xfail, strict, with the finding). A message the relay records must reach the
audit trail whatever its strings hold, and nobody may make the server trust a notebook (trusted
outputs run script in a colleague's browser, with the colleague's token at hand)."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TypeVar

import httpx
import pytest
from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from test_relay import ARMOEDE, channels, kernel, tokens  # noqa: F401 - fixtures

from dossierhub.state.audit import AuditLog
from dossierhub.state.executions import ACTION

from e2e_hub import Hub
from e2e_pages import shot
from kernelclient import run

T = TypeVar("T")


def _in_trail(hub: Hub, msg_ids: set[str], seconds: float = 10) -> dict[str, dict]:
    """msg_id -> its execute event once all of `msg_ids` are in the audit log (the service
    takes a batch in about a second after the bridge spools it), or what is there by then."""
    deadline = time.monotonic() + seconds
    while True:
        found = {
            event["msg_id"]: event
            for record in AuditLog(hub.home).read()
            if record.get("action") == ACTION
            for event in record["details"]["events"]
            if event.get("event") == "execute" and event.get("msg_id") in msg_ids
        }
        if set(found) == msg_ids or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_a_lone_surrogate_in_a_message_hides_no_execution(
    hub: Hub,
    tokens: dict[str, str],  # noqa: F811
    kernel: str,  # noqa: F811
) -> None:
    """JSON's `\\udc80` is a lone surrogate to Python: the bridge spooled it, the service's
    JSON reader refused the batch and set it aside, so every execution in the same batch (the
    analyst's own next query, a colleague's runs of those seconds) never reached the trail."""
    poisoned = uuid.uuid4().hex
    header = {
        "msg_id": poisoned,
        "username": "a.jansen",
        "session": uuid.uuid4().hex,
        "msg_type": "execute_request",
        "version": "5.3",
        "date": dt.datetime.now(dt.UTC).isoformat(),
    }
    content = {
        "code": "hidden = 1",
        "silent": False,
        "store_history": False,
        "user_expressions": {},
        "allow_stdin": False,
        "stop_on_error": True,
    }
    message = {
        "header": header,
        "parent_header": {},
        "metadata": {"cellId": "\udc80"},
        "content": content,
        "channel": "shell",
        "buffers": [],
    }
    with channels(hub, kernel, tokens["a.jansen"]) as socket:
        socket.send(json.dumps(message))  # ensure_ascii: the surrogate goes as \udc80
        query, _, status = run(socket, "print(hidden)", claimed="a.jansen")
    assert status == "ok"  # the poisoned request ran: `hidden` was defined
    found = _in_trail(hub, {poisoned, query})
    assert set(found) == {poisoned, query}, "an execution never reached the audit trail"
    assert {event["person"] for event in found.values()} == {"a.jansen"}
    spool = hub.home.execution_spool_dir("armoede")
    assert not list(spool.glob("*.bad")), "a batch was set aside"


FORGE_TRUST = r"""
import os, nbformat
from nbformat.sign import NotebookNotary
home = os.environ["HOME"]
nb = nbformat.v4.new_notebook()
cell = nbformat.v4.new_code_cell("1")
cell.outputs = [nbformat.v4.new_output(
    "display_data", data={"application/javascript": "window.stolen = document.cookie"})]
nb.cells = [cell]
notary = NotebookNotary(secret_file=os.path.join(home, ".jupyter_notebook_secret"),
                        db_file=os.path.join(home, ".jupyter_nbsignatures.db"))
notary.sign(nb)
nbformat.write(nb, os.path.join(home, "NAME"))
print("signed")
"""


@pytest.fixture
def forged(hub: Hub, tokens: dict[str, str]) -> Iterator[str]:  # noqa: F811
    name = f"forged-{uuid.uuid4().hex[:8]}.ipynb"
    yield name
    httpx.delete(
        f"{hub.url}user/{ARMOEDE}/api/contents/{name}",
        headers={"Authorization": f"token {tokens['a.jansen']}"},
        timeout=30,
    )


def test_no_one_makes_the_server_trust_a_notebook(
    hub: Hub,
    tokens: dict[str, str],  # noqa: F811
    kernel: str,  # noqa: F811
    forged: str,
) -> None:
    """A trusted notebook's script output runs in the browser of whoever opens it, where
    their token is: whatever it then runs is recorded as them. A kernel signed one with the
    key in the team's folder; a member had the server sign one by saving it with every code
    cell marked trusted. Either way a colleague's JupyterLab was told it is trusted."""
    with channels(hub, kernel, tokens["a.jansen"]) as socket:
        _, out, status = run(socket, FORGE_TRUST.replace("NAME", forged), claimed="a.jansen")
    assert (status, out.strip()) == ("ok", "signed")
    url = f"{hub.url}user/{ARMOEDE}/api/contents/{forged}"
    as_colleague = {"Authorization": f"token {tokens['b.devries']}"}
    opened = httpx.get(url, headers=as_colleague, timeout=30)
    assert opened.status_code == 200, opened.text
    cell = opened.json()["content"]["cells"][0]
    assert cell["outputs"][0]["data"]["application/javascript"]
    assert cell["metadata"].get("trusted") is False, "the server trusts a kernel's signature"
    # a member saves it claiming trust (what JupyterLab sends for cells run in the session)
    saved = opened.json()["content"]
    saved["cells"][0]["metadata"]["trusted"] = True
    as_member = {"Authorization": f"token {tokens['a.jansen']}"}
    put = httpx.put(url, headers=as_member, json={"type": "notebook", "content": saved}, timeout=30)
    assert put.status_code == 200, put.text
    again = httpx.get(url, headers=as_colleague, timeout=30).json()["content"]["cells"][0]
    assert again["outputs"][0]["data"]["application/javascript"]
    assert again["metadata"].get("trusted") is False, "a member's save made it trusted"


SHORTCUTS = "@jupyterlab/shortcuts-extension/shortcuts"  # its file in a settings folder
PLANT_SHORTCUT = r"""
import json, os, pathlib, urllib.request
binding = {"command": "notebook:run-all-cells", "keys": ["Accel S"], "selector": ".jp-Notebook"}
raw = json.dumps({"shortcuts": [binding]})
plugin = "@jupyterlab/shortcuts-extension"
seen = {"settings_dir": os.environ["JUPYTERLAB_SETTINGS_DIR"]}
# where the server reads user settings, and where it read them before: the team's folder
team = os.path.expanduser("~/.jupyter/lab/user-settings")
for folder in {seen["settings_dir"], team}:
    path = pathlib.Path(folder, plugin, "shortcuts.jupyterlab-settings")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(raw)
        seen[str(path)] = "written"
    except OSError as error:
        seen[str(path)] = type(error).__name__
# and the server's own settings API, with the token every kernel inherits from the server
url = os.environ["JUPYTERHUB_SERVICE_URL"].rstrip("/") + f"/lab/api/settings/{plugin}:shortcuts"
request = urllib.request.Request(url, data=json.dumps({"raw": raw}).encode(), method="PUT",
    headers={"Authorization": "token " + os.environ["JUPYTERHUB_API_TOKEN"]})
try:
    seen["api"] = urllib.request.urlopen(request, timeout=10).status
except Exception as error:
    seen["api"] = repr(error)[:200]
print(json.dumps(seen))
"""


def test_a_kernel_cannot_change_a_colleagues_jupyterlab_settings(
    hub: Hub,
    tokens: dict[str, str],  # noqa: F811
    kernel: str,  # noqa: F811
    person: Callable[..., Page],
) -> None:
    """JupyterLab's user settings were one folder of the team: a kernel bound a colleague's
    Ctrl+S to "run all cells", so the colleague ran code they did not choose, recorded as them.
    The kernel tries every way it has (the server's settings folder, the team's folder where
    they were, the server's settings API with the server's own token); the colleague's
    JupyterLab, opened afterwards, binds no key to "run all cells"."""
    with channels(hub, kernel, tokens["a.jansen"]) as socket:
        _, out, status = run(socket, PLANT_SHORTCUT, claimed="a.jansen")
    assert status == "ok", out
    attempts = json.loads(out)
    planted = f"{attempts['settings_dir']}/{SHORTCUTS}.jupyterlab-settings"
    try:
        assert attempts[planted] != "written", attempts
        seen = httpx.get(
            f"{hub.url}user/{ARMOEDE}/lab/api/settings/@jupyterlab/shortcuts-extension:shortcuts",
            headers={"Authorization": f"token {tokens['b.devries']}"},
            timeout=30,
        )
        assert seen.status_code == 200, seen.text
        assert "notebook:run-all-cells" not in seen.json()["raw"], attempts
        devries = person("b.devries")
        open_lab(hub, devries)
        shown = palette(devries, "Run All Cells", "settings-10-colleague-no-planted-shortcut")
        assert shown == [("Run All Cells", "")], attempts
    finally:
        written = [path for path, outcome in attempts.items() if outcome == "written"]
        with channels(hub, kernel, tokens["a.jansen"]) as socket:
            run(socket, f"import os; [os.remove(p) for p in {written!r}]", claimed="a.jansen")


def test_a_persons_jupyterlab_settings_follow_them_and_no_colleague(
    hub: Hub,
    tokens: dict[str, str],  # noqa: F811
    person: Callable[..., Page],
) -> None:
    """Settings are each person's own, in their browser: a.jansen's dark theme is still
    there after a reload, and b.devries, in the same workspace, still has the light one."""
    jansen = person("a.jansen")
    open_lab(hub, jansen)
    dark = jansen.locator("body[data-jp-theme-name='JupyterLab Dark']")
    expect(dark).to_have_count(0)
    pick(jansen, "Use Theme: JupyterLab Dark")
    expect(dark).to_have_count(1, timeout=30_000)
    jansen.reload()
    open_lab(hub, jansen)
    expect(dark).to_have_count(1, timeout=30_000)
    shot(jansen, "settings-20-own-theme-after-reload")
    devries = person("b.devries")
    open_lab(hub, devries)
    expect(devries.locator("body")).to_have_attribute("data-jp-theme-name", "JupyterLab Light")
    shot(devries, "settings-21-colleague-keeps-light")


def open_lab(hub: Hub, page: Page) -> None:
    """armoede's JupyterLab in this person's browser, once it has restored its layout."""
    if "/lab" not in page.url:
        page.goto(f"{hub.url}user/{ARMOEDE}/lab")
        page.wait_for_url(
            lambda url: "/lab" in url or "oauth2/authorize" in url, wait_until="commit"
        )
        if "oauth2/authorize" in page.url:
            page.get_by_role("button", name="Authorize").click()
        page.wait_for_url(f"{hub.url}user/{ARMOEDE}/lab**", timeout=60_000, wait_until="commit")
    # the theme is applied once the settings are loaded, the splash gone once restored
    expect(page.locator("body[data-jp-theme-name]")).to_have_count(1, timeout=90_000)
    expect(page.locator("#jupyterlab-splash")).to_have_count(0, timeout=90_000)
    # the file browser's listing: in the DOM whichever side panel the team's layout shows
    expect(page.locator(".jp-DirListing-item").first).to_be_attached(timeout=30_000)


# what the command palette lists: each item's label and the key binding shown beside it
ITEMS = """() => [...document.querySelectorAll('.lm-CommandPalette-item')].map(item => [
  item.querySelector('.lm-CommandPalette-itemLabel').textContent,
  item.querySelector('.lm-CommandPalette-itemShortcut').textContent])"""


SHOWN = """label => [...document.querySelectorAll('.lm-CommandPalette-itemLabel')]
  .some(shown => shown.textContent === label)"""


def in_palette(page: Page, search: str, then: Callable[[], T]) -> T:
    """`then()` with the command palette open on `search`, opened by its own key binding.
    JupyterLab binds its keys once the settings are loaded, and while it restores its layout
    it moves the focus, which closes the palette: until the palette stays, it is opened again."""
    field = page.locator(".lm-CommandPalette-input")
    for _ in range(30):
        if not field.is_visible():  # the key closes an open palette
            page.keyboard.press("Control+Shift+C")
        try:
            field.fill(search, timeout=1000)
            done = then()
        except PlaywrightTimeout:
            continue
        if field.is_visible():
            return done
    raise AssertionError("Ctrl+Shift+C never kept the command palette open")


def palette(page: Page, label: str, shot_as: str) -> list[tuple[str, str]]:
    """The palette's items labelled exactly `label`, with the key binding each shows."""

    def listed() -> list[tuple[str, str]]:
        page.wait_for_function(SHOWN, arg=label, timeout=2000)
        shot(page, shot_as)
        return [tuple(item) for item in page.evaluate(ITEMS) if item[0] == label]

    shown = in_palette(page, label.rsplit(" ", 1)[0], listed)  # a word less finds it sooner
    page.keyboard.press("Escape")
    return shown


def pick(page: Page, label: str) -> None:
    """Run the command labelled `label` from the palette, as a person does: searched for by
    its whole label, it is the first item, which Enter runs."""
    in_palette(page, label, lambda: page.wait_for_function(SHOWN, arg=label, timeout=2000))
    page.keyboard.press("Enter")


SCRIPT = (
    "document.body.setAttribute('data-token-seen', JSON.parse("
    "document.getElementById('jupyter-config-data').textContent).token ? 'yes' : 'no')"
)
