"""One JupyterHub workspace per dossier: who gets in, what a kernel can read, expiry, restarts.

A real hub, its real proxy and real spawned workspaces on 127.0.0.1 (tests run as root, so
each workspace runs as its own Unix identity).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import httpx
import pytest
from test_service_api import wait_for_run
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from dossierhub.isolation.unixusers import workspace_name
from dossierhub.state.audit import AuditLog
from dossierhub.workspaces.servestate import read_serve_state

from e2e_hub import PASSWORD, Hub
from e2e_runs import template
from kernelclient import execute

ARMOEDE = "dossier-armoede"


@pytest.fixture(scope="module")
def lead(hub: Hub) -> str:
    token = hub.token("a.jansen")
    hub.ensure_running(ARMOEDE, token)  # earlier modules may have left it running
    return token


def status(hub: Hub, server: str, token: str) -> int:
    return httpx.get(
        f"{hub.url}user/{server}/api/status", headers={"Authorization": f"token {token}"}
    ).status_code


def test_access_matrix(hub: Hub, lead: str) -> None:
    assert status(hub, ARMOEDE, lead) == 200
    started = [r for r in AuditLog(hub.home).read() if r["action"] == "workspace.start"]
    assert started and started[-1]["actor"] == "a.jansen"
    assert started[-1]["details"]["dossier"] == "armoede"
    assert started[-1]["details"]["outcome"] == "allowed"
    assert status(hub, ARMOEDE, hub.token("b.devries")) == 200  # analyst
    for outsider in ("d.visser", "h.deboer", "s.vreemd"):  # viewer, other dossier, stranger
        token = hub.token(outsider)
        assert status(hub, ARMOEDE, token) in (403, 404), outsider
        start = httpx.post(
            f"{hub.url}hub/api/users/{ARMOEDE}/server", headers={"Authorization": f"token {token}"}
        )
        assert start.status_code in (403, 404), outsider


def test_people_have_no_personal_servers(hub: Hub) -> None:
    token = hub.token("f.smit")
    response = hub.start("f.smit", token)
    assert response.status_code >= 400
    assert "no personal servers" in response.text


def test_kernel_reads_views_and_nothing_else(hub: Hub, lead: str) -> None:
    raw = hub.home.root / "raw" / "residents.parquet"
    expected = duckdb.execute(f"SELECT count(*) FROM '{raw}'").fetchall()[0][0]
    run = execute(
        hub.url,
        ARMOEDE,
        lead,
        "import os\n"
        "print(os.environ['DOSSIER_ID'], os.getcwd())\n"
        "db.execute('SELECT count(*) FROM residents').fetchall()[0][0]",
    )
    assert run.error is None, run.error
    assert run.result == str(expected)
    assert run.stdout.split()[0] == "armoede"
    assert run.stdout.split()[1] == str(hub.home.workspaces_dir / "armoede")
    forbidden = [
        raw,
        hub.home.master_key_file,
        hub.home.root / "catalog.yaml",
        hub.home.extract_dir("mobiliteit") / "counts.parquet",
        hub.home.hub_dir / "jupyterhub.sqlite",
        hub.home.passwords_file,
        hub.home.dossiers_dir / "armoede.yaml",
    ]
    probe = (
        "import os\n"
        "def attempt(path):\n"
        "    try:\n"
        "        os.listdir(path) if os.path.isdir(path) else open(path, 'rb').read(1)\n"
        "        return 'READ'\n"
        "    except Exception as e:\n"
        "        return type(e).__name__\n"
        f"for path in {[str(p) for p in [*forbidden, hub.home.root]]!r}:\n"
        "    print(attempt(path))"
    )
    attempts = execute(hub.url, ARMOEDE, lead, probe)
    assert attempts.error is None, attempts.error
    # the sandbox shows none of them; the Unix identity could not read them either
    assert set(attempts.stdout.split()) <= {"PermissionError", "FileNotFoundError"}
    assert len(attempts.stdout.split()) == len(forbidden) + 1


def test_workspace_token_can_do_no_more_than_the_server_needs(hub: Hub, lead: str) -> None:
    code = (
        "import os, urllib.request, urllib.error\n"
        "def call(path, method='GET'):\n"
        "    req = urllib.request.Request(os.environ['JUPYTERHUB_API_URL'] + path,"
        " method=method, headers={'Authorization': 'token ' + "
        "os.environ['JUPYTERHUB_API_TOKEN']})\n"
        "    try:\n"
        "        return urllib.request.urlopen(req).status\n"
        "    except urllib.error.HTTPError as e:\n"
        "        return e.code\n"
        "print(call('/users'), call('/users/dossier-mobiliteit/server', 'POST'),"
        " call('/users/a.jansen/tokens', 'POST'), call('/groups'))"
    )
    run = execute(hub.url, ARMOEDE, lead, code)
    assert run.error is None, run.error
    assert all(code in ("403", "404") for code in run.stdout.split()), run.stdout


def test_kernel_runs_as_the_dossier_identity_with_its_limits(hub: Hub, lead: str) -> None:
    run = execute(
        hub.url,
        ARMOEDE,
        lead,
        "import pwd, os\nprint(pwd.getpwuid(os.getuid()).pw_name)\n"
        "db.execute(\"SELECT current_setting('threads')\").fetchall()[0][0]",
    )
    assert run.error is None, run.error
    assert run.stdout.strip() == workspace_name(hub.home, "armoede")
    assert run.result == "2"


def test_downloads_are_closed(hub: Hub, lead: str) -> None:
    notebook = hub.home.workspaces_dir / "armoede" / "analysis.ipynb"
    notebook.write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    os.chmod(notebook, 0o644)
    headers = {"Authorization": f"token {lead}"}
    for path in (
        "files/analysis.ipynb",
        "files/analysis.ipynb?download=1",
        "nbconvert/html/analysis.ipynb?download=true",
    ):
        response = httpx.get(f"{hub.url}user/{ARMOEDE}/{path}", headers=headers)
        assert response.status_code == 403, path
        assert "released report" in response.text


def test_lab_opens_with_the_dossier_kernel_and_collaboration(hub: Hub, lead: str) -> None:
    headers = {"Authorization": f"token {lead}"}
    specs = httpx.get(f"{hub.url}user/{ARMOEDE}/api/kernelspecs", headers=headers).json()
    assert specs["default"] == "dossier"
    assert specs["kernelspecs"]["dossier"]["spec"]["display_name"] == "Dossier"
    lab = httpx.get(f"{hub.url}user/{ARMOEDE}/lab", headers=headers)
    assert lab.status_code == 200
    extensions = re.search(r'"disabledExtensions": (\{[^}]*\}|\[[^\]]*\])', lab.text)
    assert extensions and "docmanager-extension:download" in extensions.group(1)
    notebook = hub.home.workspaces_dir / "armoede" / "shared.ipynb"
    notebook.write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    shutil.chown(notebook, workspace_name(hub.home, "armoede"), workspace_name(hub.home, "armoede"))
    session = httpx.put(
        f"{hub.url}user/{ARMOEDE}/api/collaboration/session/shared.ipynb",
        headers=headers,
        json={"format": "json", "type": "notebook"},
    )
    assert session.status_code in (200, 201), session.text
    assert session.json()["sessionId"]


@contextlib.contextmanager
def login(hub: Hub, user: str, password: str) -> Iterator[httpx.Client]:
    """A browser-like session: the login form, its XSRF token, the cookies."""
    with httpx.Client(base_url=hub.url, follow_redirects=True) as client:
        page = client.get("hub/login")
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
        data = {"username": user, "password": password}
        if xsrf:
            data["_xsrf"] = xsrf.group(1)
        client.post("hub/login", data=data)
        yield client


def test_login_lands_on_the_persons_dossiers(hub: Hub) -> None:
    with login(hub, "a.jansen", PASSWORD) as lead_client:
        landed = lead_client.get("")  # / (a bookmark): the hub's default_url
        assert landed.url.path == "/services/dossierhub/"
        assert "Poverty measures 2026" in landed.text and "Open workspace" in landed.text
        assert "Mobility and liveability" not in landed.text
        # the hub's own home is no second list, only the way to the first
        pointer = lead_client.get("hub/home").text
        assert 'content="0; url=/services/dossierhub/"' in pointer
        assert "Poverty measures 2026" not in pointer and "Open workspace" not in pointer
    with login(hub, "d.visser", PASSWORD) as viewer:
        page = viewer.get("services/dossierhub/").text
        assert "Poverty measures 2026" in page and "Mobility and liveability" in page
        assert "Open workspace" not in page
    with login(hub, "s.vreemd", PASSWORD) as stranger:
        assert "not a member of any dossier" in stranger.get("services/dossierhub/").text


def test_wrong_password_and_workspace_accounts_cannot_log_in(hub: Hub) -> None:
    for user, password in (("a.jansen", "wrong password"), (ARMOEDE, PASSWORD)):
        with login(hub, user, password) as client:
            assert client.get("hub/home").url.path.endswith("/hub/login")


def test_expired_dossier_cannot_be_started_and_says_why(hub: Hub) -> None:
    token = hub.token("i.vos")
    response = hub.start("dossier-woonfraude-2025", token)
    assert response.status_code >= 400
    assert "expired on 2025-12-31" in response.text
    with login(hub, "i.vos", PASSWORD) as client:
        page = client.get("services/dossierhub/").text  # a date by the pages' one rule
        assert 'Expired on <time datetime="2025-12-31">31 Dec 2025</time>' in page


def test_removed_member_is_out_within_seconds(hub: Hub, lead: str) -> None:
    analyst = hub.token("c.bakker")
    assert status(hub, ARMOEDE, analyst) == 200
    headers = {"Authorization": f"token {analyst}"}
    kernel = httpx.post(
        f"{hub.url}user/{ARMOEDE}/api/kernels", headers=headers, json={"name": "dossier"}
    ).json()
    ws_url = (
        f"{hub.url.replace('http://', 'ws://')}user/{ARMOEDE}/api/kernels/{kernel['id']}/channels"
    )
    manifest = hub.manifest("armoede")
    original = dict(manifest)
    manifest["members"] = {**manifest["members"], "analyst": ["b.devries"]}
    with connect(ws_url, additional_headers=headers) as socket:  # the member's open kernel
        hub.write_manifest("armoede", manifest)
        try:
            started = time.monotonic()
            assert hub.apply().returncode == 0
            while status(hub, ARMOEDE, analyst) == 200:
                assert time.monotonic() - started < 20, "removed member still has access"
                time.sleep(0.5)
            notice = hub.home.workspaces_dir / "armoede" / "WORKSPACE-NOTICE.md"
            assert notice.exists()  # the workspace restarted, with a notice to the team
            with pytest.raises(ConnectionClosed):
                while True:
                    socket.recv(timeout=30)
            deadline = time.monotonic() + 60
            while status(hub, ARMOEDE, lead) != 200:
                assert time.monotonic() < deadline
                time.sleep(0.5)
        finally:
            hub.write_manifest("armoede", original)
            assert hub.apply().returncode == 0


def test_new_dossier_without_dropping_running_workspaces(hub: Hub, lead: str) -> None:
    pid_before = running_pid(hub, ARMOEDE, lead)
    state = read_serve_state(hub.home)
    assert state is not None
    manifest = hub.manifest("mobiliteit")
    manifest.update(id="fietsen", title="Cycling 2027", members={"lead": ["k.dekker"]})
    hub.write_manifest("fietsen", manifest)
    try:
        applied = hub.apply()
        assert applied.returncode == 0, applied.stderr
        after = read_serve_state(hub.home)
        assert after is not None and after.started > state.started  # roles reloaded
        assert running_pid(hub, ARMOEDE, lead) == pid_before
        newcomer = hub.token("k.dekker")
        assert hub.start("dossier-fietsen", newcomer).status_code in (201, 202)
        assert status(hub, "dossier-fietsen", newcomer) == 200
        assert status(hub, "dossier-fietsen", lead) in (403, 404)
    finally:
        (hub.home.dossiers_dir / "fietsen.yaml").unlink()
        assert hub.apply().returncode == 0
    assert status(hub, ARMOEDE, lead) == 200
    api = hub.api()
    assert "dossier-fietsen" not in api.users()
    api.close()


# a report run whose kernel holds until the test lets it go (a file in its scratch folder)
HOLD = """
import os, pathlib, time
run_dir = pathlib.Path(os.environ["DOSSIERHUB_RUN_DIR"])
(run_dir / "holding").write_text("")
while not (run_dir / "go").exists():  # until the test lets it go, or the time limit
    time.sleep(0.1)
print("went", (run_dir / "go").exists())
"""


@contextlib.contextmanager
def held_run(hub: Hub) -> Iterator[tuple[str, Path]]:
    """A run the lead started through the service, its kernel holding: (run id, scratch)."""
    template(hub.home.templates_dir / "hold.ipynb", HOLD)
    manifest_file = hub.home.dossiers_dir / "armoede.yaml"
    original = manifest_file.read_text()
    manifest = hub.manifest("armoede")  # templates are read from it at each request
    hub.write_manifest("armoede", {**manifest, "templates": [*manifest["templates"], "hold"]})
    try:
        with hub.service_api("a.jansen") as api:
            answer = api.post("dossiers/armoede/runs", json={"template": "hold"})
        assert answer.status_code == 202, answer.text
        deadline = time.monotonic() + 60
        while not (held := list(hub.home.scratch_parent("armoede").glob("*/holding"))):
            assert time.monotonic() < deadline, "the run's kernel never got to its cell"
            time.sleep(0.1)
        yield answer.json()["run_id"], held[0].parent
    finally:
        manifest_file.write_text(original)
        (hub.home.templates_dir / "hold.ipynb").unlink()


def test_hub_restart_keeps_workspaces_and_report_runs_going(hub: Hub, lead: str) -> None:
    pid_before = running_pid(hub, ARMOEDE, lead)
    state = read_serve_state(hub.home)
    assert state is not None
    with held_run(hub) as (run_id, scratch):
        os.kill(state.serve_pid, signal.SIGHUP)
        deadline = time.monotonic() + 60
        while (current := read_serve_state(hub.home)) is None or current.started == state.started:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert status(hub, ARMOEDE, lead) == 200
        assert running_pid(hub, ARMOEDE, lead) == pid_before
        (scratch / "go").write_text("")  # the run's kernel lived through the restart
        with hub.service_api("a.jansen") as api:
            detail = wait_for_run(api, "armoede", run_id)
    assert detail["provenance"]["status"] == "succeeded", detail["provenance"]["error"]
    notebook = hub.home.run_folder("armoede", run_id).notebook.read_text()
    assert "went True" in notebook


def running_pid(hub: Hub, server: str, token: str) -> int:
    run = execute(hub.url, server, token, "import os\nos.getppid()")
    assert run.error is None, run.error
    return int(run.result)


def test_expiry_stops_a_running_workspace_and_clears_outputs(hub: Hub) -> None:
    """The hub's expiry service, not apply, notices a dossier that has just expired."""
    token = hub.token("f.smit")
    assert hub.start("dossier-mobiliteit", token).status_code in (201, 202, 400)
    wait_for_status(hub, "dossier-mobiliteit", token, 200)
    notebook = hub.home.workspaces_dir / "mobiliteit" / "counts.ipynb"
    notebook.write_text(
        json.dumps(
            {
                "cells": [
                    {
                        "cell_type": "code",
                        "execution_count": 1,
                        "id": "a",
                        "metadata": {},
                        "source": "db.sql('SELECT 1')",
                        "outputs": [{"output_type": "stream", "name": "stdout", "text": "secret"}],
                    }
                ],
                "metadata": {},
                "nbformat": 4,
                "nbformat_minor": 5,
            }
        )
    )
    directory = hub.home.directory_file
    original = directory.read_text()
    entries = json.loads(original)
    for entry in entries:
        if entry["id"] == "mobiliteit":
            entry["expires"] = "2020-01-01"  # as if the date had passed
    directory.write_text(json.dumps(entries))
    try:
        deadline = time.monotonic() + 60
        while status(hub, "dossier-mobiliteit", token) == 200:
            assert time.monotonic() < deadline, "expired workspace still running"
            time.sleep(0.5)
        deadline = time.monotonic() + 30
        while (hub.home.extract_dir("mobiliteit")).exists():
            assert time.monotonic() < deadline
            time.sleep(0.2)
        while "secret" in notebook.read_text():  # outputs are cleared after the extracts go
            assert time.monotonic() < deadline, "outputs of the expired dossier kept"
            time.sleep(0.2)
        assert "db.sql('SELECT 1')" in notebook.read_text()
    finally:
        directory.write_text(original)
        assert hub.apply().returncode == 0  # rebuilds the extracts
    assert hub.start("dossier-mobiliteit", token).status_code in (201, 202, 400)
    wait_for_status(hub, "dossier-mobiliteit", token, 200)


def wait_for_status(hub: Hub, server: str, token: str, wanted: int, limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while (got := status(hub, server, token)) != wanted:
        assert time.monotonic() < deadline, f"{server}: status {got}, waited for {wanted}"
        time.sleep(0.5)
