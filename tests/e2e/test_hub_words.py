"""JupyterHub's pages in dossierhub's words, in headless Chromium against the real hub: no
"Authorize access" page between a person and their dossier's workspace or the dossierhub pages
(the role decides), and an expired dossier's page says why no report can run instead of
offering a form that could only be refused; a workspace stops promptly with a busy kernel."""

from __future__ import annotations

import contextlib
import json
import pwd
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from playwright.sync_api import Page, Response, expect

from dossierhub.isolation.unixusers import workspace_name

from e2e_hub import Hub
from e2e_pages import shot
from kernelclient import execute

ARMOEDE = "dossier-armoede"

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


def busy_kernel(hub: Hub, token: str) -> threading.Thread:
    """A kernel of the workspace busy in a long cell (as a person's query would be), and the
    thread waiting for its answer, which ends when the workspace does."""

    def run() -> None:
        with contextlib.suppress(Exception):  # the workspace stops under it
            execute(hub.url, ARMOEDE, token, "import time\ntime.sleep(600)", timeout=700)

    waiting = threading.Thread(target=run, daemon=True)
    waiting.start()
    wait_busy(hub, token)
    return waiting


def wait_busy(hub: Hub, token: str) -> None:
    headers = {"Authorization": f"token {token}"}
    deadline = time.monotonic() + 120  # a kernel starts slowly on a busy machine
    while time.monotonic() < deadline:
        kernels = httpx.get(f"{hub.url}user/{ARMOEDE}/api/kernels", headers=headers).json()
        if any(k["execution_state"] == "busy" for k in kernels):
            return
        time.sleep(0.2)
    raise AssertionError("no kernel of the workspace became busy")


def test_a_workspace_with_a_busy_kernel_stops_within_seconds(hub: Hub) -> None:
    token = hub.token("a.jansen")
    hub.ensure_running(ARMOEDE, token)
    waiting = busy_kernel(hub, token)
    took = stop_workspace(hub)
    assert not api_running(hub), "the workspace did not stop"
    assert took < 10, f"stopping took {took:.1f} s"
    assert workspace_processes(hub) == [], "processes of the workspace outlived it"
    waiting.join(timeout=10)


def stop_workspace(hub: Hub) -> float:
    """Stop armoede's workspace as the culler, expiry and apply do; the seconds it took."""
    api = hub.api()
    try:
        began = time.monotonic()
        api.stop_server(ARMOEDE, wait=120)
        return time.monotonic() - began
    finally:
        api.close()


def api_running(hub: Hub) -> bool:
    api = hub.api()
    try:
        return api.server_running(ARMOEDE)
    finally:
        api.close()


def workspace_processes(hub: Hub) -> list[Path]:
    identity = pwd.getpwnam(workspace_name(hub.home, "armoede")).pw_uid
    return [p for p in Path("/proc").glob("[0-9]*") if owner(p) == identity]


def owner(process: Path) -> int | None:
    try:
        return process.stat().st_uid
    except OSError:
        return None  # ended meanwhile


def test_a_workspace_open_in_the_browser_with_a_kernel_stops_within_seconds(
    hub: Hub, person: Callable[[str], Page]
) -> None:
    lead = person("a.jansen")
    open_workspace(lead, hub, "h1-workspace-before-stop")
    notebook = hub.home.workspaces_dir / "armoede" / "stop.ipynb"
    spec = {"name": "dossier", "display_name": "Dossier", "language": "python"}
    content = {"cells": [], "metadata": {"kernelspec": spec}, "nbformat": 4, "nbformat_minor": 5}
    notebook.write_text(json.dumps(content))
    ident = workspace_name(hub.home, "armoede")
    shutil.chown(notebook, ident, ident)
    lead.goto(f"{hub.url}user/{ARMOEDE}/lab/tree/stop.ipynb")
    # the kernel answers before the cell is run (it starts slowly on a busy machine)
    expect(lead.get_by_text("Dossier | Idle")).to_be_visible(timeout=120_000)
    cell = lead.locator(".jp-Notebook .jp-Cell .cm-content").first
    cell.click()
    lead.keyboard.type("import time; time.sleep(600)")
    lead.keyboard.press("Shift+Enter")
    shot(lead, "h1-workspace-busy-kernel")
    wait_busy(hub, hub.token("a.jansen"))
    took = stop_workspace(hub)
    # measured: 55-65 s with JupyterHub's SIGINT, 30 s and 30 s (spawner.py stop); 1-6 s now
    assert not api_running(hub), "the workspace did not stop"
    assert took < 10, f"stopping took {took:.1f} s"
    assert workspace_processes(hub) == [], "processes of the workspace outlived it"
