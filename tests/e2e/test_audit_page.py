"""The audit trail as a lead reads it in headless Chromium, in a browser set to New York's time
zone: sentences, not JSON; a run id that opens the run; the form narrows the trail to one
person and one action and keeps that in a URL to share; a filter the trail cannot answer is
a message, not an error page; every time on the dossier, run and audit pages is a local
date in the browser's zone, with no ISO timestamp left. The API narrows the same way.
Screenshots in test-artifacts/screenshots/."""

from __future__ import annotations

import datetime as dt
import re
import time
import uuid
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import httpx
from playwright.sync_api import Page, expect

from e2e_a11y import Findings
from e2e_hub import ADMIN, ANALYST, LEAD, OTHER_LEAD, VIEWER, Hub
from e2e_pages import shot
from executionrecords import append_batch, execute

ZONE = "America/New_York"  # not the installation's zone (Europe/Amsterdam): the browser's own
ISO = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


def finished_run(api: httpx.Client) -> str:
    """A quick run the analyst starts (and so a report.run and a report.finished record)."""
    response = api.post(
        "dossiers/armoede/runs",
        json={"template": "data_quality", "parameters": {"view": "households"}},
    )
    assert response.status_code == 202, response.text
    run_id = response.json()["run_id"]
    deadline = time.monotonic() + 180
    while api.get(f"dossiers/armoede/runs/{run_id}").json()["in_progress"]:
        assert time.monotonic() < deadline, f"run {run_id} did not finish"
        time.sleep(0.3)
    return run_id


def local(iso: str, zone: str = ZONE) -> str:
    """What the page must show for `iso` in `zone`: `1 Dec 2026, 01:11` in New York."""
    here = dt.datetime.fromisoformat(iso).astimezone(ZoneInfo(zone))
    return f"{here.day} {here:%b %Y, %H:%M}"


def assert_times_local(page: Page, zone: str = ZONE) -> int:
    """Every <time> of a moment reads as its datetime in `zone`; the page text has no ISO."""
    times = page.locator('time[data-when="moment"]')
    for i in range(times.count()):
        node = times.nth(i)
        assert node.inner_text() == local(node.get_attribute("datetime") or "", zone)
    text = page.locator("body").inner_text()
    assert not ISO.search(text), ISO.search(text)
    return times.count()


def test_the_trail_reads_as_sentences_filters_and_opens_the_run(
    hub: Hub, person: Callable[..., Page], client: Callable[[str], httpx.Client]
) -> None:
    run_id = finished_run(client(ANALYST))
    lead = person(LEAD, timezone_id=ZONE)

    lead.goto(f"{hub.service}dossiers/armoede/audit")
    chain = lead.locator("#chain")
    expect(chain).to_have_attribute("data-ok", "true")
    expect(chain).to_contain_text("records")
    expect(lead.locator("h1 + #chain")).to_be_visible()  # first, right under the title
    started = lead.locator(f"li.record[data-action='report.run']:has(a[href$='{run_id}'])")
    expect(started.locator(".sentence")).to_have_text(
        f"{ANALYST} (analyst) started run {run_id} of report data_quality with view=households."
    )
    finished = lead.locator(f"li.record[data-action='report.finished']:has(a[href$='{run_id}'])")
    expect(finished.locator(".sentence")).to_have_text(
        f"Run {run_id} of report data_quality succeeded and passed its output checks — started "
        f"by {ANALYST} (analyst)."
    )
    assert "{" not in lead.locator(".sentence").first.inner_text()  # words, not JSON
    assert assert_times_local(lead) >= 3
    shot(lead, "audit-01-trail-new-york")

    lead.select_option("#filter-person", ANALYST)
    lead.select_option("#filter-action", "report.run")
    lead.get_by_role("button", name="Show", exact=True).click()
    lead.wait_for_url("**/audit?*")
    assert parse_qs(urlsplit(lead.url).query) == {"person": [ANALYST], "action": ["report.run"]}
    records = lead.locator("li.record")
    expect(records.first).to_be_visible()
    assert {records.nth(i).get_attribute("data-actor") for i in range(records.count())} == {ANALYST}
    assert {records.nth(i).get_attribute("data-action") for i in range(records.count())} == {
        "report.run"
    }
    shot(lead, "audit-02-filtered")

    shared = person(LEAD, timezone_id=ZONE)  # the URL, shared: the same narrowed trail
    shared.goto(f"{hub.service}dossiers/armoede/audit?person={ANALYST}&action=run")
    expect(shared.locator("#filter-person")).to_have_value(ANALYST)
    assert shared.locator("li.record").count() >= 1
    actions = shared.locator("li.record").evaluate_all("(rows) => rows.map(r => r.dataset.action)")
    assert set(actions) <= {"report.run", "report.run.refused"}

    lead.locator(f"a.run-link[href$='{run_id}']").first.click()
    lead.wait_for_url(f"**/dossiers/armoede/runs/{run_id}")
    expect(lead.locator("#run-status")).to_be_visible()
    assert assert_times_local(lead) >= 2
    shot(lead, "audit-03-run-page-new-york")

    lead.goto(f"{hub.service}dossiers/armoede")
    assert assert_times_local(lead) >= 1
    shot(lead, "audit-04-dossier-new-york")


def test_a_filter_the_trail_cannot_answer_is_a_message(
    hub: Hub, person: Callable[..., Page], client: Callable[[str], httpx.Client]
) -> None:
    lead = person(LEAD)
    response = lead.goto(f"{hub.service}dossiers/armoede/audit?action=relase")
    assert response is not None and response.status == 422
    expect(lead.locator("#filter-error")).to_contain_text(
        "this audit trail has no action 'relase'; it has "
    )
    expect(lead.locator("#chain")).to_be_visible()
    expect(lead.locator("li.record").first).to_be_visible()  # the whole trail, still readable
    shot(lead, "audit-05-bad-filter")

    api = client(LEAD)
    answer = api.get("dossiers/armoede/audit", params={"person": "nobody"})
    assert answer.status_code == 422
    assert answer.json()["fields"] == {"person": "not in this trail"}
    narrowed = api.get("dossiers/armoede/audit", params={"person": LEAD}).json()
    assert narrowed["records"] and {r["actor"] for r in narrowed["records"]} == {LEAD}
    assert narrowed["filter"] == {"person": LEAD, "action": None}


def test_a_viewer_opens_a_released_run_from_the_trail_and_never_an_unreleased_one(
    hub: Hub, person: Callable[..., Page], client: Callable[[str], httpx.Client]
) -> None:
    released, unreleased = finished_run(client(ANALYST)), finished_run(client(ANALYST))
    answer = client(OTHER_LEAD).post(f"dossiers/armoede/runs/{released}/release", json={})
    assert answer.status_code == 200, answer.text
    viewer = person(VIEWER, timezone_id="Australia/Sydney")
    viewer.goto(f"{hub.service}dossiers/armoede/audit?action=release")
    sentence = viewer.locator(f"li.record[data-action='report.release']:has(a[href$='{released}'])")
    expect(sentence.locator(".sentence")).to_have_text(
        f"{OTHER_LEAD} (lead) released run {released} of report data_quality to viewers."
    )
    viewer.goto(f"{hub.service}dossiers/armoede/audit")
    assert unreleased not in viewer.locator("body").inner_text()
    assert_times_local(viewer, "Australia/Sydney")
    shot(viewer, "audit-06-viewer-sydney")
    viewer.locator(f"a.run-link[href$='{released}']").first.click()
    viewer.wait_for_url(f"**/dossiers/armoede/runs/{released}")
    expect(viewer.locator("#released")).to_be_visible()


def test_the_admin_page_shows_local_times(hub: Hub, person: Callable[..., Page]) -> None:
    admin = person(ADMIN, timezone_id=ZONE)
    admin.goto(f"{hub.service}admin")
    assert assert_times_local(admin) >= 1  # each dossier's last apply
    expect(admin.locator("time:not([data-when])").first).to_have_text(
        re.compile(r"^\d{1,2} \w{3} \d{4}$")
    )
    shot(admin, "audit-07-admin-new-york")


def test_executions_on_the_audit_page_and_my_activity(
    hub: Hub, person: Callable[..., Page]
) -> None:
    """Who ran what as people see it: the lead reads the audit page's Executions section
    (counts, rows newest first, the batch's one sentence), narrows it to one person, and
    finds their own, and only theirs, on My activity from the bar (what a viewer sees:
    tests/hub/test_execution_views.py; the Admin page's export form: test_service_api and,
    for axe, test_a11y). Batches appended as the service appends them, in a
    notebook of this test's own."""
    notebook = f"browser-{uuid.uuid4().hex[:8]}.ipynb"
    t0 = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=2)
    second = dt.timedelta(seconds=1)
    append_batch(
        hub.home,
        "armoede",
        [
            execute(ANALYST, t0, "import polars as pl", path=notebook, cell_id="b1"),
            execute(ANALYST, t0 + second, "households.head()", path=notebook, outcome="error"),
            execute(LEAD, t0 + 2 * second, "x = 1", path=notebook, cell_id="b1"),
        ],
    )
    axe = Findings()
    audit = f"{hub.service}dossiers/armoede/audit"
    lead = person(LEAD, timezone_id=ZONE)
    lead.goto(f"{audit}?notebook={notebook}#executions")
    section = lead.locator("#executions")
    expect(section.locator(f"#executions-people tr[data-person='{ANALYST}'] .count")).to_have_text(
        "2"
    )
    expect(section.locator(f"tr[data-notebook='{notebook}'] .count")).to_have_text("3")
    rows = section.locator("tr.execution")
    expect(rows).to_have_count(3)
    assert rows.evaluate_all("(rows) => rows.map(r => r.dataset.person)") == [
        LEAD,
        ANALYST,
        ANALYST,
    ]
    expect(rows.nth(1).locator(".first-line")).to_have_text("households.head()")
    expect(rows.nth(1).locator(".outcome")).to_have_text("error")
    batch = lead.locator(f"li.record[data-action='workspace.executions']:has-text('{notebook}')")
    expect(batch.locator(".sentence")).to_have_text(
        f"{ANALYST} ran 2 cells in {notebook}; {LEAD} ran 1 cell in {notebook}."
    )
    assert "households.head()" not in batch.inner_text()  # never the events on the trail
    assert assert_times_local(lead) >= 3
    axe.check(lead, "audit trail with executions (lead)")
    shot(lead, "executions-01-audit-page")

    lead.select_option("#filter-ran-by", ANALYST)
    lead.get_by_role("button", name="Show executions").click()
    lead.wait_for_url("**ran_by=*")
    expect(rows).to_have_count(2)
    assert set(rows.evaluate_all("(rows) => rows.map(r => r.dataset.person)")) == {ANALYST}

    lead.locator("#nav-activity").click()  # their own, not the analyst's of that notebook
    lead.wait_for_url("**/activity")
    expect(lead.locator("#nav-activity")).to_have_attribute("aria-current", "page")
    mine = lead.locator(f"tr.execution[data-path='{notebook}']")
    expect(mine).to_have_count(1)
    expect(mine.locator(".first-line")).to_have_text("x = 1")
    expect(lead.locator(f"tr.execution[data-person='{ANALYST}']")).to_have_count(0)
    assert assert_times_local(lead) >= 1
    axe.check(lead, "my activity (lead)")
    shot(lead, "executions-02-my-activity")
    axe.assert_clean()
