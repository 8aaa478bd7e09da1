"""The dossierhub pages in headless Chromium (pytest-playwright) against the real hub: log in
through the hub's OAuth, run a template through its form, release it as a second lead, read it
as a viewer. Screenshots of each page go to test-artifacts/screenshots/."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator

import httpx
import nbformat
import pytest
import yaml
from playwright.sync_api import Page, expect

from dossierhub.state.audit import AuditLog

from e2e_hub import ADMIN, Hub
from e2e_pages import expect_succeeded, shot


def test_run_release_read(hub: Hub, person: Callable[[str], Page]) -> None:
    lead = person("a.jansen")
    card = lead.locator(".dossier[data-dossier='armoede']")
    expect(card).to_contain_text("Poverty measures 2026")
    expect(card.locator(".role")).to_have_text("lead")
    expect(card.locator(".open-workspace")).to_be_visible()
    shot(lead, "01-my-dossiers-lead")

    card.get_by_role("link", name="Details and reports").click()
    expect(lead.locator("h1")).to_have_text("Poverty measures 2026")
    expect(lead.locator(".members[data-role='viewer']")).to_have_text("d.visser")
    residents = lead.locator("details.view[data-view='residents']")
    residents.locator("summary").click()
    expect(residents.locator("table.columns")).to_contain_text("pseudonym (identifier)")
    expect(residents.locator("table.columns")).to_contain_text("citizen service number")

    form = lead.locator("details.template[data-template='district_profile']")
    form.locator("summary").click()
    expect(form.locator("select[name='p:district'] option")).to_have_count(8)
    expect(form.locator("#district_profile-low_income_threshold")).to_have_attribute("max", "60000")
    expect(form).to_contain_text("below which a household counts as low-income")
    form.locator("select[name='p:district']").select_option("West")
    form.locator("input[name='p:low_income_threshold']").fill("30000")
    shot(lead, "02-dossier-run-form")
    form.get_by_role("button", name="Run district_profile").click()

    lead.wait_for_url("**/runs/*")
    run_url = lead.url
    status = lead.locator("#status")
    expect_succeeded(lead)
    expect(status).to_have_text("succeeded")
    expect(lead.locator(".provenance")).to_contain_text('"district": "West"')
    expect(lead.locator(".check").first).to_have_attribute("data-passed", "true")
    expect(lead.locator("#release-why-not")).to_contain_text("four eyes")
    expect(lead.locator("#release-button")).to_have_count(0)
    shot(lead, "03-run-finished-author")

    second = person("e.mulder")
    second.goto(run_url)
    second.locator("#release-button").click()
    expect(second.locator("#released")).to_have_text("released by e.mulder")
    shot(second, "04-run-released")

    viewer = person("d.visser")
    viewer.goto(f"{hub.service}dossiers/armoede")
    expect(viewer.locator("details.template")).to_have_count(0)  # no run form
    expect(viewer.locator(".open-workspace")).to_have_count(0)
    run_id = run_url.rsplit("/", 1)[1]
    viewer.locator(f"tr.run[data-run='{run_id}'] a").click()
    frame = viewer.frame_locator("#report-frame")
    expect(frame.locator("body")).to_contain_text("West", timeout=30_000)
    assert viewer.locator("#report-frame").get_attribute("sandbox") == ""
    shot(viewer, "05-report-viewer")


def test_live_status_shows_progress_through_the_cells(
    hub: Hub, person: Callable[[str], Page]
) -> None:
    analyst = person("b.devries")
    analyst.goto(f"{hub.service}dossiers/armoede")
    form = analyst.locator("details.template[data-template='data_quality']")
    form.locator("summary").click()
    form.get_by_role("button", name="Run data_quality").click()
    analyst.wait_for_url("**/runs/*")
    # while it runs the page polls the API; it ends on a reloaded, finished page
    seen = analyst.locator("#progress-text")
    if seen.count():
        expect(seen).to_contain_text(" cells", timeout=60_000)
    expect_succeeded(analyst)
    shot(analyst, "06-run-analyst")


def test_invalid_input_is_explained_at_the_field(hub: Hub, person: Callable[[str], Page]) -> None:
    lead = person("a.jansen")
    lead.goto(f"{hub.service}dossiers/armoede")
    form = lead.locator("details.template[data-template='district_profile']")
    form.locator("summary").click()
    field = form.locator("input[name='p:low_income_threshold']")
    field.fill("5")
    # the browser itself refuses an out-of-range number (min/max from the schema) ...
    assert field.evaluate("e => e.validity.rangeUnderflow") is True
    # ... and the server explains it at the field when the browser does not check
    form.locator("form").evaluate("f => { f.noValidate = true; }")
    runs_before = lead.locator("tr.run").count()
    form.get_by_role("button", name="Run district_profile").click()
    error = lead.locator("details.template[data-template='district_profile'] .field-error")
    expect(error).to_contain_text("below the minimum 10000")
    expect(lead.locator("input[name='p:low_income_threshold']")).to_have_value("5")
    expect(lead.locator("tr.run")).to_have_count(runs_before)
    shot(lead, "07-invalid-input")


def test_viewer_cannot_reach_the_run_form_or_api(hub: Hub, person: Callable[[str], Page]) -> None:
    viewer = person("d.visser")
    xsrf = viewer.evaluate("window.jhdata.xsrf_token")
    posted = viewer.request.post(
        f"{hub.service}dossiers/armoede/runs",
        form={"_xsrf": xsrf, "template": "data_quality"},
    )
    assert posted.status == 403
    api = viewer.request.post(
        f"{hub.service}api/dossiers/armoede/runs",
        data={"template": "data_quality", "parameters": {}},
        headers={"X-XSRFToken": xsrf},
    )
    assert api.status == 403
    assert viewer.request.get(f"{hub.service}api/dossiers/armoede/templates").status == 403


def test_cookie_posts_need_the_xsrf_token(hub: Hub, person: Callable[[str], Page]) -> None:
    lead = person("a.jansen")
    forged = lead.request.post(
        f"{hub.service}api/dossiers/armoede/runs",
        data={"template": "data_quality", "parameters": {}},
    )
    assert forged.status == 403


def test_stranger_sees_no_dossier(hub: Hub, person: Callable[[str], Page]) -> None:
    stranger = person("s.vreemd")
    expect(stranger.locator("#no-dossiers")).to_be_visible()
    expect(stranger.locator(".dossier")).to_have_count(0)
    shot(stranger, "08-stranger")
    stranger.goto(f"{hub.service}dossiers/armoede")
    expect(stranger.locator("#refusal")).to_contain_text("not a member")
    assert "Poverty" not in stranger.content()


def test_audit_trail_page(hub: Hub, person: Callable[[str], Page]) -> None:
    viewer = person("d.visser")
    viewer.goto(f"{hub.service}dossiers/armoede")
    viewer.locator("#audit-link").click()
    expect(viewer.locator("#chain")).to_have_attribute("data-ok", "true")
    expect(viewer.locator("li.record[data-action='apply']").first).to_be_visible()
    shot(viewer, "09-audit")


def test_admin_page(hub: Hub, person: Callable[[str], Page]) -> None:
    admin = person(ADMIN)
    admin.locator("#nav-admin").click()
    rows = admin.locator("tr.admin-dossier")
    expect(rows.filter(has_text="woonfraude-2025")).to_contain_text("expired")
    expect(rows.filter(has_text="armoede")).to_contain_text("a.jansen, e.mulder")
    shot(admin, "10-admin")
    lead = person("a.jansen")
    assert lead.locator("#nav-admin").count() == 0
    response = httpx.get(f"{hub.service}admin")  # not logged in: sent to the hub's login
    assert response.status_code == 302 and "/hub/" in response.headers["location"]


@pytest.fixture
def disclosive_template(hub: Hub) -> Iterator[str]:
    """A template of mobiliteit that publishes a table with a small cell."""
    name = "pages_small_cells"
    path = hub.home.templates_dir / f"{name}.ipynb"
    book = nbformat.v4.new_notebook()
    parameters = nbformat.v4.new_code_cell("area = 'Centrum'")
    parameters.metadata["tags"] = ["parameters"]
    book.cells = [
        parameters,
        nbformat.v4.new_code_cell(
            "import polars as pl\n"
            "publish(pl.DataFrame({'area': [area, 'West'], 'trips': [3, 400]}), "
            "'trips_per_area', counts=['trips'])"
        ),
    ]
    nbformat.write(book, path)
    manifest_path = hub.home.dossiers_dir / "mobiliteit.yaml"
    original = manifest_path.read_text()
    manifest = yaml.safe_load(original)
    manifest["templates"] = [*manifest["templates"], name]
    manifest_path.write_text(yaml.safe_dump(manifest))
    yield name
    manifest_path.write_text(original)
    path.unlink()


def test_release_with_a_failed_check_needs_a_justification(
    hub: Hub, person: Callable[[str], Page], disclosive_template: str
) -> None:
    lead = person("f.smit")
    lead.goto(f"{hub.service}dossiers/mobiliteit")
    form = lead.locator(f"details.template[data-template='{disclosive_template}']")
    form.locator("summary").click()
    expect(form.locator("input[name='p:area']")).to_have_value("Centrum")  # inferred default
    form.get_by_role("button", name=f"Run {disclosive_template}").click()
    lead.wait_for_url("**/runs/*")
    expect_succeeded(lead)
    check = lead.locator(".check[data-table='trips_per_area']")
    expect(check).to_have_attribute("data-passed", "false")
    expect(check.locator(".finding")).to_contain_text("min_count")
    run_url = lead.url

    second = person("g.meijer")
    second.goto(run_url)
    box = second.locator("#justification")
    expect(box).to_be_visible()
    second.locator("#release-form").evaluate("f => { f.noValidate = true; }")
    second.locator("#release-button").click()
    expect(second.locator("#release-error")).to_contain_text("justification")
    expect(second.locator("#released")).to_have_count(0)
    second.locator("#justification").fill("Centrum's 3 trips are a sensor test, not people.")
    second.locator("#release-button").click()
    expect(second.locator("#released")).to_have_text("released by g.meijer")
    expect(second.locator("body")).to_contain_text("a sensor test, not people")
    shot(second, "11-release-with-justification")


def test_opening_the_workspace_is_audited(hub: Hub, person: Callable[[str], Page]) -> None:
    analyst = person("b.devries")
    link = analyst.locator(".dossier[data-dossier='armoede'] .open-workspace")
    target = link.get_attribute("href")
    response = analyst.request.get(f"{hub.url.rstrip('/')}{target}", max_redirects=0)
    assert response.status == 302
    assert response.headers["location"] == "/hub/spawn/dossier-armoede"
    opened = [r for r in AuditLog(hub.home).read() if r["action"] == "workspace.open"]
    assert opened[-1]["actor"] == "b.devries"
    assert opened[-1]["details"] == {"dossier": "armoede", "outcome": "allowed"}
    viewer = person("d.visser")
    refused = viewer.request.get(f"{hub.service}dossiers/armoede/open", max_redirects=0)
    assert refused.status == 403


@pytest.fixture
def unreadable_release(hub: Hub) -> Iterator[str]:
    """A finished run of armoede whose release.json is not a release record (a hand, a bug):
    present, it releases the run. Removed after the test (audit verify fails while it is
    there, as it should)."""
    run_id = "20200101T000000-0dd0dd"
    folder = hub.home.run_folder("armoede", run_id).path
    folder.mkdir(parents=True)
    record = {
        "run_id": run_id,
        "dossier": "armoede",
        "template": "data_quality",
        "user": "b.devries",
        "status": "succeeded",
        "template_origin": "built-in",
        "template_sha256": "0" * 64,
        "queued": "2020-01-01T00:00:00.000+00:00",
        "checks_passed": True,
        "outputs": {},
    }
    (folder / "provenance.json").write_text(json.dumps(record))
    (folder / "release.json").write_text("[]")
    try:
        yield run_id
    finally:
        shutil.rmtree(folder)


def test_an_unreadable_release_shows_as_released_on_every_page(
    hub: Hub, person: Callable[[str], Page], unreadable_release: str
) -> None:
    words = "released (record unreadable: "
    run_url = f"{hub.service}dossiers/armoede/runs/{unreadable_release}"
    viewer = person("d.visser")
    viewer.goto(f"{hub.service}dossiers/armoede")
    row = viewer.locator(f"tr.run[data-run='{unreadable_release}']")
    expect(row).to_contain_text(words)
    expect(row).not_to_contain_text("undefined")
    row.locator("a").click()
    expect(viewer.locator("#released")).to_contain_text(words)
    expect(viewer.locator("#release-unreadable")).to_contain_text("is not a record")
    lead = person("e.mulder")
    lead.goto(run_url)
    expect(lead.locator("#release-form")).to_have_count(0)
    expect(lead.locator("#released")).to_contain_text(words)
    shot(lead, "12-release-unreadable")
