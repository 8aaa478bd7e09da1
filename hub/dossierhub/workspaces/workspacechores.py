"""Root's side of the chores done in a workspace folder AS the workspace (chores.py): clearing
notebook outputs and writing the "Start here" notebook. Loads no data engine: the spawner calls
it inside the JupyterHub process."""

from __future__ import annotations

import json
import subprocess
import sys

from dossierhub.isolation import sandbox
from dossierhub.isolation.podids import pod_ids
from dossierhub.isolation.unixusers import Identity, identities, isolation_enabled, on_pods
from dossierhub.state.home import Home
from dossierhub.state.models import Dossier
from dossierhub.state.settings import load_settings


def clear_outputs(home: Home, dossier_id: str) -> int:
    """Clear the outputs of every notebook in the dossier's workspace (chores.py)."""
    done = run_chore(home, dossier_id, "clear-outputs")
    return int(done or 0)


def start_here_spec(dossier: Dossier) -> dict:
    """What the "Start here" notebook says about `dossier`, from its manifest (root's)."""
    return {
        "id": dossier.id,
        "title": dossier.title,
        "purpose": dossier.purpose,
        "views": {
            name: {"columns": list(view.columns), "pseudonymized": list(view.pseudonymize)}
            for name, view in dossier.sources.items()
        },
        "templates": list(dossier.templates),
        "dossier_url": f"/services/dossierhub/dossiers/{dossier.id}",
    }


def write_start_here(home: Home, dossier: Dossier) -> str | None:
    """Write or refresh the dossier's "Start here" notebook, as the workspace (chores.py):
    "written", "refreshed" or "kept" (a person changed it); None without a workspace folder."""
    return run_chore(home, dossier.id, "start-here", json.dumps(start_here_spec(dossier)))


def workspace_identity(home: Home, dossier_id: str) -> Identity | None:
    """Who owns workspaces/<id> and so does its chores (unixusers.dossier_owner decides the
    owner): its Unix user, or on pods its pod number, which is no user of this machine.
    None when it has none yet: then nothing of the workspace's was written there."""
    if on_pods(home):
        number = pod_ids(home).get(dossier_id)
        return None if number is None else Identity(f"pod {number}", number, number, (number,))
    ids = identities(home, dossier_id)
    return ids.workspace if ids is not None else None


def run_chore(home: Home, dossier_id: str, chore: str, stdin: str = "") -> str | None:
    """Run a chores.py chore in workspaces/<id> as the workspace's identity: in its sandbox
    (no network) when the machine has one. None when there is no workspace folder."""
    folder = home.workspace_dir(dossier_id)
    if not folder.is_dir():
        return None
    settings = load_settings(home)
    python = settings.workspaces.python or sys.executable
    command = [python, "-I", "-m", "dossierhub.workspaces.chores", chore, str(folder)]
    as_identity: dict = {}
    identity = workspace_identity(home, dossier_id) if isolation_enabled() else None
    if isolation_enabled() and identity is None:
        return None  # no workspace identity: nobody of this installation wrote there
    if identity is not None and sandbox.unavailable(settings) is None:
        command = [
            *sandbox.prefix(
                identity,
                ro=sandbox.environment_paths(python),
                rw=[folder],
                chdir=folder,
                network=False,
                die_with_parent=True,
            ),
            *command,
        ]
    elif identity is not None:
        as_identity = {
            "user": identity.uid,
            "group": identity.gid,
            "extra_groups": list(identity.groups),
        }
    try:
        result = subprocess.run(
            command,
            input=stdin,
            capture_output=True,
            text=True,
            cwd="/",
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(folder)},
            timeout=600,
            check=False,
            **as_identity,
        )
    except subprocess.TimeoutExpired:
        raise OSError(f"the {chore} chore in workspace {dossier_id} took over 600 s") from None
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or [f"exit {result.returncode}"])[-1]
        raise OSError(f"the {chore} chore in workspace {dossier_id} failed: {reason}")
    return result.stdout.strip()
