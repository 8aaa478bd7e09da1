"""The workspace's server extension, in jupyter_server's real in-process test server:
/dossier/info for the Dossier panel, and the closed download routes."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import pytest
from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection
from tornado.httpclient import HTTPClientError

from dossier_kernel.expiry import WARNING_DAYS
from dossier_lab.csp import inline_script_hashes, lab_template
from dossier_lab.nodelay import NoDelayConnection, use_nodelay
from dossierhub import portal
from dossierhub.data.extracts import current_provenance
from dossierhub.portal import Person
from dossierhub.state.home import Home

from kernelclient import execute_request, frame


@pytest.fixture
def jp_server_config() -> dict:
    return {"ServerApp": {"jpserver_extensions": {"dossier_lab": True}}}


@pytest.fixture
def armoede(applied_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This server is armoede's workspace (what the spawner sets)."""
    extracts = applied_home / "extracts" / "armoede"
    monkeypatch.setenv("DOSSIER_ID", "armoede")
    monkeypatch.setenv("DOSSIER_CATALOG", str(extracts / "catalog.duckdb"))
    monkeypatch.setenv("JUPYTERHUB_BASE_URL", "/")
    return extracts


async def test_info_describes_the_dossier_and_its_views(jp_fetch, armoede: Path) -> None:
    response = await jp_fetch("dossier", "info")
    info = json.loads(response.body)
    built = current_provenance(armoede)
    assert info["id"] == "armoede"
    assert built is not None
    assert info["title"] == built.title and info["purpose"] == built.purpose
    assert info["expires"] == built.expires and isinstance(info["days_left"], int)
    assert info["service_url"] == "/services/dossierhub/"
    views = {v["name"]: v for v in info["views"]}
    assert set(views) == set(built.views)
    assert views["residents"]["rows"] == built.views["residents"].rows_out
    columns = {c["name"]: c for c in views["residents"]["columns"]}
    assert columns["bsn"] == {
        "name": "bsn",
        "type": "VARCHAR",
        "kind": "pseudonym (identifier)",
        "description": "citizen service number",
    }
    assert columns["birth_year"]["kind"] == "quasi-identifier"
    assert columns["district"]["kind"] == "attribute"


async def test_info_gives_the_panel_the_hub_s_expiry_verdict(
    jp_fetch, armoede: Path, applied_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The panel shows what the server decides, by the rule the hub's pages use: the same
    days left and verdict as the dossier's page, and the warning from the last 30 days."""
    info = json.loads((await jp_fetch("dossier", "info")).body)
    mine = portal.my_dossiers(Home(applied_home), Person("a.jansen"))
    page = next(d for d in mine if d["id"] == "armoede")
    assert info["expiry_warning_days"] == WARNING_DAYS
    verdict = ("days_left", "expires_soon", "expired")
    assert {k: info[k] for k in verdict} == {k: page[k] for k in verdict}

    copy = applied_home.parent / "soon" / "armoede"  # the same extracts, expiring soon
    shutil.copytree(armoede, copy, dirs_exist_ok=True)
    provenance = json.loads((copy / "provenance.json").read_text())
    provenance["expires"] = (dt.date.today() + dt.timedelta(days=WARNING_DAYS)).isoformat()
    (copy / "provenance.json").write_text(json.dumps(provenance))
    monkeypatch.setenv("DOSSIER_CATALOG", str(copy / "catalog.duckdb"))
    info = json.loads((await jp_fetch("dossier", "info")).body)
    assert (info["days_left"], info["expires_soon"], info["expired"]) == (WARNING_DAYS, True, False)


async def test_info_without_dossier_data_is_a_clear_404(
    jp_fetch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOSSIER_CATALOG", str(tmp_path / "gone" / "catalog.duckdb"))
    with pytest.raises(HTTPClientError) as raised:
        await jp_fetch("dossier", "info")
    assert raised.value.code == 404
    assert "not applied yet or has expired" in raised.value.response.body.decode()


async def test_info_on_a_malformed_provenance_names_the_file_and_the_field(
    jp_fetch, armoede: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = armoede.parent.parent / "spoilt" / "armoede"
    shutil.copytree(armoede, copy, dirs_exist_ok=True)
    provenance = json.loads((copy / "provenance.json").read_text())
    provenance["views"]["residents"]["built_at"] = None
    (copy / "provenance.json").write_text(json.dumps(provenance))
    monkeypatch.setenv("DOSSIER_CATALOG", str(copy / "catalog.duckdb"))
    with pytest.raises(HTTPClientError) as raised:
        await jp_fetch("dossier", "info")
    assert raised.value.code == 500
    said = json.loads(raised.value.response.body)["message"]
    assert str(copy / "provenance.json") in said
    assert "field views.residents.built_at should be text, not null" in said


async def test_info_needs_a_login(jp_fetch, armoede: Path) -> None:
    with pytest.raises(HTTPClientError) as raised:
        await jp_fetch("dossier", "info", headers={"Authorization": "token wrong"})
    assert raised.value.code == 403


@pytest.mark.parametrize("route", [("files", "notes.csv"), ("nbconvert", "html", "x.ipynb")])
async def test_downloads_are_closed(jp_fetch, route: tuple[str, ...]) -> None:
    with pytest.raises(HTTPClientError) as raised:
        await jp_fetch(*route)
    assert raised.value.code == 403
    assert "released report" in raised.value.response.body.decode()


async def _run(ws: Any, code: str) -> float:
    """Seconds from sending `code` to the kernel's idle status for it (all four messages)."""
    request = execute_request(code)
    started = time.perf_counter()
    await ws.write_message(frame(request))
    while True:
        message = json.loads(await ws.read_message())
        mine = message["parent_header"].get("msg_id") == request["header"]["msg_id"]
        idle = message["msg_type"] == "status" and message["content"]["execution_state"] == "idle"
        if mine and idle:
            return time.perf_counter() - started


async def test_an_execution_does_not_wait_for_a_delayed_acknowledgement(
    jp_fetch, jp_ws_fetch
) -> None:
    """A `pass` answers with four small messages; with Nagle's algorithm on the kernel
    websocket the server held the last three until the client's delayed ACK (Linux: 40 ms at
    least), so every execution took 40 ms or more whatever the machine's speed."""
    answer = await jp_fetch("api", "kernels", method="POST", body=json.dumps({}))
    kernel = json.loads(answer.body)["id"]
    ws = await jp_ws_fetch("api", "kernels", kernel, "channels")
    try:
        for _ in range(3):  # the connection's first segments are acknowledged at once
            await _run(ws, "pass")
        times = [await _run(ws, "pass") for _ in range(15)]
    finally:
        ws.close()
        await jp_fetch("api", "kernels", kernel, method="DELETE")
    assert statistics.median(times) < 0.030, sorted(times)


def test_a_connection_class_of_the_configuration_is_left_alone() -> None:
    """An operator who configured a kernel websocket class of their own keeps it."""

    class Theirs(ZMQChannelsWebsocketConnection):
        pass

    settings: dict[str, Any] = {"kernel_websocket_connection_class": Theirs}
    assert not use_nodelay(settings)
    assert settings["kernel_websocket_connection_class"] is Theirs
    stock: dict[str, Any] = {"kernel_websocket_connection_class": ZMQChannelsWebsocketConnection}
    assert use_nodelay(stock)
    assert stock["kernel_websocket_connection_class"] is NoDelayConnection


async def test_every_answer_forbids_inline_script(jp_fetch) -> None:
    response = await jp_fetch("api", "status")
    policy = dict(
        directive.strip().split(" ", 1)
        for directive in response.headers["Content-Security-Policy"].split(";")
    )
    scripts = policy["script-src"].split()
    assert "'unsafe-inline'" not in scripts and "'self'" in scripts
    assert not {"blob:", "data:", "*"} & set(scripts)  # no module a page makes runs (anywidget's)
    # the one inline script of JupyterLab's own page (it hides ?token=) is allowed by its hash
    assert inline_script_hashes(lab_template()) and all(
        digest in scripts for digest in inline_script_hashes(lab_template())
    )
    assert policy["object-src"] == "'none'" and policy["base-uri"] == "'self'"


async def test_a_member_cannot_vouch_for_a_notebook(jp_fetch, jp_root_dir: Path) -> None:
    notebook = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (jp_root_dir / "shared.ipynb").write_text(json.dumps(notebook))
    with pytest.raises(HTTPClientError) as raised:
        await jp_fetch("api", "contents", "shared.ipynb", "trust", method="POST", body=b"")
    assert raised.value.code == 403
    assert "vouch" in raised.value.response.body.decode()
