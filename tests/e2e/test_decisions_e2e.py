"""Refusals from the pages, the API and the hub reach the dossier's audit trail, with the
channel they came through; group changes made by apply and tokens minted reach it too; an
allowed decision is recorded once. Against the real hub, its proxy and the service."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page

from dossierhub.state.audit import AuditLog

from e2e_hub import ANALYST, LEAD, OTHER_LEAD, STRANGER, VIEWER, Hub


def trail(client: Callable[[str], httpx.Client], dossier: str = "armoede") -> list[dict]:
    """The dossier's audit trail as a member reads it (newest first)."""
    reader = {"armoede": OTHER_LEAD, "mobiliteit": "f.smit"}[dossier]
    answer = client(reader).get(f"dossiers/{dossier}/audit")
    assert answer.status_code == 200, answer.text
    assert answer.json()["chain"]["ok"] is True
    return answer.json()["records"]


def find(records: list[dict], action: str, actor: str, **details: Any) -> list[dict]:
    return [
        r
        for r in records
        if r["action"] == action
        and r["actor"] == actor
        and all(r["details"].get(k) == v for k, v in details.items())
    ]


def start_run(api: httpx.Client) -> str:
    response = api.post(
        "dossiers/armoede/runs",
        json={"template": "data_quality", "parameters": {"view": "households"}},
    )
    assert response.status_code == 202, response.text
    return response.json()["run_id"]


def wait_for_run(api: httpx.Client, run_id: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        detail = api.get(f"dossiers/armoede/runs/{run_id}").json()
        if detail["provenance"]["status"] in ("succeeded", "failed"):
            return detail
        time.sleep(0.3)
    raise AssertionError(f"run {run_id} did not finish in {timeout} s")


def test_refusals_on_the_pages_reach_the_trail(
    hub: Hub, person: Callable[[str], Page], client: Callable[[str], httpx.Client]
) -> None:
    since = max(r["seq"] for r in trail(client))  # other tests refuse the same viewer too
    viewer = person(VIEWER)
    xsrf = viewer.evaluate("window.jhdata.xsrf_token")
    posted = viewer.request.post(
        f"{hub.service}dossiers/armoede/runs",
        form={"_xsrf": xsrf, "template": "data_quality"},
    )
    assert posted.status == 403

    run_id = start_run(client(LEAD))  # the lead's own run: four eyes refuse their release
    lead = person(LEAD)
    xsrf = lead.evaluate("window.jhdata.xsrf_token")
    release = lead.request.post(
        f"{hub.service}dossiers/armoede/runs/{run_id}/release", form={"_xsrf": xsrf}
    )
    assert release.status == 403 and "four eyes" in release.text()

    records = [r for r in trail(client) if r["seq"] > since]
    (run,) = find(records, "report.run.refused", VIEWER, template="data_quality")
    (four_eyes,) = find(records, "report.release.refused", LEAD, run=run_id)
    for record in (run, four_eyes):
        assert record["channel"] == "service"
        assert record["details"]["outcome"] == "refused"
        assert record["details"]["reason"] == "forbidden"
    assert "four eyes" in four_eyes["details"]["message"]


def test_refusals_in_the_api_reach_the_trail(
    hub: Hub, client: Callable[[str], httpx.Client]
) -> None:
    run_id = start_run(client(LEAD))
    analyst = client(ANALYST).post(f"dossiers/armoede/runs/{run_id}/release", json={})
    assert analyst.status_code == 403
    stranger = client(STRANGER).get(f"dossiers/armoede/runs/{run_id}")
    nowhere = client(STRANGER).get(f"dossiers/no-such-dossier/runs/{run_id}")
    assert stranger.status_code == nowhere.status_code == 403
    # the stranger learns nothing: the same answer for a dossier that does not exist
    assert stranger.json()["error"].replace("armoede", "ID") == nowhere.json()["error"].replace(
        "no-such-dossier", "ID"
    )
    invalid = client(ANALYST).post(
        "dossiers/armoede/runs",
        json={"template": "district_profile", "parameters": {"low_income_threshold": 5}},
    )
    assert invalid.status_code == 422
    malformed = client(ANALYST).post("dossiers/armoede/runs", content=b"{not json")
    assert malformed.status_code == 400

    records = trail(client)
    (release,) = find(records, "report.release.refused", ANALYST, run=run_id)
    assert release["details"]["reason"] == "forbidden"
    (read,) = find(records, "report.show.refused", STRANGER, run=run_id)
    assert read["details"]["dossier"] == "armoede" and read["details"]["reason"] == "forbidden"
    refused_runs = find(records, "report.run.refused", ANALYST)
    reasons = {r["details"]["reason"] for r in refused_runs}
    assert {"invalid", "malformed"} <= reasons
    assert any("below the minimum" in r["details"]["message"] for r in refused_runs)
    for record in (release, read, *refused_runs):
        assert record["channel"] == "service"
    # recorded under the id asked for: in no existing dossier's trail, in the log (this
    # run's: other tests also knock on no-such-dossier as the stranger)
    elsewhere = [
        r
        for r in AuditLog(hub.home).read()
        if r["actor"] == STRANGER
        and r["details"].get("dossier") == "no-such-dossier"
        and r["details"].get("run") == run_id
    ]
    assert [r["action"] for r in elsewhere] == ["report.show.refused"]


def test_refusals_by_the_hub_reach_the_trail(
    hub: Hub, client: Callable[[str], httpx.Client]
) -> None:
    """The hub's own role check (a viewer starting the workspace) and the spawner's (a lead of
    an expired dossier) are both recorded, with channel hub."""
    since = AuditLog(hub.home).read()[-1]["seq"]  # other tests are refused the same way
    viewer = httpx.post(
        f"{hub.url}hub/api/users/dossier-armoede/server",
        headers={"Authorization": f"token {hub.token(VIEWER)}"},
    )
    assert viewer.status_code in (403, 404)  # 404: the hub does not say the workspace exists
    expired = httpx.post(
        f"{hub.url}hub/api/users/dossier-woonfraude-2025/server",
        headers={"Authorization": f"token {hub.token('i.vos')}"},
        timeout=60,
    )
    assert expired.status_code >= 400
    newer = [r for r in trail(client) if r["seq"] > since]
    (refused,) = find(newer, "workspace.start.refused", VIEWER)
    assert refused["channel"] == "hub" and refused["details"]["reason"] == "forbidden"
    deadline = time.monotonic() + 30
    while True:  # the hub answers before or after the spawner has been asked
        log = [r for r in AuditLog(hub.home).read() if r["seq"] > since]
        found = find(log, "workspace.start.refused", "i.vos", dossier="woonfraude-2025")
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(found) == 1 and found[0]["channel"] == "hub"
    assert "expired" in found[0]["details"]["message"]


def test_allowed_decisions_are_recorded_once(
    hub: Hub, client: Callable[[str], httpx.Client]
) -> None:
    run_id = start_run(client(ANALYST))
    detail = wait_for_run(client(LEAD), run_id)  # polls the run's detail, as the run page does
    assert detail["provenance"]["status"] == "succeeded", detail["provenance"]["error"]
    released = client(LEAD).post(f"dossiers/armoede/runs/{run_id}/release", json={})
    assert released.status_code == 200, released.text
    html = client(VIEWER).get(f"dossiers/armoede/runs/{run_id}/html")
    assert html.status_code == 200
    table = client(VIEWER).get(f"dossiers/armoede/runs/{run_id}")
    assert table.status_code == 200 and table.json()["tables"]
    name = table.json()["tables"][0]
    csv = client(VIEWER).get(f"dossiers/armoede/runs/{run_id}/tables/{name}.csv")
    assert csv.status_code == 200

    mine = [r for r in trail(client) if r["details"].get("run") == run_id]
    actions = sorted(r["action"] for r in mine)
    assert actions == sorted(
        ["report.run", "report.finished", "report.release", "report.read", "report.read"]
    )
    (run,) = find(mine, "report.run", ANALYST)
    assert run["details"]["outcome"] == "allowed" and run["details"]["template"] == "data_quality"
    (release,) = find(mine, "report.release", LEAD)
    assert release["channel"] == "service" and release["details"]["failed_checks"] == []
    assert find(mine, "report.read", VIEWER, view="report")
    assert find(mine, "report.read", VIEWER, table=name)


@pytest.fixture
def extra_viewer(hub: Hub) -> Iterator[str]:
    """h.deboer (of mobiliteit) made a viewer of armoede by apply, and removed again."""
    original = hub.manifest("armoede")
    changed = {**original, "members": {**original["members"]}}
    changed["members"]["viewer"] = [*original["members"]["viewer"], "h.deboer"]
    hub.write_manifest("armoede", changed)
    try:
        applied = hub.apply()
        assert applied.returncode == 0, applied.stderr
        yield "h.deboer"
    finally:
        hub.write_manifest("armoede", original)
        applied = hub.apply()
        assert applied.returncode == 0, applied.stderr


def test_group_changes_by_apply_reach_the_trail(
    hub: Hub, client: Callable[[str], httpx.Client], extra_viewer: str
) -> None:
    added = [
        r
        for r in trail(client)
        if r["action"] == "hub.sync"
        and f"added {extra_viewer} to dossier-armoede-viewers" in r["details"]["changes"]
    ]
    assert len(added) == 1 and added[0]["channel"] == "cli"
    # the other dossier's trail holds only its own changes
    assert not [
        r
        for r in trail(client, "mobiliteit")
        if r["action"] == "hub.sync" and "dossier-armoede-viewers" in str(r["details"])
    ]


def test_removing_a_member_by_apply_reaches_the_trail(
    hub: Hub, client: Callable[[str], httpx.Client]
) -> None:
    """Runs after the fixture above put the manifest back: the removal is recorded too."""
    removed = [
        r
        for r in trail(client)
        if r["action"] == "hub.sync"
        and "removed h.deboer from dossier-armoede-viewers" in r["details"]["changes"]
    ]
    assert removed


def test_a_minted_token_reaches_the_trail(hub: Hub, client: Callable[[str], httpx.Client]) -> None:
    value = hub.token(VIEWER)
    for dossier in ("armoede", "mobiliteit"):  # the token reaches both of the viewer's dossiers
        minted = [
            r
            for r in trail(client, dossier)
            if r["action"] == "hub.token" and r["details"]["user"] == VIEWER
        ]
        # each trail names its own dossier only: the viewer's other ones are not its business
        assert minted and minted[0]["details"]["dossiers"] == [dossier]
        assert minted[0]["channel"] == "cli"
    logged = [r for r in AuditLog(hub.home).read() if r["action"] == "hub.token"]
    assert logged[-1]["details"]["dossiers"] == ["armoede", "mobiliteit"]
    assert value not in (hub.home.audit_log_file).read_text()


def test_opening_a_workspace_in_the_browser_without_a_role_reaches_the_trail(
    hub: Hub, person: Callable[[str], Page], client: Callable[[str], httpx.Client]
) -> None:
    """A viewer types the workspace's address: the hub refuses its login (OAuth) to them."""
    started = hub.start("dossier-armoede", hub.token(LEAD))
    assert started.status_code in (201, 202, 400), started.text  # 400: running already
    viewer = person(VIEWER)
    answer = viewer.goto(f"{hub.url}user/dossier-armoede/lab")
    assert answer is not None and answer.status in (403, 404)
    refused = find(trail(client), "workspace.open.refused", VIEWER)
    assert refused and refused[0]["channel"] == "hub"
