"""What a workspace's own code can no longer do to the record of who ran what (issue 16).

The relay outside the workspace records each execution; these tests perform, from a real kernel
of the session hub's armoede workspace, the attacks that would otherwise undo or bypass it:
reading, tracing or rewriting the server (where every visitor's token lives), planting
start-up code in the team's own folder that would run with no person's execution to record,
and the ways to run code that are no kernel message (terminals, language servers, REST
execution).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dossierhub.isolation.unixusers import workspace_name

from e2e_hub import Hub
from kernelclient import execute

ARMOEDE = "dossier-armoede"

# Run in a kernel: the server is the kernel's parent, of the same Unix identity.
ATTACK_THE_SERVER = r"""
import ctypes, errno, json, os
server = os.getppid()
libc = ctypes.CDLL(None, use_errno=True)
outcome = {
    "server": open(f"/proc/{server}/cmdline", "rb").read().replace(b"\0", b" ").decode(),
    "kernel_dumpable": libc.prctl(3, 0, 0, 0, 0),  # PR_GET_DUMPABLE: exec made it 1 again
}

def attempt(name, action):
    try:
        action()
        outcome[name] = "done"
    except OSError as exc:
        outcome[name] = errno.errorcode.get(exc.errno, str(exc.errno))

def environ():  # the server's variables
    open(f"/proc/{server}/environ", "rb").read()

def memory():  # open for writing (what rewriting needs), then read where its data is
    with open(f"/proc/{server}/mem", "r+b", buffering=0) as mem:
        with open(f"/proc/{server}/maps") as maps:
            start = next(int(line.split("-")[0], 16) for line in maps if " rw-p " in line)
        mem.seek(start)
        assert len(mem.read(16)) == 16

def trace():
    # PTRACE_SEIZE: the same permission check as PTRACE_ATTACH, without stopping the server;
    # in a child that ends at once, which detaches it again (where it was allowed)
    child = os.fork()
    if child == 0:
        seized = libc.ptrace(ctypes.c_long(0x4206), ctypes.c_int(server), None, None)
        os._exit(0 if seized == 0 else ctypes.get_errno())
    refused = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])
    if refused:
        raise OSError(refused, "ptrace")

attempt("environ", environ)
attempt("memory", memory)
attempt("ptrace", trace)
print(json.dumps(outcome))
"""

# Files a team member can write into the workspace folder, each of which Jupyter's defaults
# would load at the next server or kernel start.
PLANTED_STARTUP = ".ipython/profile_default/startup/00-planted.py"
PLANTED_KERNELSPEC = ".local/share/jupyter/kernels/dossier/kernel.json"
PLANTED_LABEXTENSION = ".local/share/jupyter/labextensions/dossierhub-planted/package.json"
PLANTED_SERVER_CONFIG = ".jupyter/jupyter_server_config.py"
STARTUP_MARK = "planted-startup-ran"

PLANTED = {
    PLANTED_STARTUP: f"import pathlib; (pathlib.Path.home() / {STARTUP_MARK!r}).touch()\n",
    PLANTED_KERNELSPEC: json.dumps(
        {
            "argv": ["python", "-c", "print('planted')", "{connection_file}"],
            "display_name": "Planted",
            "language": "python",
        }
    ),
    PLANTED_LABEXTENSION: json.dumps(
        {
            "name": "dossierhub-planted",
            "version": "0.0.1",
            "jupyterlab": {"_build": {"load": "static/remoteEntry.js", "extension": "./ext"}},
        }
    ),
    PLANTED_SERVER_CONFIG: "c.ServerApp.terminals_enabled = True\n",
}

LOOK_AROUND = f"""
import importlib.util, json, os, pathlib
from jupyter_core.paths import jupyter_config_path, jupyter_path
print(json.dumps({{
    "home": str(pathlib.Path.home()),
    "startup_ran": (pathlib.Path.home() / {STARTUP_MARK!r}).exists(),
    "profile": get_ipython().profile_dir.location,
    "config_paths": jupyter_config_path(),
    "data_paths": jupyter_path(),
    "nbmodel": importlib.util.find_spec("jupyter_server_nbmodel") is not None,
}}))
"""


@pytest.fixture(scope="module")
def lead(hub: Hub) -> str:
    token = hub.token("a.jansen")
    hub.ensure_running(ARMOEDE, token)
    return token


@pytest.fixture
def planted(hub: Hub) -> Iterator[None]:
    """The files planted in the workspace folder as the workspace's own (as any member can,
    from a kernel or the editor), gone again afterwards: with Jupyter's defaults they would
    run in every later kernel of the session's workspace."""
    folder = hub.home.workspace_dir("armoede")
    owner = workspace_name(hub.home, "armoede")
    for where, text in PLANTED.items():
        for made in reversed(Path(where).parents[:-1]):
            if not (folder / made).exists():
                (folder / made).mkdir()
                shutil.chown(folder / made, owner, owner)
        (folder / where).write_text(text)
        shutil.chown(folder / where, owner, owner)
    yield
    for where in (PLANTED_STARTUP, PLANTED_SERVER_CONFIG, STARTUP_MARK):
        (folder / where).unlink(missing_ok=True)
    for where in (PLANTED_KERNELSPEC, PLANTED_LABEXTENSION):
        shutil.rmtree((folder / where).parent, ignore_errors=True)


def test_a_kernel_cannot_read_trace_or_rewrite_its_server(hub: Hub, lead: str) -> None:
    run = execute(hub.url, ARMOEDE, lead, ATTACK_THE_SERVER)
    assert run.error is None, run.error
    outcome = json.loads(run.stdout)
    assert outcome["environ"] == "EACCES", outcome
    assert outcome["memory"] == "EACCES", outcome
    assert outcome["ptrace"] == "EPERM", outcome
    assert "dossier_lab.undumpable" in outcome["server"], outcome  # the parent is the server
    assert outcome["kernel_dumpable"] == 1, outcome  # its kernels start as before


def test_start_up_files_the_team_plants_have_no_effect(hub: Hub, lead: str, planted: None) -> None:
    base, headers = f"{hub.url}user/{ARMOEDE}", {"Authorization": f"token {lead}"}
    # the server lists neither the planted kernelspec (with Jupyter's defaults it replaced the
    # Dossier kernel: its own command ran at every kernel start) nor the planted extension
    specs = httpx.get(f"{base}/api/kernelspecs", headers=headers, timeout=30).json()
    assert specs["kernelspecs"]["dossier"]["spec"]["display_name"] == "Dossier"
    lab = httpx.get(f"{base}/lab", headers=headers, timeout=30)
    assert lab.status_code == 200
    assert "dossierhub-planted" not in lab.text
    run = execute(hub.url, ARMOEDE, lead, LOOK_AROUND)  # a new kernel after the planting
    assert run.error is None, run.error
    seen = json.loads(run.stdout)
    assert seen["startup_ran"] is False, "a start-up file in the workspace folder ran"
    home = seen["home"]
    assert not seen["profile"].startswith(home), seen["profile"]
    # what the server reads its configuration from (the kernel has the server's environment)
    for path in (*seen["config_paths"], *seen["data_paths"]):
        assert not path.startswith(home), path
    assert seen["nbmodel"] is False  # no REST route that executes code is installed


def test_no_terminals_language_servers_or_rest_execution(hub: Hub, lead: str) -> None:
    base, headers = f"{hub.url}user/{ARMOEDE}", {"Authorization": f"token {lead}"}
    terminal = httpx.post(f"{base}/api/terminals", headers=headers, timeout=30)
    if terminal.status_code == 200:  # made one: close it before failing
        httpx.delete(f"{base}/api/terminals/{terminal.json()['name']}", headers=headers)
    assert terminal.status_code == 404, terminal.text
    assert httpx.get(f"{base}/lsp/status", headers=headers, timeout=30).status_code == 404
    lab = httpx.get(f"{base}/lab", headers=headers, timeout=30)
    assert '"terminalsAvailable": false' in lab.text  # JupyterLab's launcher offers none
    kernel = httpx.post(f"{base}/api/kernels", headers=headers, json={"name": "dossier"})
    assert kernel.status_code == 201, kernel.text
    try:
        executed = httpx.post(
            f"{base}/api/kernels/{kernel.json()['id']}/execute",
            headers=headers,
            json={"code": "print('unrecorded')"},
            timeout=30,
        )
        assert executed.status_code == 404, executed.text
    finally:
        httpx.delete(f"{base}/api/kernels/{kernel.json()['id']}", headers=headers, timeout=30)


# Modules a member can write beside a notebook (the editor's "New File" is no execution):
# before, `python -m dossier_kernel` ran the folder's dossier_kernel.py at every kernel start
# of a notebook there (another member's too), and IPython put the folder before site-packages,
# so a duckdb.py there ran inside the next person's `db` query, recorded as theirs.
TEAM_FOLDER = "shared-analysis"
MODULE_MARK = "planted-module-ran"
PLANTED_MODULE = (
    "import os, pathlib, sys\n"
    f"(pathlib.Path.home() / {MODULE_MARK!r}).write_text(__name__)\n"
    # then the real module, so nobody notices (-P: the folder is not on the path again)
    "os.execv(sys.executable, [sys.executable, '-P', '-m', 'dossier_kernel', *sys.argv[1:]])\n"
)
LOOK_AT_IMPORTS = """
import json, sys, duckdb, teamhelper
print(json.dumps({"duckdb": duckdb.__file__, "helper": teamhelper.ANSWER, "last": sys.path[-1]}))
"""


@pytest.fixture
def beside_a_notebook(hub: Hub) -> Iterator[Path]:
    """A folder of the workspace with a start-up and a library module planted by a member,
    and a helper module of the team's own, as the workspace's files."""
    folder = hub.home.workspace_dir("armoede")
    owner = workspace_name(hub.home, "armoede")
    team = folder / TEAM_FOLDER
    team.mkdir()
    for name, text in (
        ("dossier_kernel.py", PLANTED_MODULE),
        ("duckdb.py", PLANTED_MODULE),
        ("teamhelper.py", "ANSWER = 42\n"),
    ):
        (team / name).write_text(text)
    for made in (team, *team.iterdir()):
        shutil.chown(made, owner, owner)
    yield team
    shutil.rmtree(team, ignore_errors=True)
    (folder / MODULE_MARK).unlink(missing_ok=True)


def test_modules_beside_a_notebook_run_only_when_imported(
    hub: Hub, beside_a_notebook: Path
) -> None:
    other = hub.token("b.devries")  # another member opens a notebook in that folder
    notebook = f"{TEAM_FOLDER}/analysis.ipynb"
    run = execute(hub.url, ARMOEDE, other, LOOK_AT_IMPORTS, notebook=notebook)
    mark = hub.home.workspace_dir("armoede") / MODULE_MARK
    assert not mark.exists(), f"a planted module ran as {mark.read_text()!r}, unrecorded"
    assert run.error is None, run.error
    seen = json.loads(run.stdout)
    assert "site-packages" in seen["duckdb"], seen  # the installed library, not the folder's
    assert seen["helper"] == 42  # the team's own module beside the notebook still imports
    assert seen["last"] == str(beside_a_notebook)


TAKE_THE_TOKEN = """
const config = JSON.parse(document.getElementById('jupyter-config-data').textContent);
fetch(config.baseUrl + 'api/contents/taken.txt', {method: 'PUT', headers: {
  'Authorization': 'token ' + config.token, 'Content-Type': 'application/json'},
  body: JSON.stringify({type: 'file', format: 'text', content: config.token})});
"""


def test_a_member_cannot_make_a_notebook_trusted_for_the_others(hub: Hub, lead: str) -> None:
    """Any member made a notebook trusted for everyone (POST api/contents/<path>/trust); its
    JavaScript output then ran in the next member's browser and took the token in their page
    config (red team A, measured in Chromium), with which the bridge recorded the taker's
    executions as the colleague's. The server's signature store now keeps none
    (dossier_lab.notary) and the route answers 403. The other way, `trusted` in a cell's
    shared metadata under real-time collaboration, still marks a cell trusted, but a trusted
    output runs no script (test_member_content.py, test_attribution_attacks.py)."""
    contents = f"{hub.url}user/{ARMOEDE}/api/contents/trusted-by-one.ipynb"
    notebook = {
        "cells": [
            {
                "id": "js",
                "cell_type": "code",
                "source": "1",
                "metadata": {},
                "execution_count": 1,
                "outputs": [
                    {
                        "output_type": "display_data",
                        "metadata": {},
                        "data": {"application/javascript": TAKE_THE_TOKEN, "text/plain": "1"},
                    }
                ],
            }
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    author = {"Authorization": f"token {lead}"}
    body = {"type": "notebook", "format": "json", "content": notebook}
    assert httpx.put(contents, json=body, headers=author, timeout=30).status_code == 201
    try:
        # refused (dossier_lab): one member cannot vouch for a notebook for the others; that a
        # cell's shared `trusted` runs no script either is test_member_content.py's
        assert httpx.post(f"{contents}/trust", headers=author, timeout=30).status_code == 403
        other = {"Authorization": f"token {hub.token('b.devries')}"}
        opened = httpx.get(contents, headers=other, timeout=30).json()
        assert opened["content"]["cells"][0]["metadata"].get("trusted") is not True
    finally:
        httpx.delete(contents, headers=author, timeout=30)
