"""The workspace's server extension, in jupyter_server's real in-process test server:
/dossier/info for the Dossier panel, and the closed download routes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tornado.httpclient import HTTPClientError

from dossierhub.extracts import current_provenance


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
    assert info["title"] == built["title"] and info["purpose"] == built["purpose"]
    assert info["expires"] == built["expires"] and isinstance(info["days_left"], int)
    assert info["service_url"] == "/services/dossierhub/"
    views = {v["name"]: v for v in info["views"]}
    assert set(views) == set(built["views"])
    assert views["residents"]["rows"] == built["views"]["residents"]["rows_out"]
    columns = {c["name"]: c for c in views["residents"]["columns"]}
    assert columns["bsn"] == {
        "name": "bsn",
        "type": "VARCHAR",
        "kind": "pseudonym (identifier)",
        "description": "citizen service number",
    }
    assert columns["birth_year"]["kind"] == "quasi-identifier"
    assert columns["district"]["kind"] == "attribute"


async def test_info_without_dossier_data_is_a_clear_404(
    jp_fetch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOSSIER_CATALOG", str(tmp_path / "gone" / "catalog.duckdb"))
    with pytest.raises(HTTPClientError) as raised:
        await jp_fetch("dossier", "info")
    assert raised.value.code == 404
    assert "not applied yet or has expired" in raised.value.response.body.decode()


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
