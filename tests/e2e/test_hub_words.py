"""JupyterHub's pages in dossierhub's words, in headless Chromium against the real hub: no
"Authorize access" page between a person and their dossier's workspace or the dossierhub pages
(the role decides), and an expired dossier's page says why no report can run instead of
offering a form that could only be refused."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import Page, Response, expect

from e2e_hub import Hub
from e2e_pages import shot

WORKSPACE_MS = 120_000


def watch_authorize(page: Page) -> list[Response]:
    """Every answer of JupyterHub's OAuth authorize endpoint this page receives: a redirect
    lets the person through, a 200 is the confirm page."""
    seen: list[Response] = []
    page.on("response", lambda r: seen.append(r) if "/oauth2/authorize" in r.url else None)
    return seen


def open_workspace(page: Page, hub: Hub, name: str) -> None:
    page.goto(hub.service)
    page.locator(".dossier[data-dossier='armoede'] .open-workspace").click()
    # a redirect through the authorize endpoint never lands there; its confirm page does
    page.wait_for_url(
        lambda url: "/user/dossier-armoede/lab" in url or "/oauth2/authorize" in url,
        timeout=WORKSPACE_MS,
    )
    assert "/user/dossier-armoede/lab" in page.url, f"stopped at {page.url}"
    expect(page.locator(".jp-SideBar").first).to_be_visible(timeout=60_000)  # the lab itself
    expect(page.locator("form[action=''] button:text('Authorize')")).to_have_count(0)
    assert "Authorize access" not in page.content()
    shot(page, name)


def test_no_authorize_page_for_the_workspace_first_and_after_a_restart(
    hub: Hub, person: Callable[[str], Page]
) -> None:
    lead = person("a.jansen")  # logged in through the service's OAuth: no confirm there either
    authorize = watch_authorize(lead)
    open_workspace(lead, hub, "h1-workspace-first-open")
    api = hub.api()
    try:
        api.stop_server("dossier-armoede")  # a cull, an expiry check or an apply does this too
    finally:
        api.close()
    open_workspace(lead, hub, "h1-workspace-after-restart")
    lead.goto(f"{hub.service}dossiers/armoede")
    expect(lead.locator("h1")).to_have_text("Poverty measures 2026")
    assert authorize, "the workspace was opened without JupyterHub's OAuth: nothing tested"
    assert [r.status for r in authorize if r.status == 200] == [], [r.url for r in authorize]


def test_an_expired_dossier_offers_no_report_form_and_says_why(
    hub: Hub, person: Callable[[str], Page]
) -> None:
    lead = person("i.vos")
    lead.goto(f"{hub.service}dossiers/woonfraude-2025")
    closed = lead.locator("#runs-closed")
    expect(closed).to_contain_text("expired on 2025-12-31")
    expect(closed).to_contain_text("ask an admin to extend it")  # i.vos is its only lead
    analyst = person("j.peters")
    analyst.goto(f"{hub.service}dossiers/woonfraude-2025")
    expect(analyst.locator("#runs-closed")).to_contain_text("ask i.vos to extend it")
    expect(analyst.locator("form.run-form")).to_have_count(0)
    expect(lead.locator("form.run-form")).to_have_count(0)
    shot(lead, "h1-expired-dossier-no-form")
