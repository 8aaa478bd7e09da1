"""A workspace that starts with a way in: a real hub spawns armoede's workspace, which offers
only the Dossier kernel and opens with a "Start here" notebook the workspace itself wrote; a
notebook the team changed survives the next start."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from dossierhub.isolation.unixusers import workspace_name

from e2e_hub import PASSWORD, Hub
from kernelclient import execute

SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"

WORKSPACE = "dossier-armoede"
START_HERE = "Start here.ipynb"


@pytest.fixture
def lead(hub: Hub) -> Iterator[str]:
    token = hub.token("a.jansen")
    started = hub.start(WORKSPACE, token, timeout=120)
    assert started.status_code in (201, 202, 400), started.text  # 400: already running
    yield token
    # the notebooks Query made go; the workspace stops, as the other e2e tests expect
    headers = {"Authorization": f"token {token}"}
    contents = f"{hub.url}user/{WORKSPACE}/api/contents"
    listing = httpx.get(contents, headers=headers, timeout=30)
    for item in listing.json().get("content", []) if listing.status_code == 200 else []:
        if item["name"].startswith("Untitled"):
            httpx.delete(f"{contents}/{item['path']}", headers=headers, timeout=30)
    api = hub.api()
    api.stop_server(WORKSPACE)
    api.close()


def restart(hub: Hub, token: str) -> None:
    api = hub.api()
    api.stop_server(WORKSPACE)
    api.close()
    deadline = time.monotonic() + 60
    while hub.start(WORKSPACE, token, timeout=120).status_code == 400:  # still stopping
        assert time.monotonic() < deadline, "the workspace did not stop"
        time.sleep(0.5)


def test_only_the_dossier_kernel_is_offered(hub: Hub, lead: str) -> None:
    headers = {"Authorization": f"token {lead}"}
    specs = httpx.get(f"{hub.url}user/{WORKSPACE}/api/kernelspecs", headers=headers).json()
    assert set(specs["kernelspecs"]) == {"dossier"}
    assert specs["default"] == "dossier"


def test_the_workspace_starts_with_start_here(hub: Hub, lead: str) -> None:
    headers = {"Authorization": f"token {lead}"}
    url = f"{hub.url}user/{WORKSPACE}/api/contents/{START_HERE}"
    notebook = httpx.get(url, headers=headers).json()["content"]
    assert notebook["metadata"]["kernelspec"]["name"] == "dossier"
    sources = ["".join(cell["source"]) for cell in notebook["cells"]]
    assert sources[0].startswith("# Start here: Poverty measures 2026")
    assert '%%sql\nSELECT * FROM "residents" LIMIT 10' in sources
    # written by the workspace's own identity, not by root
    path = Path(hub.home.workspace_dir("armoede")) / START_HERE
    assert path.owner() == workspace_name(hub.home, "armoede")
    # its example query runs in the workspace's own kernel
    query = next(s for s in sources if s.startswith("%%sql"))
    ran = execute(hub.url, WORKSPACE, lead, query)
    assert ran.error is None, ran.error

    # the team makes it theirs: the next start keeps it as they left it
    notebook["cells"].append(
        {"cell_type": "markdown", "metadata": {}, "source": "Our notes", "id": "ournotes"}
    )
    saved = httpx.put(
        url, headers=headers, json={"type": "notebook", "format": "json", "content": notebook}
    )
    assert saved.status_code == 200, saved.text
    before = path.read_bytes()
    restart(hub, lead)
    assert path.read_bytes() == before


def open_lab(hub: Hub, browser: Browser, path: str) -> Page:
    """a.jansen (lead) in armoede's JupyterLab at `path`, in a fresh layout."""
    page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    page.goto(f"{hub.url}user/{WORKSPACE}/{path}")
    page.fill("#username_input", "a.jansen")
    page.fill("#password_input", PASSWORD)
    page.click("#login_submit")
    page.wait_for_url(lambda url: "/lab" in url or "oauth2/authorize" in url, wait_until="commit")
    if "oauth2/authorize" in page.url:  # until the hub skips it for workspaces
        page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(f"{hub.url}user/{WORKSPACE}/lab**", timeout=60_000, wait_until="commit")
    return page


def test_launcher_and_start_here_in_the_browser(hub: Hub, lead: str, browser: Browser) -> None:
    page = open_lab(hub, browser, "lab?reset")
    launcher = page.locator(".jp-Launcher")
    expect(launcher).to_be_visible(timeout=90_000)
    notebooks = launcher.locator(".jp-Launcher-section").filter(has_text="Notebook")
    expect(notebooks.locator(".jp-LauncherCard")).to_have_count(1)
    expect(notebooks.locator(".jp-LauncherCard")).to_contain_text("Dossier")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "13-lab-launcher.png"))
    page.context.close()

    page = open_lab(hub, browser, f"lab/tree/{START_HERE}")
    notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook")
    expect(notebook).to_contain_text("Start here: Poverty measures 2026", timeout=90_000)
    expect(page.get_by_role("button", name="Dossier | Idle")).to_be_visible(timeout=90_000)
    page.get_by_text("Run", exact=True).first.click()
    page.get_by_text("Run All Cells", exact=True).click()
    last = notebook.locator(".jp-CodeCell").last
    expect(last.locator(".jp-OutputArea-output")).to_be_visible(timeout=120_000)
    expect(notebook.locator(".jp-OutputArea-output[data-mime-type*='error']")).to_have_count(0)
    page.screenshot(path=str(SHOTS / "13-start-here.png"), full_page=True)
    page.context.close()


def test_panel_row_icon_and_query_without_a_notebook(hub: Hub, lead: str, browser: Browser) -> None:
    page = open_lab(hub, browser, "lab?reset")
    tab = page.locator(".jp-SideBar .lm-TabBar-tab[data-id='dossier-lab-panel']")
    expect(tab).to_be_visible(timeout=90_000)
    # its own icon, not the file browser's folder
    files = page.locator(".jp-SideBar .lm-TabBar-tab[data-id='filebrowser'] svg")
    assert tab.locator("svg").inner_html() != files.inner_html()
    tab.click()
    panel = page.locator("#dossier-lab-panel")
    expect(panel.locator(".dh-title")).to_have_text("Poverty measures 2026", timeout=30_000)
    # every view's Query button on the row of its name
    for view in panel.locator(".dh-view").all():
        name = view.locator("summary .dh-view-name").bounding_box()
        button = view.locator(".dh-insert").bounding_box()
        assert name and button
        assert abs((name["y"] + name["height"] / 2) - (button["y"] + button["height"] / 2)) < 4
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "13-lab-panel-row.png"))

    # no notebook open: Query makes a Dossier notebook with the query in it, and it runs
    assert page.locator(".jp-NotebookPanel").count() == 0
    panel.locator(".dh-view[data-view='residents'] .dh-insert").click()
    notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    cell = notebook.locator(".jp-Cell").first
    expect(cell.locator(".jp-InputArea")).to_contain_text("FROM residents", timeout=60_000)
    expect(page.get_by_role("button", name="Dossier | Idle")).to_be_visible(timeout=90_000)
    cell.locator(".jp-InputArea").click()
    page.keyboard.press("Shift+Enter")
    expect(cell.locator(".jp-OutputArea-output")).to_contain_text("bsn", timeout=90_000)
    page.screenshot(path=str(SHOTS / "13-query-new-notebook.png"))
    page.context.close()


def test_a_link_planted_as_start_here_is_not_followed(hub: Hub, lead: str) -> None:
    """The attack: the workspace (any kernel of it) replaces Start here.ipynb by a link to a file
    root owns; the next start must neither write through it nor read it as root."""
    target = hub.home.root / "hub" / "planted-target.txt"
    target.write_text("root's own\n")
    planted = execute(
        hub.url,
        WORKSPACE,
        lead,
        "import os\n"
        f"os.remove({START_HERE!r})\n"
        f"os.symlink({str(target)!r}, {START_HERE!r})\n"
        f"print(os.readlink({START_HERE!r}))",
    )
    assert planted.error is None, planted.error
    restart(hub, lead)
    assert target.read_text() == "root's own\n"
    link = Path(hub.home.workspace_dir("armoede")) / START_HERE
    assert link.is_symlink() and link.readlink() == target
    link.unlink()
    target.unlink()
