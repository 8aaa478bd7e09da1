"""A kernel kept ready for a dossier's next report run must be out of the workspace's reach:
a workspace that can connect to it can put code in every report that runs there (such as a
hook that prints row-level data into the report, past the output checks)."""

from __future__ import annotations

import json
import re

import dossier_kernel

from e2e_hub import Hub

DOSSIER = "armoede"

FIND_AND_HOOK = """
import glob, json, os
from jupyter_client import BlockingKernelClient

def candidates(home, dossier):
    found = set()
    for folder, dirs, files in walk(home, dossier, temp=True):
        found.update(os.path.join(folder, name) for name in files if name.endswith('.json'))
    for cmdline in glob.glob('/proc/[0-9]*/cmdline'):
        try:
            words = open(cmdline, 'rb').read().decode(errors='replace').split('\\0')
        except OSError:
            continue
        found.update(b for a, b in zip(words, words[1:]) if a == '-f' and b.endswith('.json'))
    return found

def connection(path):
    data = read_regular(path, limit=65536)
    try:
        info = json.loads(data) if data else None
    except ValueError:
        return None
    if isinstance(info, dict) and 'key' in info and ('shell_port' in info or 'transport' in info):
        return info
    return None

HOOK = '''
def _dossier_leak(result=None):
    rows = get_ipython().user_ns['db'].sql('SELECT bsn FROM residents LIMIT 5').fetchall()
    print('leaked rows:', [row[0] for row in rows])
get_ipython().events.register('post_run_cell', _dossier_leak)
'''

def attack(home, dossier, mine):
    from ipykernel.connect import get_connection_file
    own = os.path.realpath(get_connection_file())
    report = []
    for path in sorted(candidates(home, dossier)):
        real = os.path.realpath(path)
        if real == own or any(kernel_id in os.path.basename(path) for kernel_id in mine):
            continue  # this workspace's own kernels
        if connection(path) is None:
            continue
        client = BlockingKernelClient(connection_file=path)
        try:
            client.load_connection_file()
            client.start_channels()
            client.wait_for_ready(timeout=5)
            reply = client.execute_interactive(HOOK, timeout=10)
            report.append([path, 'hooked' if reply['content']['status'] == 'ok' else 'error'])
        except Exception as error:
            report.append([path, f'unreachable: {type(error).__name__}'])
        finally:
            client.stop_channels()
    return report
"""


def test_report_kernels_are_unreachable(hub: Hub, workspace, reports, host) -> None:
    before = host.kernel_processes()
    first = reports.run("district_profile", {"district": "Zuid"})
    assert first["status"] == "succeeded", first["error"]
    ready = host.wait_for_new_kernel(before)  # the kernel kept ready for the next run
    report_kernel_files = host.connection_files(ready)

    mine = sorted(workspace.kernel_ids())
    output = workspace.run(
        workspace.attacker_walk
        + FIND_AND_HOOK
        + f"print('found:', json.dumps(attack({str(hub.home.root)!r}, {DOSSIER!r}, {mine!r})))"
    )
    found = json.loads(output.split("found:", 1)[1])
    hooked = [path for path, outcome in found if outcome == "hooked"]
    readable = [path for path, _ in found if path in report_kernel_files]

    second = reports.run("district_profile", {"district": "Noord"})
    folder = reports.folder(second["run_id"])
    catalog = hub.home.extract_dir(DOSSIER) / "catalog.duckdb"
    with dossier_kernel.connect(catalog) as db:  # as README shows, here as root
        pseudonyms = {
            value
            for row in db.execute("SELECT * FROM residents").fetchall()
            for value in row
            if isinstance(value, str) and re.fullmatch(r"[0-9a-f]{32}", value)
        }
    assert pseudonyms, "the residents view holds no pseudonyms to look for"
    leaked = {}
    for name in ("report.ipynb", "report.html"):
        path = folder / name
        if path.exists():
            text = path.read_text(errors="replace")
            shown = set(re.findall(r"[0-9a-f]{32}", text)) & pseudonyms
            if shown:
                leaked[name] = sorted(shown)
    assert not leaked and not hooked and not readable, (
        f"the workspace read the connection files {readable} of the report kernel kept ready, "
        f"connected through {hooked} and registered a hook; the next run "
        f"({second['status']}) shows residents' pseudonyms: {leaked}"
    )
    assert second["status"] == "succeeded", second["error"]
