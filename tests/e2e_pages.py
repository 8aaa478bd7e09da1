"""Helpers of the browser tests: a logged-in page per person, waiting for a run, screenshots
(to test-artifacts/screenshots/, to look at)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, StorageState

from e2e_hub import PASSWORD, Hub

SHOTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "screenshots"
RUN_TIMEOUT_MS = 180_000


@pytest.fixture(scope="session")
def signed_in() -> dict[tuple[str, str], StorageState]:
    """Each person's cookies as their first login of the session left them, by hub and name:
    a later `person` starts from them instead of logging in again (a login through the hub's
    form and OAuth costs about a second; the browser tests make some sixty)."""
    return {}


@pytest.fixture
def person(
    hub: Hub, browser: Browser, signed_in: dict[tuple[str, str], StorageState]
) -> Iterator[Callable[..., Page]]:
    """A fresh browser context per person (their own cookies), logged in to the hub: with the
    cookies of their first login in this session, or through the login form when there are
    none or the hub no longer takes them (a logout, a restarted hub)."""
    contexts = []
    requested: list[str] = []

    def log_in(name: str, timezone_id: str | None = None) -> Page:
        """`timezone_id` (an IANA zone): the browser's own zone, as the person's machine has."""
        zone = {"timezone_id": timezone_id} if timezone_id else {}
        key = (hub.url, name)
        context = browser.new_context(
            viewport={"width": 1280, "height": 900}, storage_state=signed_in.get(key), **zone
        )
        contexts.append(context)
        page = context.new_page()
        page.on("request", lambda request: requested.append(request.url))
        page.goto(hub.service)  # -> hub login -> OAuth -> back to the service
        if not page.url.startswith(hub.service):  # the hub's login form: no cookies taken
            page.fill("#username_input", name)
            page.fill("#password_input", PASSWORD)
            page.click("#login_submit")
            page.wait_for_url(f"{hub.service}**")
            signed_in[key] = context.storage_state()  # as the login left them, nothing later
        return page

    yield log_in
    for context in contexts:
        context.close()
    # no CDN, no outside call: every page, script, style and image came from the hub
    outside = [u for u in requested if not u.startswith((hub.url, "data:", "about:"))]
    assert not outside, outside


def expect_succeeded(page: Page) -> None:
    """Wait for the run page to show a final status (it polls, then reloads); succeeded."""
    page.wait_for_selector("#status:text-matches('succeeded|failed')", timeout=RUN_TIMEOUT_MS)
    error = page.locator("#run-error")
    # "succeeded" or "succeeded · checks failed": the run's own status is on its box
    assert page.locator("#run-status").get_attribute("data-status") == "succeeded", (
        error.inner_text() if error.count() else "no reason shown"
    )


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
