"""dossierhub's words on JupyterHub's own pages (workspaces/templates): each template rendered
with the values JupyterHub's handlers give it, through a loader built as JupyterHub builds its
own (our folder first, JupyterHub's templates under `templates/`), and the spawner's real
refusals. Only page.html is a bare frame here: it is the navigation bar's, not these pages'."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from jinja2 import ChoiceLoader, DictLoader, Environment, FileSystemLoader, PrefixLoader
from jupyterhub._data import DATA_FILES_PATH
from tornado import web

from dossierhub.state.directory import DossierEntry
from dossierhub.state.home import Home
from dossierhub.workspaces.hubconfig import TEMPLATES, dossier_facts_for, workspaces_for
from dossierhub.workspaces.spawner import DossierSpawner, WorkspaceRefused

JUPYTERHUB = Path(DATA_FILES_PATH) / "templates"
FRAME = "{% block main %}{% endblock %}{% block script %}{% endblock %}"
ADMINS = ("z.beheer",)

ARMOEDE = DossierEntry(
    "armoede", "Poverty measures", "Why", "art. 6", "2099-01-01",
    ("a.jansen", "e.mulder"), ("b.devries",), ("d.visser",),
)  # fmt: skip
FRAUDE = DossierEntry(
    "woonfraude", "Housing fraud", "Why", "art. 6", "2025-12-01", ("i.vos",), ("j.peters",), (),
)  # fmt: skip


@pytest.fixture
def render(tmp_path: Path) -> Any:
    home = Home(tmp_path)
    home.directory_file.parent.mkdir(parents=True)
    home.directory_file.write_text(json.dumps([asdict(ARMOEDE), asdict(FRAUDE)]))
    env = Environment(
        loader=ChoiceLoader(
            [
                DictLoader({"page.html": FRAME}),
                PrefixLoader({"templates": FileSystemLoader([str(JUPYTERHUB)])}, "/"),
                FileSystemLoader([str(TEMPLATES), str(JUPYTERHUB)]),
            ]
        ),
        autoescape=True,  # as JupyterHub's
    )

    def page(name: str, person: str | None, **values: Any) -> str:
        user = SimpleNamespace(name=person) if person else None
        namespace = {
            "base_url": "/hub/",
            "user": user,
            "dossierhub_workspaces": workspaces_for(tmp_path)(user),  # type: ignore[arg-type]
            "dossierhub_dossier": dossier_facts_for(tmp_path, ADMINS)(user),  # type: ignore[arg-type]
            **values,
        }
        html = env.get_template(name).render(**namespace)
        return re.sub(r"\s+", " ", html)

    return page


def refused(case: str, dossier: str = "woonfraude", status: int = 403) -> WorkspaceRefused:
    return WorkspaceRefused(status, dossier, case, f"Dossier {dossier}: the spawner's sentence")


def test_expired_names_the_date_and_the_leads_to_ask(render: Any) -> None:
    html = render("error.html", "j.peters", status_code=403, status_message="error",
                  message="", exception=refused("expired"))  # fmt: skip
    assert "The workspace of Housing fraud is closed" in html
    assert "expired on 1 Dec 2025" in html
    assert "ask i.vos to extend it" in html  # an analyst asks the lead
    assert 'href="/services/dossierhub/dossiers/woonfraude"' in html
    assert "403 : error" not in html and "Failed to start" not in html


def test_a_lead_of_an_expired_dossier_asks_an_admin(render: Any) -> None:
    html = render("error.html", "i.vos", status_code=403, status_message="error",
                  message="", exception=refused("expired"))  # fmt: skip
    assert "ask an admin (z.beheer) to extend it" in html


def test_no_data_says_the_admin_applies(render: Any) -> None:
    html = render("error.html", "a.jansen", status_code=409, status_message="error",
                  message="", exception=refused("no_data", "armoede", 409))  # fmt: skip
    assert "has no data yet" in html
    assert "Ask an admin (z.beheer) to run <code>dossierhub apply</code>" in html


def test_a_failed_start_shows_the_spawners_reason_and_a_retry(render: Any) -> None:
    exc = WorkspaceRefused(500, "armoede", "failed", "could not be sandboxed; see logs/armoede")
    html = render("not_running.html", "a.jansen", user=SimpleNamespace(name="dossier-armoede"),
                  spawn_url="/hub/spawn/dossier-armoede", failed=True, exception=exc)  # fmt: skip
    assert "The workspace of Poverty measures did not start" in html
    assert "could not be sandboxed; see logs/armoede" in html
    assert 'href="/hub/spawn/dossier-armoede"' in html
    assert "Spawn failed" not in html and "Relaunch" not in html


def test_an_unexplained_failure_points_to_the_log_not_the_exception(render: Any) -> None:
    exc = OSError("/srv/home/workspaces/other/secret.ipynb")
    html = render("not_running.html", "a.jansen", user=SimpleNamespace(name="dossier-armoede"),
                  spawn_url="/hub/spawn/dossier-armoede", failed=True, exception=exc)  # fmt: skip
    assert "did not start" in html and "hub's log" in html
    assert "/srv/home" not in html


def test_a_stopped_workspace_says_how_to_start_it(render: Any) -> None:
    html = render("not_running.html", "a.jansen", user=SimpleNamespace(name="dossier-armoede"),
                  spawn_url="/hub/spawn/dossier-armoede?next=x", failed=False)  # fmt: skip
    assert "The workspace of Poverty measures is stopped" in html
    start = (
        'id="start" role="button" class="btn btn-primary" href="/hub/spawn/dossier-armoede?next=x"'
    )
    assert f"{start}>Start the workspace" in html
    assert "Server not running" not in html and "Launch" not in html


def test_a_stopped_expired_workspace_offers_no_start(render: Any) -> None:
    html = render("not_running.html", "j.peters", user=SimpleNamespace(name="dossier-woonfraude"),
                  spawn_url="/hub/spawn/dossier-woonfraude", failed=False)  # fmt: skip
    assert "expired on 1 Dec 2025" in html and "ask i.vos to extend it" in html
    assert 'id="start"' not in html


def test_starting_says_what_happens(render: Any) -> None:
    spawner = SimpleNamespace(pending="spawn")
    html = render("spawn_pending.html", "a.jansen", user=SimpleNamespace(name="dossier-armoede"),
                  spawner=spawner, progress_url="/hub/api/progress")  # fmt: skip
    assert "Starting the workspace of Poverty measures" in html
    assert 'id="progress-bar"' in html and 'new EventSource("/hub/api/progress")' in html
    assert "Your server is starting up" not in html


def test_a_viewer_is_sent_to_the_reports_and_a_stranger_learns_nothing(render: Any) -> None:
    exc = web.HTTPError(404, "No access to resources or resources not found")
    values = {"status_code": 404, "status_message": "Not Found", "message": "", "exception": exc}
    viewer = render("404.html", "d.visser", **values)
    assert "You are a viewer of Poverty measures" in viewer
    assert "Jupyter has lots of moons" not in viewer
    stranger = render("404.html", "s.vreemd", **values)
    assert "Poverty measures" not in stranger and "Housing fraud" not in stranger
    assert "You cannot open this" in stranger


def test_facts_are_for_members_only(tmp_path: Path) -> None:
    home = Home(tmp_path)
    home.directory_file.parent.mkdir(parents=True)
    home.directory_file.write_text(json.dumps([asdict(ARMOEDE)]))
    facts = dossier_facts_for(tmp_path, ADMINS)
    assert facts(SimpleNamespace(name="s.vreemd"))("dossier-armoede") is None  # type: ignore[arg-type]
    assert facts(None)("armoede") is None
    lead = facts(SimpleNamespace(name="a.jansen"))("dossier-armoede")  # type: ignore[arg-type]
    assert lead is not None and lead["role"] == "lead" and lead["expires"] == "1 Jan 2099"


def test_the_start_page_hears_each_step_as_it_happens() -> None:
    """The spawner's progress (JupyterHub's start page reads it) yields each step once, as the
    start reaches it, and ends with the start."""
    spawner = DossierSpawner()
    spawner._spawn_pending = True
    spawner._stage(10, "Checking the dossier")

    async def read() -> list[str]:
        seen: list[str] = []
        async for event in spawner.progress():
            seen.append(event["message"])
            if len(seen) == 1:
                spawner._stage(50, "Starting JupyterLab")  # a step later in the start
            else:
                spawner._spawn_pending = False  # the start ended
        return seen

    assert asyncio.run(asyncio.wait_for(read(), 10)) == [
        "Checking the dossier",
        "Starting JupyterLab",
    ]
