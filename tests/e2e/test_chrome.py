"""One home, one navigation bar, one admin page, in headless Chromium against the real hub: a
person logging in lands on their dossiers (also from / and the hub's /hub/home); JupyterHub's
pages and the dossierhub pages carry the same bar, with JupyterHub's Token, Services and Hub
users for the admin only; the first Tab reaches "Skip to content" and Enter moves into
<main>; the admin page shows a running workspace with its last activity, a pending release
and a problem with its fix, and an admin who is no member sees no run. Screenshots in
test-artifacts/screenshots/."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
import yaml
from playwright.sync_api import Browser, Page, expect

from e2e_hub import ADMIN, LEAD, PASSWORD, Hub
from e2e_pages import shot

ARMOEDE = "dossier-armoede"


def log_in_at(browser: Browser, hub: Hub, url: str, name: str) -> Page:
    """A fresh browser that asks for `url`, is sent to the hub's login, and logs in there."""
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.goto(url)
    page.wait_for_url("**/hub/login**")
    # the login page has the chrome too: one <main>, one h1, the skip link the first thing
    # to focus (JupyterHub puts the cursor in the user name field, as a login page should)
    expect(page.locator("main#main h1")).to_have_count(1)
    first = "() => document.querySelector('a[href], button, input, select, textarea').id"
    assert page.evaluate(first) == "skip-link"
    assert page.evaluate("() => document.activeElement.id") == "username_input"
    shot(page, "chrome-00-login")
    page.fill("#username_input", name)
    page.fill("#password_input", PASSWORD)
    page.click("#login_submit")
    return page


def test_a_member_logging_in_lands_on_the_dossiers_page(hub: Hub, browser: Browser) -> None:
    for start in (f"{hub.url}hub/login", hub.url):  # the login page itself, and / (a bookmark)
        lead = log_in_at(browser, hub, start, LEAD)
        lead.wait_for_url(hub.service)
        expect(lead.locator("h1")).to_have_text("Your dossiers")
        expect(lead.locator(".dossier[data-dossier='armoede']")).to_be_visible()
        lead.context.close()
    lead = log_in_at(browser, hub, hub.service, LEAD)
    lead.wait_for_url(hub.service)
    shot(lead, "chrome-01-landed-lead")
    lead.goto(f"{hub.url}hub/home")  # JupyterHub's home is no second "Your dossiers"
    lead.wait_for_url(hub.service)
    expect(lead.locator(".dossier[data-dossier='armoede'] .open-workspace")).to_be_visible()
    lead.context.close()


def pages_of(hub: Hub, admin: bool) -> list[tuple[str, str | None]]:
    """JupyterHub's pages and the service's a person reaches, and the bar's link marked current."""
    pages = [
        (hub.service, "dossiers"),
        (f"{hub.service}dossiers/armoede", None),
        (f"{hub.url}hub/token", "token" if admin else None),  # the link is the admin's
    ]
    if admin:
        pages += [(f"{hub.service}admin", "admin"), (f"{hub.url}hub/admin", "hub-users")]
    return pages


@pytest.mark.parametrize("name", [LEAD, ADMIN])
def test_one_bar_on_every_page_hub_tools_for_the_admin_only(
    hub: Hub, person: Callable[[str], Page], name: str
) -> None:
    admin = name == ADMIN
    page = person(name)
    for number, (url, current) in enumerate(pages_of(hub, admin)):
        page.goto(url)
        nav = page.locator("nav[aria-label='dossierhub']")
        expect(nav).to_have_count(1)
        expect(nav.locator("#nav-brand")).to_have_attribute("href", "/services/dossierhub/")
        expect(nav.locator("#nav-dossiers")).to_have_text("Dossiers")
        expect(nav.locator("#nav-person")).to_have_text(name)
        expect(nav.locator("#logout")).to_be_visible()
        for tool in ("#nav-admin", "#nav-token", "#nav-services", "#nav-hub-users"):
            expect(nav.locator(tool)).to_have_count(1 if admin else 0)
        expect(nav.get_by_role("link", name="Home", exact=True)).to_have_count(0)
        marked = nav.locator("[aria-current='page']")
        if current is None:
            expect(marked).to_have_count(0)
        else:
            expect(marked).to_have_attribute("id", f"nav-{current}")
        # the page chrome: one main landmark, one h1, a title
        expect(page.locator("main#main")).to_have_count(1)
        expect(page.locator("main#main h1")).to_have_count(1)
        expect(page.locator("h1")).to_have_count(1)
        assert page.title().endswith("dossierhub"), page.title()
        if current == "hub-users":  # JupyterHub's own admin app still works inside the chrome
            expect(page.locator("#react-admin-hook")).to_contain_text(LEAD)
        shot(page, f"chrome-02-{'admin' if admin else 'lead'}-{number}")
    # a mistyped address of the service is a page in the same chrome, not a bare 404
    answer = page.goto(f"{hub.service}dossiers/armoede/no-such-page")
    assert answer is not None and answer.status == 404
    expect(page.locator("main#main h1")).to_have_text("No such page")
    expect(page.locator("nav[aria-label='dossierhub'] #nav-person")).to_have_text(name)
    if admin:  # the admin's home leads on; JupyterHub's Services menu opens by keyboard too
        page.goto(hub.service)
        expect(page.locator("#admin-pointer a")).to_have_attribute(
            "href", "/services/dossierhub/admin"
        )
        page.locator("#nav-services").focus()
        page.keyboard.press("Enter")
        expect(page.locator(".dropdown-menu a", has_text="dossierhub")).to_be_visible()
        shot(page, "chrome-03-admin-services-menu")


@pytest.mark.parametrize("where", ["service", "hub"])
def test_the_first_tab_is_skip_to_content_and_the_bar_works_by_keyboard(
    hub: Hub, person: Callable[[str], Page], where: str
) -> None:
    page = person(LEAD)
    page.goto(hub.service if where == "service" else f"{hub.url}hub/token")
    focused = "() => document.activeElement.id"
    page.keyboard.press("Tab")
    assert page.evaluate(focused) == "skip-link"
    expect(page.locator("#skip-link")).to_be_visible()  # shown when focused
    expect(page.locator("#skip-link")).to_have_text("Skip to content")
    shot(page, f"chrome-04-skip-link-{where}")
    page.keyboard.press("Enter")
    assert page.evaluate(focused) == "main"
    # from the top: skip link, brand, Dossiers; Enter follows it
    page.locator("#skip-link").focus()
    page.keyboard.press("Tab")
    assert page.evaluate(focused) == "nav-brand"
    page.keyboard.press("Tab")
    assert page.evaluate(focused) == "nav-dossiers"
    page.keyboard.press("Enter")
    page.wait_for_url(hub.service)
    expect(page.locator("h1")).to_have_text("Your dossiers")


def wait_for_run(api: httpx.Client, run_id: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        detail = api.get(f"dossiers/armoede/runs/{run_id}").json()
        if not detail["in_progress"]:
            return detail
        time.sleep(0.3)
    raise AssertionError(f"run {run_id} did not finish in {timeout} s")


@pytest.fixture
def unapplied(hub: Hub) -> Iterator[str]:
    """A manifest written but not applied (a copy of armoede's under another id); removed
    again before any other test's apply could provision it."""
    data = hub.manifest("armoede")
    data["id"] = "armoede-next"
    path = hub.home.dossiers_dir / "armoede-next.yaml"
    path.write_text(yaml.safe_dump(data))
    yield "armoede-next"
    path.unlink()


def test_admin_page_shows_workspace_runs_and_problems_with_their_fix(
    hub: Hub,
    person: Callable[[str], Page],
    client: Callable[[str], httpx.Client],
    unapplied: str,
) -> None:
    started = hub.start(ARMOEDE, hub.token(LEAD))
    assert started.status_code in (201, 202, 400), started.text  # 400: running already
    api = hub.api()
    try:
        assert api.server_running(ARMOEDE)
    finally:
        api.close()
    response = client(LEAD).post(
        "dossiers/armoede/runs",
        json={"template": "data_quality", "parameters": {"view": "households"}},
    )
    assert response.status_code == 202, response.text
    run_id = response.json()["run_id"]
    assert wait_for_run(client(LEAD), run_id)["succeeded"]
    pending = sum(
        r["succeeded"] and not r["released"]
        for r in client(LEAD).get("dossiers/armoede/runs").json()
    )
    assert pending >= 1  # this run waits for e.mulder

    admin = person(ADMIN)
    admin.locator("#nav-admin").click()
    expect(admin.locator("h1")).to_have_text("All dossiers")
    armoede = admin.locator("tr.admin-dossier[data-dossier='armoede']")
    expect(armoede.locator(".workspace-state")).to_have_text("running")
    # a local time by the pages' one date rule, e.g. "last active 1 Dec 2026, 18:35"
    expect(armoede.locator(".last-activity")).to_have_text(
        re.compile(r"last active \d+ \w{3} 20\d\d, \d\d:\d\d")
    )
    assert armoede.locator(".last-activity time").get_attribute("datetime")
    expect(armoede.locator(".pending-release")).to_have_attribute("data-count", str(pending))
    expect(armoede.locator(".pending-release")).to_have_text(f"{pending} awaiting release")
    expect(armoede.locator(".runs-total")).not_to_have_text("0")

    expired = admin.locator("tr.admin-dossier[data-dossier='woonfraude-2025']")
    expect(expired.locator(".workspace-state")).to_have_text("expired")
    expect(expired.locator(".problem .fix").first).to_contain_text("extend `expires`")
    waiting = admin.locator(f"tr.admin-dossier[data-dossier='{unapplied}']")
    expect(waiting.locator(".workspace-state")).to_have_text("not applied")
    expect(waiting.locator(".problem .fix")).to_have_text(
        f"Fix: run `dossierhub apply {unapplied}`."
    )
    shot(admin, "chrome-05-admin-page")

    # counts and states only: no run, template or report of a dossier the admin is not in
    html = admin.content()
    assert run_id not in html and "data_quality" not in html
    expect(armoede.locator(".members-only")).to_have_text("pages and audit trail: members only")
    expect(armoede.locator("a")).to_have_count(0)
    rows = {r["id"]: r for r in client(ADMIN).get("admin/dossiers").json()}
    assert rows["armoede"]["runs"]["pending_release"] == pending
    assert run_id not in str(rows)
    for refused in ("dossiers/armoede", "dossiers/armoede/runs", "dossiers/armoede/audit"):
        assert client(ADMIN).get(refused).status_code == 403, refused
    admin.goto(f"{hub.service}dossiers/armoede/runs/{run_id}")
    expect(admin.locator("h1")).not_to_have_text("Poverty measures 2026")
    assert run_id not in admin.locator("main").inner_text()


def test_the_bar_folds_on_a_narrow_screen_and_opens_by_keyboard(
    hub: Hub, person: Callable[[str], Page]
) -> None:
    page = person(ADMIN)
    page.set_viewport_size({"width": 400, "height": 800})
    page.goto(f"{hub.url}hub/token")
    expect(page.locator("#nav-dossiers")).not_to_be_visible()
    # the fold's button has no id of its own: it is named by what it opens
    focused = (
        "() => document.activeElement.getAttribute('aria-controls') || document.activeElement.id"
    )
    for expected in ("skip-link", "nav-brand", "thenavbar"):
        page.keyboard.press("Tab")
        assert page.evaluate(focused) == expected
    page.keyboard.press("Enter")
    expect(page.locator("#thenavbar")).to_have_class(re.compile(r"\bshow\b"))  # unfolded
    expect(page.locator("#nav-admin")).to_be_visible()
    shot(page, "chrome-06-narrow-bar-open")
    page.keyboard.press("Tab")
    assert page.evaluate(focused) == "nav-dossiers"
    page.keyboard.press("Tab")
    assert page.evaluate(focused) == "nav-activity"
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{hub.service}admin")
    expect(page.locator("h1")).to_have_text("All dossiers")
