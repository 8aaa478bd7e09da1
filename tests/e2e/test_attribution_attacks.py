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
from collections.abc import Iterator

import httpx
import pytest
from test_relay import ARMOEDE, channels, kernel, tokens  # noqa: F401 - fixtures

from dossierhub.state.audit import AuditLog
from dossierhub.state.executions import ACTION

from e2e_hub import Hub
from kernelclient import run


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


PLANT_SHORTCUT = r"""
import json, os, pathlib
settings = pathlib.Path(os.environ["JUPYTERLAB_SETTINGS_DIR"], "@jupyterlab/shortcuts-extension")
settings.mkdir(parents=True, exist_ok=True)
binding = {"command": "notebook:run-all-cells", "keys": ["Accel S"], "selector": ".jp-Notebook"}
(settings / "shortcuts.jupyterlab-settings").write_text(json.dumps({"shortcuts": [binding]}))
print(settings)
"""


@pytest.mark.xfail(
    strict=True,
    reason="red team B, medium: JupyterLab's user settings are one folder of the team "
    "(JUPYTERLAB_SETTINGS_DIR in the workspace folder), so a kernel rebinds a colleague's "
    "Ctrl+S to 'run all cells': the colleague's browser then runs code they did not choose, "
    "recorded as them. Needs settings per person or out of the kernels' reach.",
)
def test_a_kernel_cannot_change_a_colleagues_jupyterlab_settings(
    hub: Hub,
    tokens: dict[str, str],  # noqa: F811
    kernel: str,  # noqa: F811
) -> None:
    with channels(hub, kernel, tokens["a.jansen"]) as socket:
        _, out, status = run(socket, PLANT_SHORTCUT, claimed="a.jansen")
    assert status == "ok", out
    try:
        seen = httpx.get(
            f"{hub.url}user/{ARMOEDE}/lab/api/settings/@jupyterlab/shortcuts-extension:shortcuts",
            headers={"Authorization": f"token {tokens['b.devries']}"},
            timeout=30,
        )
        assert seen.status_code == 200, seen.text
        assert "notebook:run-all-cells" not in seen.json()["raw"]
    finally:
        planted = f"{out.strip()}/shortcuts.jupyterlab-settings"
        with channels(hub, kernel, tokens["a.jansen"]) as socket:
            run(socket, f"import os; os.remove({planted!r})", claimed="a.jansen")


SCRIPT = (
    "document.body.setAttribute('data-token-seen', JSON.parse("
    "document.getElementById('jupyter-config-data').textContent).token ? 'yes' : 'no')"
)
