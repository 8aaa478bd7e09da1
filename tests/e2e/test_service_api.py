"""The dossierhub REST API at /services/dossierhub/api/, through the real proxy and hub:
status codes per role, bad input answered 400/422 with a message, and the OpenAPI document."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import time
import uuid
from collections.abc import Callable

import httpx
import pytest

from dossier_kernel.provenance import PROVENANCE_FILE
from dossierhub.data.extracts import current_provenance
from dossierhub.data.generations import DATA_LINK
from dossierhub.state.audit import AuditLog
from dossierhub.web.api import routes

from e2e_hub import ADMIN, ANALYST, LEAD, OTHER_LEAD, STRANGER, VIEWER, Hub
from executionrecords import append_batch, execute, kernel_call


def wait_for_run(api: httpx.Client, dossier: str, run_id: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        detail = api.get(f"dossiers/{dossier}/runs/{run_id}").json()
        if detail["provenance"]["status"] in ("succeeded", "failed"):
            return detail
        time.sleep(0.3)
    raise AssertionError(f"run {run_id} did not finish in {timeout} s")


def start(api: httpx.Client, template: str = "data_quality", **parameters: object) -> str:
    response = api.post(
        "dossiers/armoede/runs", json={"template": template, "parameters": parameters}
    )
    assert response.status_code == 202, response.text
    return response.json()["run_id"]


def test_each_person_sees_only_their_own_dossiers(client: Callable[[str], httpx.Client]) -> None:
    assert [d["id"] for d in client(LEAD).get("dossiers").json()] == ["armoede"]
    assert {d["id"]: d["role"] for d in client(VIEWER).get("dossiers").json()} == {
        "armoede": "viewer",
        "mobiliteit": "viewer",
    }
    assert client(STRANGER).get("dossiers").json() == []
    assert client(LEAD).get("me").json() == {
        "name": LEAD,
        "admin": False,
        "dossiers": {"armoede": "lead"},
    }


@pytest.mark.parametrize(
    ("person", "path", "status"),
    [
        (LEAD, "dossiers/armoede", 200),
        (VIEWER, "dossiers/armoede", 200),
        (STRANGER, "dossiers/armoede", 403),
        (LEAD, "dossiers/mobiliteit", 403),
        (ADMIN, "dossiers/armoede", 403),  # admins oversee; they do not read dossiers
        (LEAD, "dossiers/no-such-dossier", 403),  # same answer as for someone else's
        (ANALYST, "dossiers/armoede/templates", 200),
        (VIEWER, "dossiers/armoede/templates", 403),
        (STRANGER, "dossiers/armoede/templates", 403),
        (VIEWER, "dossiers/armoede/runs", 200),
        (STRANGER, "dossiers/armoede/runs", 403),
        (VIEWER, "dossiers/armoede/audit", 200),
        (STRANGER, "dossiers/armoede/audit", 403),
        (ADMIN, "admin/dossiers", 200),
        (LEAD, "admin/dossiers", 403),
    ],
)
def test_status_per_role(
    client: Callable[[str], httpx.Client], person: str, path: str, status: int
) -> None:
    response = client(person).get(path)
    assert response.status_code == status, response.text
    if status == 403:
        assert response.json()["error"]


def test_without_credentials_nothing_but_the_openapi_document(hub: Hub) -> None:
    response = httpx.get(f"{hub.service}api/dossiers")
    assert response.status_code == 403 and "log in" in response.json()["error"]
    forged = httpx.get(
        f"{hub.service}api/dossiers", headers={"Authorization": "token not-a-real-token"}
    )
    assert forged.status_code == 403
    assert httpx.get(f"{hub.service}api/openapi.json").json()["openapi"].startswith("3.")


def test_the_view_catalog_matches_the_extracts(
    hub: Hub, client: Callable[[str], httpx.Client]
) -> None:
    built = current_provenance(hub.home.extract_dir("armoede"))
    views = {v["name"]: v for v in client(VIEWER).get("dossiers/armoede").json()["views"]}
    assert set(views) == {"residents", "households", "incomes", "payments"}
    columns = {c["name"]: c for c in views["residents"]["columns"]}
    assert columns["bsn"]["kind"] == "pseudonym (identifier)"
    assert columns["birth_year"]["kind"] == "quasi-identifier"
    assert columns["bsn"]["description"] == "citizen service number"
    assert built is not None
    assert views["residents"]["rows"] == built.views["residents"].rows_out > 0
    assert views["residents"]["built_at"] == built.views["residents"].built_at


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b"{not json", 400, None),
        ({"parameters": {}}, 422, "template"),
        ({"template": "data_quality", "surprise": 1}, 422, "surprise"),
        ({"template": "district_profile", "parameters": {"nope": 1}}, 422, "nope"),
        (
            {"template": "district_profile", "parameters": {"low_income_threshold": 5}},
            422,
            "low_income_threshold",
        ),
        (
            {"template": "district_profile", "parameters": {"district": "Atlantis"}},
            422,
            "district",
        ),
        (
            {"template": "district_profile", "parameters": {"low_income_threshold": "many"}},
            422,
            "low_income_threshold",
        ),
        ({"template": "mobility_report"}, 422, "template"),  # not in the manifest
    ],
)
def test_bad_run_requests_are_explained_per_field(
    client: Callable[[str], httpx.Client], body: object, status: int, field: str | None
) -> None:
    api = client(ANALYST)
    before = api.get("dossiers/armoede/runs").json()
    if isinstance(body, bytes):
        response = api.post("dossiers/armoede/runs", content=body)
    else:
        response = api.post("dossiers/armoede/runs", json=body)
    assert response.status_code == status, response.text
    answer = response.json()
    assert answer["error"]
    if field is not None:
        assert field in answer["fields"], answer
    assert api.get("dossiers/armoede/runs").json() == before  # nothing was queued


def test_viewers_and_strangers_cannot_start_runs(client: Callable[[str], httpx.Client]) -> None:
    for person in (VIEWER, STRANGER, ADMIN):
        response = client(person).post(
            "dossiers/armoede/runs", json={"template": "data_quality", "parameters": {}}
        )
        assert response.status_code == 403, (person, response.text)


def test_run_release_and_read_through_the_api(client: Callable[[str], httpx.Client]) -> None:
    queued = client(ANALYST).post(
        "dossiers/armoede/runs",
        json={"template": "data_quality", "parameters": {"view": "households"}},
    )
    assert queued.status_code == 202 and queued.json()["status"] == "queued"
    assert queued.json()["in_progress"] is True  # the panel follows it by this, not a list
    run_id = queued.json()["run_id"]
    viewer = client(VIEWER)
    assert viewer.get(f"dossiers/armoede/runs/{run_id}").status_code == 403
    assert run_id not in [r["run_id"] for r in viewer.get("dossiers/armoede/runs").json()]
    detail = wait_for_run(client(LEAD), "armoede", run_id)
    assert detail["provenance"]["status"] == "succeeded", detail["provenance"]["error"]
    assert detail["provenance"]["parameters"]["view"] == "households"
    assert detail["release"]["allowed"] is True
    assert (detail["in_progress"], detail["succeeded"], detail["released_words"]) == (
        False,
        True,
        None,
    )
    # the next step: both leads may release it; its author is told so, each lead is asked
    assert detail["checks_failed"] is False and detail["release"]["shows_to"] == [VIEWER]
    assert (detail["awaiting_your_release"], detail["next_step"]) == (True, "Awaiting your release")
    rows = client(ANALYST).get("dossiers/armoede/runs").json()
    (mine,) = [r for r in rows if r["run_id"] == run_id]
    assert mine["waiting_for_release_by"] == [LEAD, OTHER_LEAD]
    assert mine["next_step"] == f"Waiting for release by {LEAD} or {OTHER_LEAD}"
    inbox = {d["id"]: d["awaiting_release"] for d in client(LEAD).get("dossiers").json()}
    assert inbox["armoede"] >= 1
    assert [d["awaiting_release"] for d in client(ANALYST).get("dossiers").json()] == [0]

    # four eyes: the analyst who ran it and any non-lead cannot release
    author = client(ANALYST).post(f"dossiers/armoede/runs/{run_id}/release", json={})
    assert author.status_code == 403
    bad = client(LEAD).post(f"dossiers/armoede/runs/{run_id}/release", json={"why": "x"})
    assert bad.status_code == 422 and "why" in bad.json()["fields"]
    released = client(LEAD).post(f"dossiers/armoede/runs/{run_id}/release", json={})
    assert released.status_code == 200, released.text
    assert released.json()["by"] == LEAD
    again = client(OTHER_LEAD).post(f"dossiers/armoede/runs/{run_id}/release", json={})
    assert again.status_code == 409

    assert viewer.get(f"dossiers/armoede/runs/{run_id}").json()["released"]["by"] == LEAD
    (row,) = [r for r in viewer.get("dossiers/armoede/runs").json() if r["run_id"] == run_id]
    assert row["released_words"] == f"released by {LEAD}" and row["in_progress"] is False
    assert row["next_step"] is None and row["waiting_for_release_by"] == []  # done: no one
    assert (
        inbox["armoede"] - 1
        == (
            {d["id"]: d["awaiting_release"] for d in client(LEAD).get("dossiers").json()}["armoede"]
        )
    )
    html = viewer.get(f"dossiers/armoede/runs/{run_id}/html")
    assert html.status_code == 200 and "<html" in html.text.lower()
    assert "sandbox" in html.headers["Content-Security-Policy"]
    missing = client(LEAD).get("dossiers/armoede/runs/20990101T000000-000000")
    assert missing.status_code == 404

    trail = viewer.get("dossiers/armoede/audit").json()
    assert trail["chain"]["ok"] is True
    mine = [r["action"] for r in trail["records"] if r["details"].get("run") == run_id]
    for allowed in ("report.run", "report.finished", "report.release", "report.read"):
        assert mine.count(allowed) == 1, (allowed, mine)  # each once
    # the viewer's early look, the author's release, the bad body and the second release
    assert mine.count("report.show.refused") == 1
    assert mine.count("report.release.refused") == 3


def test_admin_overview_lists_every_dossier_with_its_problems(
    client: Callable[[str], httpx.Client],
) -> None:
    rows = {r["id"]: r for r in client(ADMIN).get("admin/dossiers").json()}
    assert {"armoede", "mobiliteit", "woonfraude-2025"} <= set(rows)
    assert rows["armoede"]["members"]["lead"] == ["a.jansen", "e.mulder"]
    assert rows["armoede"]["last_apply"]
    assert rows["woonfraude-2025"]["expired"] is True
    assert any("expired" in p["text"] for p in rows["woonfraude-2025"]["problems"])


def test_openapi_documents_every_api_route(hub: Hub) -> None:
    document = httpx.get(f"{hub.service}api/openapi.json").json()
    documented = set(document["paths"])
    served = set()
    for pattern, _ in routes("/"):
        path = pattern.removeprefix("/api")
        if path == r"/openapi\.json":
            continue
        path = re.sub(r"dossiers/\([^)]*\)", "dossiers/{dossier}", path)
        path = re.sub(r"tables/\([^)]*\)\\\.csv", "tables/{table}.csv", path)
        path = re.sub(r"people/\([^)]*\)", "people/{person}", path)
        served.add(re.sub(r"runs/\([^)]*\)", "runs/{run}", path))
    assert served == documented
    assert "RunRequest" in document["components"]["schemas"]


def test_a_malformed_extract_provenance_is_a_409_in_words(
    hub: Hub, client: Callable[[str], httpx.Client]
) -> None:
    path = hub.home.extract_dir("armoede") / DATA_LINK / PROVENANCE_FILE
    kept = path.read_bytes()
    path.write_text('{"views": 3}')
    try:
        for person, asked in (
            (VIEWER, "dossiers/armoede"),
            (ANALYST, "dossiers/armoede/templates"),
        ):
            response = client(person).get(asked)
            assert response.status_code == 409, response.text
            assert "field views should be an object" in response.json()["error"]
    finally:
        path.write_bytes(kept)
    assert client(VIEWER).get("dossiers/armoede").status_code == 200


def test_a_damaged_checks_or_outputs_file_answers_409_naming_it(
    hub: Hub, client: Callable[[str], httpx.Client]
) -> None:
    """checks.json and outputs.json are read through their models: a file that is not what
    the run wrote is a conflict, named, never a server error."""
    run_id = start(client(ANALYST), view="households")
    lead = client(LEAD)
    assert wait_for_run(lead, "armoede", run_id)["provenance"]["status"] == "succeeded"
    run = hub.home.run_folder("armoede", run_id)
    for path, damage in (
        (run.checks, '[{"table": "households_per_area", "passed": "surely"}]'),
        (run.outputs_index, '[{"id": "c1.o0"}]'),
    ):
        good = path.read_bytes()
        path.write_text(damage)
        try:
            answer = lead.get(f"dossiers/armoede/runs/{run_id}")
            assert answer.status_code == 409, answer.text
            assert path.name in answer.text
        finally:
            path.write_bytes(good)
    assert lead.get(f"dossiers/armoede/runs/{run_id}").status_code == 200


def test_executions_per_role_with_filters_and_the_admins_export(
    hub: Hub, client: Callable[[str], httpx.Client]
) -> None:
    """Batches appended as the service appends them, in a notebook of this test's own (the
    session's other executions stay out of its counts): the team sees everyone's, a viewer
    their own only, a member of another dossier nothing; a bad filter is a 400 naming it;
    the export holds exactly one person's rows; each answer is recorded."""
    notebook = f"views-{uuid.uuid4().hex[:8]}.ipynb"
    t0 = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    secret = "incomes.filter(pl.col('amount') < 227440)"
    append_batch(
        hub.home,
        "armoede",
        [
            execute(ANALYST, t0, "import polars as pl", path=notebook, cell_id="v1"),
            execute(LEAD, t0 + dt.timedelta(seconds=1), secret, path=notebook, cell_id="v1"),
            execute(ANALYST, t0 + dt.timedelta(seconds=2), "1/0", path=notebook, cell_id="v2"),
            kernel_call(LEAD, t0 + dt.timedelta(seconds=3), "restart", path=notebook),
        ],
    )
    append_batch(hub.home, "mobiliteit", [execute("h.deboer", t0, "trips", path=notebook)])
    mark = len(AuditLog(hub.home).read())
    asked = {"path": notebook}

    team = client(LEAD).get("dossiers/armoede/executions", params=asked)
    assert team.status_code == 200, team.text
    assert [r["person"] for r in team.json()["executions"]] == [ANALYST, LEAD, ANALYST]
    assert team.json()["people"] == {ANALYST: 2, LEAD: 1}
    assert team.json()["notebooks"] == {notebook: 3}
    assert [(c["person"], c["action"]) for c in team.json()["kernel_calls"]] == [(LEAD, "restart")]
    viewer = client(VIEWER).get("dossiers/armoede/executions", params=asked)
    assert viewer.status_code == 200 and viewer.json()["executions"] == []
    assert viewer.json()["kernel_calls"] == []
    assert secret not in viewer.text
    for who, params in (
        (VIEWER, {**asked, "person": ANALYST}),
        ("h.deboer", asked),  # mobiliteit's analyst
        (STRANGER, asked),
    ):
        refused = client(who).get("dossiers/armoede/executions", params=params)
        assert refused.status_code == 403, refused.text
        assert secret not in refused.text
    for name, value in (("since", "yesterday"), ("limit", "0")):
        bad = client(LEAD).get("dossiers/armoede/executions", params={name: value})
        assert bad.status_code == 400 and set(bad.json()["fields"]) == {name}, bad.text

    latest = client(ANALYST).get("dossiers/armoede/executions/latest", params=asked)
    assert {c: v["person"] for c, v in latest.json()["cells"].items()} == {
        "v1": LEAD,
        "v2": ANALYST,
    }
    assert client(VIEWER).get("dossiers/armoede/executions/latest", params=asked).status_code == 403
    mine = client(ANALYST).get("me/executions", params=asked).json()
    assert mine["dossiers"] == {"armoede": 2} and mine["people"] == {ANALYST: 2}

    export = client(ADMIN).get(f"admin/people/{ANALYST}/executions", params={"format": "csv"})
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert rows and {r["person"] for r in rows} == {ANALYST}
    assert [r["first_line"] for r in rows if r["path"] == notebook] == [
        "import polars as pl",
        "1/0",
    ]
    assert client(LEAD).get(f"admin/people/{ANALYST}/executions").status_code == 403
    # the Admin page's form asks the page route: the same file, the same rule
    form = f"{hub.service}admin/export"
    page = httpx.get(
        form, params={"person": ANALYST, "format": "csv"}, headers=client(ADMIN).headers
    )
    assert page.status_code == 200, page.text
    assert page.headers["content-disposition"] == f'attachment; filename="executions-{ANALYST}.csv"'
    assert page.text == client(ADMIN).get(f"admin/people/{ANALYST}/executions?format=csv").text
    refused = httpx.get(form, params={"person": ANALYST}, headers=client(LEAD).headers)
    assert refused.status_code == 403 and "only admins export" in refused.text
    assert client(ADMIN).get(f"admin/people/{ANALYST}/executions?format=xlsx").status_code == 400

    # the audit page's own filter: a bad date is said at its form, the page still whole
    page = httpx.get(
        f"{hub.service}dossiers/armoede/audit",
        params={"from": "yesterday"},
        headers=client(LEAD).headers,
    )
    assert page.status_code == 400 and 'id="executions-error"' in page.text
    assert "from: &#39;yesterday&#39; is not a date" in page.text and 'id="chain"' in page.text

    seen = httpx.get(  # a viewer's audit page: their own executions, no one else's, no list
        f"{hub.service}dossiers/armoede/audit",
        params={"notebook": notebook},
        headers=client(VIEWER).headers,
    )
    assert seen.status_code == 200 and "Your own code" in seen.text
    assert 'id="filter-ran-by"' not in seen.text and 'id="no-executions"' in seen.text
    assert 'id="kernel-calls"' not in seen.text  # the lead's restart is not the viewer's
    lead_page = httpx.get(
        f"{hub.service}dossiers/armoede/audit",
        params={"notebook": notebook},
        headers=client(LEAD).headers,
    )
    assert lead_page.status_code == 200
    calls = lead_page.text.split('id="kernel-calls"')[1].split("</table>")[0]
    assert f'data-person="{LEAD}"' in calls and "<td>restarted</td>" in calls
    assert secret not in seen.text and "import polars" not in seen.text

    recorded = [(r["action"], r["actor"]) for r in AuditLog(hub.home).read()[mark:]]
    for decision in (
        ("executions.show", LEAD),
        ("executions.show.refused", VIEWER),
        ("executions.show.refused", "h.deboer"),
        ("executions.latest.refused", VIEWER),
        ("executions.mine", ANALYST),
        ("executions.export", ADMIN),
        ("executions.export.refused", LEAD),
        ("audit.show.refused", LEAD),
    ):
        assert decision in recorded, decision
