"""Next steps in headless Chromium as each person meets them: a lead who did not start a run
finds it in their inbox ("Awaiting your release (n)") on the home and dossier pages, its author
is told whom it waits for, a viewer sees no inbox; the Release button says whom a release
shows the report to; a run whose checks failed is "succeeded · checks failed" in the run table
and on the run page, in words, not colour alone. Screenshots in test-artifacts/screenshots/."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import httpx
from playwright.sync_api import Locator, Page, expect

from e2e_hub import LEAD, OTHER_LEAD, VIEWER, Hub
from e2e_pages import shot

ONE_NIGHT = {"mode": "ov", "start": "2025-10-11", "end": "2025-10-11"}  # hours under min_count


def wait_for_run(api: httpx.Client, dossier: str, run_id: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        detail = api.get(f"dossiers/{dossier}/runs/{run_id}").json()
        if not detail["in_progress"]:
            return detail
        time.sleep(0.3)
    raise AssertionError(f"run {run_id} did not finish in {timeout} s")


def start(api: httpx.Client, dossier: str, template: str, **parameters: object) -> str:
    response = api.post(
        f"dossiers/{dossier}/runs", json={"template": template, "parameters": parameters}
    )
    assert response.status_code == 202, response.text
    run_id = response.json()["run_id"]
    detail = wait_for_run(api, dossier, run_id)
    assert detail["provenance"]["status"] == "succeeded", detail["provenance"]["error"]
    return run_id


def inbox(api: httpx.Client, dossier: str) -> int:
    (mine,) = [d for d in api.get("dossiers").json() if d["id"] == dossier]
    return mine["awaiting_release"]


def test_the_second_lead_is_asked_the_author_told_the_viewer_spared(
    hub: Hub, person: Callable[[str], Page], client: Callable[[str], httpx.Client]
) -> None:
    run_id = start(client(LEAD), "armoede", "data_quality", view="households")
    row = next(r for r in client(LEAD).get("dossiers/armoede/runs").json() if r["run_id"] == run_id)
    assert (row["awaiting_your_release"], row["waiting_for_release_by"]) == (False, [OTHER_LEAD])
    assert row["next_step"] == f"Waiting for release by {OTHER_LEAD}"
    theirs = client(OTHER_LEAD).get(f"dossiers/armoede/runs/{run_id}").json()
    assert theirs["awaiting_your_release"] and theirs["next_step"] == "Awaiting your release"
    assert theirs["release"]["shows_to"] == [VIEWER]
    count = inbox(client(OTHER_LEAD), "armoede")
    assert count >= 1  # this run, and any other this session left for e.mulder

    second = person(OTHER_LEAD)
    card = second.locator(".dossier[data-dossier='armoede']")
    expect(card.locator(".awaiting-release")).to_have_text(f"Awaiting your release ({count})")
    shot(second, "next-01-home-second-lead")
    card.locator(".awaiting-release a").click()
    expect(second.locator("h1")).to_have_text("Poverty measures 2026")
    expect(second.locator(".awaiting-release")).to_have_text(f"Awaiting your release ({count})")
    line = second.locator(f"tr.run[data-run='{run_id}']")
    expect(line.locator(".next-step")).to_have_text("Awaiting your release")
    line.locator("a").first.click()
    expect(second.locator("#next-step")).to_have_text("Awaiting your release.")
    expect(second.locator("#release-audience")).to_have_text(
        f"Releasing shows this report to: {VIEWER} (viewers)"
    )
    expect(second.get_by_role("button", name="Release")).to_be_visible()
    shot(second, "next-02-run-second-lead")

    author = person(LEAD)
    mine = inbox(client(LEAD), "armoede")  # runs others started, never this one
    badge = author.locator(".dossier[data-dossier='armoede'] .awaiting-release")
    if mine:
        expect(badge).to_have_text(f"Awaiting your release ({mine})")
    else:
        expect(badge).to_have_count(0)
    shot(author, "next-03-home-author")
    author.goto(f"{hub.service}dossiers/armoede/runs/{run_id}")
    expect(author.locator("#next-step")).to_have_text(f"Waiting for release by {OTHER_LEAD}.")
    expect(author.locator("#release-button")).to_have_count(0)
    shot(author, "next-04-run-author")

    viewer = person(VIEWER)
    expect(viewer.locator(".dossier").first).to_be_visible()
    expect(viewer.locator(".awaiting-release")).to_have_count(0)
    assert inbox(client(VIEWER), "armoede") == 0
    shot(viewer, "next-05-home-viewer")


def test_a_run_whose_checks_failed_is_marked_on_every_page(
    hub: Hub, person: Callable[[str], Page], client: Callable[[str], httpx.Client]
) -> None:
    run_id = start(client("h.deboer"), "mobiliteit", "mobility_report", **ONE_NIGHT)
    detail = client("h.deboer").get(f"dossiers/mobiliteit/runs/{run_id}").json()
    assert detail["succeeded"] and detail["checks_failed"]
    rows = client("g.meijer").get("dossiers/mobiliteit/runs").json()
    assert next(r for r in rows if r["run_id"] == run_id)["checks_failed"]

    lead = person("g.meijer")
    lead.goto(f"{hub.service}dossiers/mobiliteit")
    badge = lead.locator(f"tr.run[data-run='{run_id}'] [data-checks-failed]")
    expect(badge).to_have_text(re.compile(r"succeeded · checks failed$"))
    assert contrast(badge) >= 4.5  # WCAG AA for its text
    passed = lead.locator("tr.run[data-status='succeeded']:not(:has([data-checks-failed])) .badge")
    if passed.count():  # a run whose checks passed looks different, not only in colour
        assert passed.first.inner_text() == "succeeded"
    shot(lead, "next-06-dossier-checks-failed")
    lead.locator(f"tr.run[data-run='{run_id}'] a").first.click()
    expect(lead.locator("#status")).to_have_text(re.compile(r"succeeded · checks failed$"))
    expect(lead.locator("#justification")).to_be_visible()
    shot(lead, "next-07-run-checks-failed")


def contrast(badge: Locator) -> float:
    """The WCAG contrast ratio of the element's text on its background, as the browser
    computed them."""
    colours = badge.evaluate(
        "e => { const s = getComputedStyle(e); return [s.color, s.backgroundColor]; }"
    )

    def luminance(css: str) -> float:
        r, g, b = (int(v) / 255 for v in re.findall(r"\d+", css)[:3])
        lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    light, dark = sorted((luminance(c) for c in colours), reverse=True)
    return (light + 0.05) / (dark + 0.05)
