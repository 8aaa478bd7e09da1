"""Accessibility in headless Chromium against the real hub, checked by axe-core (WCAG 2.1 A/AA
and the landmark, heading and skip-link rules; tests/e2e_a11y.py): every dossierhub page as the
people who see it (viewer, analyst, lead, admin, a stranger), JupyterHub's login, token and
not-running pages, the Dossier panel in JupyterLab; and the keyboard: every link and button of
the dossier and run pages reachable by Tab, a release made with the keyboard alone.
Screenshots in test-artifacts/screenshots/a11y-*."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import nbformat
import pytest
import yaml
from playwright.sync_api import Browser, Page, expect

from e2e_a11y import Findings, contrast
from e2e_hub import ADMIN, ANALYST, LEAD, OTHER_LEAD, PASSWORD, STRANGER, VIEWER, Hub
from e2e_pages import shot
from executionrecords import append_batch, execute, kernel_call

ONE_NIGHT = {"mode": "ov", "start": "2025-10-11", "end": "2025-10-11"}  # hours under min_count
SLOW = "a11y_slow"  # a template that runs long enough to be seen in progress
CONTROLS = "a[href], button, summary, input:not([type=hidden]), select, textarea"


def started(api: httpx.Client, dossier: str, template: str, **parameters: object) -> str:
    response = api.post(
        f"dossiers/{dossier}/runs", json={"template": template, "parameters": parameters}
    )
    assert response.status_code == 202, response.text
    return response.json()["run_id"]


def finished(api: httpx.Client, dossier: str, run_id: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        detail = api.get(f"dossiers/{dossier}/runs/{run_id}").json()
        if not detail["in_progress"]:
            assert detail["provenance"]["status"] == "succeeded", detail["provenance"]["error"]
            return detail
        time.sleep(0.3)
    raise AssertionError(f"run {run_id} did not finish in {timeout} s")


@pytest.fixture(scope="module")
def slow_template(hub: Hub) -> Iterator[str]:
    """A template of mobiliteit and armoede that sleeps, so its run page is met while it runs."""
    path = hub.home.templates_dir / f"{SLOW}.ipynb"
    book = nbformat.v4.new_notebook()
    parameters = nbformat.v4.new_code_cell("seconds = 40")
    parameters.metadata["tags"] = ["parameters"]
    book.cells = [parameters, nbformat.v4.new_code_cell("import time\ntime.sleep(seconds)")]
    nbformat.write(book, path)
    originals = {}
    for dossier in ("mobiliteit", "armoede"):
        manifest_path = hub.home.dossiers_dir / f"{dossier}.yaml"
        originals[manifest_path] = manifest_path.read_text()
        manifest = yaml.safe_load(originals[manifest_path])
        manifest["templates"] = [*manifest["templates"], SLOW]
        manifest_path.write_text(yaml.safe_dump(manifest))
    yield SLOW
    for manifest_path, original in originals.items():
        manifest_path.write_text(original)
    path.unlink()


@pytest.fixture(scope="module")
def runs(hub: Hub, slow_template: str) -> dict[str, str]:
    """One run of each kind a page shows, started together (the machine runs them side by
    side): armoede's awaiting release by the other lead, mobiliteit's with failed checks."""
    lead, analyst = hub.service_api(LEAD), hub.service_api("h.deboer")
    try:
        made = {
            "awaiting": started(lead, "armoede", "data_quality", view="households"),
            "checks-failed": started(analyst, "mobiliteit", "mobility_report", **ONE_NIGHT),
        }
        finished(lead, "armoede", made["awaiting"])
        failed = finished(analyst, "mobiliteit", made["checks-failed"])
        assert failed["checks_failed"], "the one-night mobility report passed its checks"
    finally:
        lead.close()
        analyst.close()
    return made


def open_details(page: Page) -> None:
    """Open every folded section, so what it holds (the run forms, the columns) is checked."""
    page.evaluate("document.querySelectorAll('details').forEach(d => { d.open = true; })")


def test_service_pages_as_each_person(
    hub: Hub,
    person: Callable[[str], Page],
    client: Callable[[str], httpx.Client],
    runs: dict[str, str],
) -> None:
    axe = Findings()
    armoede, mobiliteit = f"{hub.service}dossiers/armoede", f"{hub.service}dossiers/mobiliteit"

    # a run in progress first: its page is met while it runs (it reloads when finished)
    slow = started(client("h.deboer"), "mobiliteit", SLOW)
    analyst = person("h.deboer")
    analyst.goto(f"{mobiliteit}/runs/{slow}")
    expect(analyst.locator("#run-status")).to_have_attribute("data-in-progress", "true")
    axe.check(analyst, "run in progress (analyst)")
    shot(analyst, "a11y-01-run-in-progress")

    lead = person(LEAD)
    axe.check(lead, "my dossiers (lead)")
    shot(lead, "a11y-02-index-lead")
    lead.goto(armoede)
    open_details(lead)
    axe.check(lead, "dossier, active (lead, forms open)")
    shot(lead, "a11y-03-dossier-lead")
    lead.goto(f"{armoede}/runs/{runs['awaiting']}")
    expect(lead.locator("#release-why-not")).to_be_visible()
    axe.check(lead, "run succeeded (its author)")
    # the Executions section with a row of each of its tables
    moment = dt.datetime.now(dt.UTC)
    ran = [execute(ANALYST, moment, "x = 1"), kernel_call(ANALYST, moment, "restart")]
    append_batch(hub.home, "armoede", ran)
    lead.goto(f"{armoede}/audit")
    expect(lead.locator("#kernel-calls tr.kernel-call").first).to_be_visible()
    axe.check(lead, "audit trail (lead)")
    shot(lead, "a11y-04-audit")

    second = person(OTHER_LEAD)
    second.goto(f"{armoede}/runs/{runs['awaiting']}")
    expect(second.locator("#release-button")).to_be_visible()
    axe.check(second, "run awaiting release (second lead, release form)")
    shot(second, "a11y-05-run-release-form")
    released = client(OTHER_LEAD).post(f"dossiers/armoede/runs/{runs['awaiting']}/release", json={})
    assert released.status_code == 200, released.text

    other = person("g.meijer")
    other.goto(f"{mobiliteit}/runs/{runs['checks-failed']}")
    expect(other.locator("#justification")).to_be_visible()
    axe.check(other, "run with failed checks (lead, justification form)")
    shot(other, "a11y-06-run-checks-failed")
    other.goto(mobiliteit)
    axe.check(other, "dossier with a failed-checks run (lead)")

    member = person(ANALYST)
    member.goto(armoede)
    open_details(member)
    axe.check(member, "dossier, active (analyst)")

    viewer = person(VIEWER)
    axe.check(viewer, "my dossiers (viewer)")
    viewer.goto(armoede)
    axe.check(viewer, "dossier (viewer)")
    viewer.goto(f"{armoede}/runs/{runs['awaiting']}")
    expect(viewer.locator("#released")).to_be_visible()
    axe.check(viewer, "run released (viewer)")
    shot(viewer, "a11y-07-run-released-viewer")

    expired = person("i.vos")
    expired.goto(f"{hub.service}dossiers/woonfraude-2025")
    expect(expired.locator("#runs-closed")).to_be_visible()
    axe.check(expired, "dossier, expired (lead)")
    shot(expired, "a11y-08-dossier-expired")

    admin = person(ADMIN)
    admin.goto(f"{hub.service}admin")
    axe.check(admin, "admin (admin)")
    shot(admin, "a11y-09-admin")

    stranger = person(STRANGER)
    axe.check(stranger, "my dossiers (stranger, none)")
    stranger.goto(armoede)
    expect(stranger.locator("#refusal")).to_be_visible()
    axe.check(stranger, "403 refusal (stranger)")
    shot(stranger, "a11y-10-refusal")
    stranger.goto(f"{hub.service}dossiers/no-such-dossier")
    axe.check(stranger, "unknown dossier (stranger)")
    shot(stranger, "a11y-11-unknown-dossier")
    axe.assert_clean()


def test_service_pages_in_the_dark_theme(
    hub: Hub, person: Callable[[str], Page], runs: dict[str, str]
) -> None:
    """The hub's theme switch (its moon button) turns the pages dark: they stay readable."""
    axe = Findings()
    lead = person("g.meijer")
    lead.evaluate("localStorage.setItem('jupyterhub-bs-theme', 'dark')")
    mobiliteit = f"{hub.service}dossiers/mobiliteit"
    for name, url in (
        ("my dossiers", hub.service),
        ("dossier", mobiliteit),
        ("run with failed checks", f"{mobiliteit}/runs/{runs['checks-failed']}"),
        ("audit trail", f"{mobiliteit}/audit"),
    ):
        lead.goto(url)
        expect(lead.locator("html[data-bs-theme='dark']")).to_have_count(1)
        open_details(lead)
        axe.check(lead, f"{name} (lead, dark theme)")
    shot(lead, "a11y-14-audit-dark")
    axe.assert_clean()


def test_report_pages(hub: Hub, browser: Browser, runs: dict[str, str]) -> None:
    """The report as a viewer reads it and the review a lead reads, opened as pages. Their CSP
    forbids every script; the browser here sets it aside (bypass_csp) so axe can run."""
    axe = Findings()
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    try:
        page = context.new_page()
        page.goto(hub.service)
        page.fill("#username_input", "g.meijer")
        page.fill("#password_input", PASSWORD)
        page.click("#login_submit")
        page.wait_for_url(f"{hub.service}**")
        run = f"{hub.service}dossiers/mobiliteit/runs/{runs['checks-failed']}"
        page.goto(f"{run}/report.html")
        expect(page.locator("#report-title")).to_be_visible()
        axe.check(page, "report as viewers read it")
        shot(page, "a11y-12-report")
        page.goto(f"{run}/review.html")
        expect(page.locator("#report-state")).to_contain_text("review")
        axe.check(page, "review: every output (lead)")
        shot(page, "a11y-13-review")
    finally:
        context.close()
    axe.assert_clean()


def start_workspace(hub: Hub) -> None:
    httpx.post(
        f"{hub.url}hub/api/users/dossier-armoede/server",
        headers={"Authorization": f"token {hub.token(LEAD)}"},
        timeout=120,
    )


def wait_pending(hub: Hub) -> None:
    api = hub.url + "hub/api/users/dossier-armoede"
    headers = {"Authorization": f"token {hub.token(ADMIN)}"}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        server = httpx.get(api, headers=headers).json().get("servers", {}).get("", {})
        if server.get("pending") == "spawn":
            return
        time.sleep(0.05)
    raise AssertionError("the workspace was never seen starting")


def test_jupyterhub_pages(hub: Hub, browser: Browser) -> None:
    axe = Findings()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.goto(f"{hub.url}hub/login")
        axe.check(page, "hub login")
        shot(page, "a11y-20-hub-login")
        page.fill("#username_input", LEAD)
        page.fill("#password_input", PASSWORD)
        page.click("#login_submit")
        page.wait_for_load_state()
        page.goto(f"{hub.url}hub/token")
        axe.check(page, "hub token page (lead)")
        shot(page, "a11y-21-hub-token")
        stop_workspace(hub)  # not running, whatever came before
        page.goto(f"{hub.url}user/dossier-armoede/lab")
        page.wait_for_load_state()
        axe.check(page, f"workspace not running ({page.url.removeprefix(hub.url)})")
        shot(page, "a11y-22-hub-not-running")
        # while it starts (a few seconds: a sandbox, then JupyterLab), its pending page; its
        # progress stream is held at "starting" so the page stays to be checked
        page.route(
            "**/server/progress*",
            lambda route: route.fulfill(
                status=200,
                headers={"Content-Type": "text/event-stream"},
                body='data: {"progress": 40, "message": "starting"}\n\n',
            ),
        )
        starting = threading.Thread(target=start_workspace, args=(hub,), daemon=True)
        starting.start()
        wait_pending(hub)
        page.goto(f"{hub.url}hub/spawn-pending/dossier-armoede")
        assert "/spawn-pending/" in page.url, f"the workspace started too fast: {page.url}"
        axe.check(page, "workspace starting (hub spawn-pending)")
        starting.join(timeout=120)
        shot(page, "a11y-23-hub-spawn-pending")
    finally:
        context.close()  # the workspace stays up for the panel's test (stopped after it)
    axe.assert_clean()


def stop_workspace(hub: Hub) -> None:
    """The other e2e tests expect armoede's workspace stopped, as they found it."""
    api = hub.api()
    try:
        api.stop_server("dossier-armoede")
    finally:
        api.close()


@pytest.fixture(scope="module", autouse=True)
def workspace_stopped_after(hub: Hub) -> Iterator[None]:
    """armoede's workspace stopped when this module is done, whichever of its tests ran: the
    hub pages' test leaves it running for the panel's (a stop and a start fewer)."""
    yield
    stop_workspace(hub)


def tab_order(page: Page) -> tuple[set[str], list[str]]:
    """The visible links, buttons and fields of the page, and those Tab reaches in turn."""
    wanted = page.evaluate(
        """(selector) => [...document.querySelectorAll(selector)]
            .map((e, i) => { e.dataset.a11yTab = String(i); return e; })
            .filter(e => !e.disabled && e.checkVisibility({visibilityProperty: true})
                         && e.getClientRects().length > 0)
            .map(e => e.dataset.a11yTab)""",
        CONTROLS,
    )
    page.evaluate("document.activeElement && document.activeElement.blur()")
    reached: list[str] = []
    for _ in range(len(wanted) + 40):  # the report frame and the page's end take a few more
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement?.dataset?.a11yTab ?? ''"))
    return set(wanted), reached


def describe(page: Page, marks: set[str]) -> list[str]:
    return [
        page.locator(f"[data-a11y-tab='{mark}']").evaluate("e => e.outerHTML.slice(0, 120)")
        for mark in sorted(marks, key=int)
    ]


def test_keyboard_reaches_every_control_and_releases(
    hub: Hub, person: Callable[[str], Page], runs: dict[str, str]
) -> None:
    lead = person("g.meijer")
    lead.goto(f"{hub.service}dossiers/mobiliteit")
    wanted, reached = tab_order(lead)
    assert len(wanted) > 10, "too few controls found: the page is not what this test expects"
    assert not wanted - set(reached), describe(lead, wanted - set(reached))
    # a folded run form opens from the keyboard, and its fields are then reached too
    form = lead.locator("details.template[data-template='mobility_report']")
    form.locator("summary").focus()
    lead.keyboard.press("Enter")
    expect(form).to_have_attribute("open", "")
    wanted, reached = tab_order(lead)
    assert not wanted - set(reached), describe(lead, wanted - set(reached))

    lead.goto(f"{hub.service}dossiers/mobiliteit/runs/{runs['checks-failed']}")
    wanted, reached = tab_order(lead)
    assert not wanted - set(reached), describe(lead, wanted - set(reached))
    # the release with its justification, by keyboard alone: from the top of the page Tab to
    # the field, type, Tab on to the button, Enter
    lead.reload()
    for _ in range(100):
        lead.keyboard.press("Tab")
        if lead.evaluate("document.activeElement.id") == "justification":
            break
    else:
        raise AssertionError("Tab never reached the justification field")
    lead.keyboard.type("One night's counts: published as sensor totals, no people.")
    for _ in range(10):
        lead.keyboard.press("Tab")
        if lead.evaluate("document.activeElement.id") == "release-button":
            break
    else:
        raise AssertionError("Tab never reached the Release button after the justification")
    shot(lead, "a11y-30-keyboard-release-focus")
    lead.keyboard.press("Enter")
    expect(lead.locator("#released")).to_have_text("released by g.meijer")
    shot(lead, "a11y-31-keyboard-released")


@pytest.fixture
def lab(hub: Hub, browser: Browser, slow_template: str) -> Iterator[Page]:
    """a.jansen (lead) in armoede's JupyterLab with the Dossier panel open, a run of theirs
    still running in it."""
    token = hub.token(LEAD)
    hub.ensure_running("dossier-armoede", token)  # as the hub pages' test left it, or anew
    hub.reset_lab_layouts("dossier-armoede", token)
    with hub.service_api(LEAD) as api:
        started(api, "armoede", slow_template, seconds=120)
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.goto(f"{hub.url}user/dossier-armoede/lab")
    page.fill("#username_input", LEAD)
    page.fill("#password_input", PASSWORD)
    page.click("#login_submit")
    page.wait_for_url(f"{hub.url}user/dossier-armoede/lab**", timeout=90_000)
    tab = page.locator(".jp-SideBar .lm-TabBar-tab[data-id='dossier-lab-panel']")
    expect(tab).to_be_visible(timeout=90_000)
    tab.click()
    panel = page.locator("#dossier-lab-panel")
    expect(panel.locator(".dh-title")).to_have_text("Poverty measures 2026", timeout=30_000)
    panel.locator(".dh-view[data-view='residents'] summary .dh-view-name").click()
    panel.locator(".dh-template[data-template='data_quality'] summary").click()
    expect(panel.locator(".dh-run-item[data-status='running']").first).to_be_visible(timeout=60_000)
    yield page
    context.close()
    stop_workspace(hub)


# each person's JupyterLab settings are kept in their browser (extensions/src/settings.ts)
THEMES = f"dossier-lab:settings:{LEAD}:@jupyterlab/apputils-extension:themes"


def test_dossier_panel_in_light_and_dark(hub: Hub, lab: Page) -> None:
    """axe on the panel's own DOM node only: JupyterLab's own DOM is not ours to fix."""
    axe = Findings()
    check_panel(lab, axe, "light")
    shot(lab, "a11y-40-panel-light")
    lab.evaluate('key => localStorage.setItem(key, \'{"theme": "JupyterLab Dark"}\')', THEMES)
    try:
        lab.reload()
        expect(lab.locator("body[data-jp-theme-light='false']")).to_have_count(1, timeout=90_000)
        tab = lab.locator(".jp-SideBar .lm-TabBar-tab[data-id='dossier-lab-panel']")
        expect(tab).to_be_visible(timeout=90_000)
        panel = lab.locator("#dossier-lab-panel")
        if not panel.locator(".dh-title").is_visible():  # the sidebar may come back closed
            tab.click()
        expect(panel.locator(".dh-title")).to_be_visible(timeout=30_000)
        panel.locator(".dh-view[data-view='residents'] summary .dh-view-name").click()
        check_panel(lab, axe, "dark")
        shot(lab, "a11y-41-panel-dark")
    finally:  # light again in this browser
        lab.evaluate("key => localStorage.removeItem(key)", THEMES)
    axe.assert_clean()


def check_panel(lab: Page, axe: Findings, theme: str) -> None:
    """axe on the panel from its top and again with its run list in view (axe leaves the
    contrast of what is scrolled out of sight undecided), and the contrast of its badges and
    buttons measured as the browser drew them."""
    panel = lab.locator("#dossier-lab-panel")
    axe.check(lab, f"Dossier panel ({theme} theme)", scope="#dossier-lab-panel")
    expect(panel.locator(".dh-run-item").first).to_be_visible()
    panel.evaluate("p => { p.scrollTop = p.scrollHeight; }")  # the run list into view
    axe.check(lab, f"Dossier panel, its runs ({theme} theme)", scope="#dossier-lab-panel")
    seen = {}
    for badge in panel.locator(".dh-status").all():
        seen[f"badge {badge.inner_text()}"] = contrast(badge)
    seen["Query button"] = contrast(panel.locator(".dh-insert").first)
    seen["Run button"] = contrast(panel.locator(".dh-run").first)
    assert any(name.startswith("badge running") for name in seen), seen
    low = {name: round(ratio, 2) for name, ratio in seen.items() if ratio < 4.5}
    assert not low, f"text under 4.5:1 in the {theme} theme: {low}"
