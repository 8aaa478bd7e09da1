"""JupyterHub's own pages in dossierhub's words, in headless Chromium against the real hub, as
each person meets them: an expired dossier's workspace URL says when it expired and whom to
ask (never "403 : error" or "Failed to start server"), a start that fails says why, a stopped
workspace says how to start it, and a viewer or a stranger on a workspace URL is told where
to go. Screenshots in test-artifacts/screenshots/."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from playwright.sync_api import Page, expect

from e2e_hub import LEAD, STRANGER, VIEWER, Hub
from e2e_pages import shot

EXPIRED = "woonfraude-2025"  # the demo's expired dossier: lead i.vos, analyst j.peters
GENERIC = ("403 : error", "Failed to start", "Spawn failed", "Server not running", "moons")


def no_generic_words(page: Page) -> None:
    text = page.locator("body").inner_text()
    assert not [g for g in GENERIC if g in text], text


def expect_expired(page: Page, name: str) -> None:
    words = page.locator(".container").filter(has_text="is closed")
    expect(words).to_contain_text("expired on 31 Dec 2025")
    expect(words).to_contain_text("ask i.vos to extend it")
    expect(page.locator(".back-to-dossier")).to_have_attribute(
        "href", f"/services/dossierhub/dossiers/{EXPIRED}"
    )
    expect(page.locator("#start")).to_have_count(0)  # nothing offered that can only fail
    no_generic_words(page)
    shot(page, name)


def test_an_expired_dossiers_workspace_says_when_and_whom_to_ask(
    hub: Hub, person: Callable[[str], Page]
) -> None:
    analyst = person("j.peters")
    analyst.goto(f"{hub.url}user/dossier-{EXPIRED}/")  # a bookmark: not running, never started
    expect_expired(analyst, "p4-expired-workspace-url")
    answer = analyst.goto(f"{hub.url}hub/spawn/dossier-{EXPIRED}")  # the hub's own start URL
    assert answer is not None and answer.status == 403
    expect_expired(analyst, "p4-expired-spawn-url")
    analyst.goto(f"{hub.url}user/dossier-{EXPIRED}/lab")  # now after a refused start
    expect_expired(analyst, "p4-expired-after-refused-start")
    analyst.locator(".back-to-dossier").click()
    expect(analyst.locator("#runs-closed")).to_contain_text("expired on 2025-12-31")


def test_a_lead_of_an_expired_dossier_is_told_to_ask_an_admin(
    hub: Hub, person: Callable[[str], Page]
) -> None:
    lead = person("i.vos")
    lead.goto(f"{hub.url}hub/spawn/dossier-{EXPIRED}")
    expect(lead.locator(".dossierhub-todo")).to_have_text(
        "To use it again, ask an admin (z.beheer) to extend it."
    )
    no_generic_words(lead)


@contextmanager
def without_data(hub: Hub, dossier: str) -> Iterator[None]:
    """The dossier's catalog link moved away for a while, as before its first apply."""
    catalog = hub.home.extract_catalog(dossier)
    aside = catalog.with_name("catalog.duckdb.aside")
    catalog.rename(aside)
    try:
        yield
    finally:
        aside.rename(catalog)


def test_a_failed_start_says_why_and_what_to_do(hub: Hub, person: Callable[[str], Page]) -> None:
    lead = person("f.smit")
    with without_data(hub, "mobiliteit"):
        lead.goto(f"{hub.url}hub/spawn/dossier-mobiliteit")
        expect(lead.locator("h1")).to_have_text(
            "The workspace of Mobility and liveability 2026 has no data yet"
        )
        expect(lead.locator(".dossierhub-todo")).to_contain_text(
            "Ask an admin (z.beheer) to run dossierhub apply"
        )
        no_generic_words(lead)
        shot(lead, "p4-failed-start-no-data")
        lead.goto(f"{hub.url}user/dossier-mobiliteit/lab")  # the failed start, seen again
        expect(lead.locator("h1")).to_have_text(
            "The workspace of Mobility and liveability 2026 has no data yet"
        )
        no_generic_words(lead)


def test_a_stopped_workspace_says_how_to_start_it(hub: Hub, person: Callable[[str], Page]) -> None:
    token = hub.token(LEAD)
    hub.ensure_running("dossier-armoede", token)
    api = hub.api()
    try:
        api.stop_server("dossier-armoede", wait=120)  # as the culler or an apply does
    finally:
        api.close()
    lead = person(LEAD)
    lead.goto(f"{hub.url}user/dossier-armoede/lab")  # the tab left open, reloaded
    expect(lead.locator("h1")).to_have_text("The workspace of Poverty measures 2026 is stopped")
    expect(lead.locator(".dossierhub-todo")).to_contain_text("Start it to continue")
    no_generic_words(lead)
    shot(lead, "p4-stopped-workspace")
    lead.locator("#start").click()
    starting = lead.locator("#dossierhub-starting")  # the start page, if the start is slow
    lead.wait_for_url(
        lambda url: "/user/dossier-armoede/lab" in url or "/spawn-pending/" in url,
        timeout=120_000,
    )
    if "/spawn-pending/" in lead.url:
        expect(starting).to_contain_text("Starting the workspace of Poverty measures 2026")
        shot(lead, "p4-workspace-starting")
    lead.wait_for_url("**/user/dossier-armoede/lab**", timeout=120_000)
    expect(lead.locator(".jp-SideBar").first).to_be_visible(timeout=60_000)


def test_a_viewer_is_sent_to_the_reports_a_stranger_told_nothing(
    hub: Hub, person: Callable[[str], Page]
) -> None:
    hub.ensure_running("dossier-armoede", hub.token(LEAD))
    viewer = person(VIEWER)
    # a running workspace (armoede: its OAuth asks the hub, which says no) and a stopped one
    for dossier, title in (("armoede", "Poverty measures 2026"), ("mobiliteit", "Mobility")):
        viewer.goto(f"{hub.url}user/dossier-{dossier}/lab")
        expect(viewer.locator(".dossierhub-about:visible")).to_contain_text(
            f"You are a viewer of {title}"
        )
        no_generic_words(viewer)
        shot(viewer, f"p4-viewer-on-workspace-url-{dossier}")
    viewer.locator(".dossierhub-about:visible .back-to-dossier").click()
    expect(viewer.locator("h1")).to_have_text("Mobility and liveability 2026")
    stranger = person(STRANGER)
    for dossier in ("armoede", "does-not-exist"):  # the same answer either way
        stranger.goto(f"{hub.url}hub/spawn/dossier-{dossier}")
        expect(stranger.locator("#not-a-member")).to_have_text(
            f"You are not a member of a dossier '{dossier}'. If you should be, ask its lead "
            "or an admin to add you to its manifest."
        )
        assert "Poverty" not in stranger.locator("body").inner_text()
        no_generic_words(stranger)
    shot(stranger, "p4-stranger-on-spawn-url")
