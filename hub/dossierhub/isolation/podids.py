"""Numeric identities of dossier workspaces on Kubernetes: one uid (and the gid of the same
number) per dossier, handed out once, kept in HOME/hub/pod-ids.json and never handed out again.

A pod runs as numbers, not names: the files its dossier writes on HOME's shared volume carry
them, so the number must be the dossier's for as long as those files exist, and no other
dossier may ever get it. The simplest rule that guarantees this is to never reuse a number at
all: the file keeps every dossier it ever served, and the next number only grows (there are
two billion). Why not the machine's Unix accounts, as the local spawner uses: a hub pod's
/etc/passwd is rebuilt with its image, and the nodes that run workspaces have their own, so
neither can be where a dossier's number lives; HOME, on the shared volume every part mounts,
can. Numbers start at FIRST_ID, above the ranges Linux distributions give accounts (and
Zero to JupyterHub's default 1000), so a workspace never shares an owner with a node's user.

A report run on Kubernetes (reports.backend: kubernetes, reports/jobs.py) runs as a second
number of the dossier's, never its workspace's, as a local report kernel runs as
`<prefix>r-<id>` rather than `<prefix>-<id>`: `report_pod_id`, kept in the same file under the
key `<id>/report` (no dossier id holds a slash) and drawn from the same never-reused count.

The recorder of a workspace pod (its `recorder` container, workspaces/netbridge.py in pod mode,
the pod's only way in) runs as a third number, `recorder_pod_id`, key `<id>/recorder`: never the
workspace's, so no kernel can signal, trace or impersonate it, and never the report's.

Concurrency-safe: two applies or hub starts at once hand out different numbers (a file lock
around read, add, atomic write).
"""

from __future__ import annotations

import json

from filelock import FileLock

from dossierhub.state.atomic import write_json
from dossierhub.state.home import Home

FIRST_ID = 200_000
LAST_ID = 2**31 - 1  # Kubernetes' runAsUser is an int64, but filesystems and NFS take 32 bits


class PodIdsError(Exception):
    """HOME/hub/pod-ids.json is not as this module writes it: never guess a number then."""


def _read(home: Home) -> dict[str, int]:
    path = home.pod_ids_file
    if not path.exists():
        return {}
    try:
        ids = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PodIdsError(f"{home.relative(path)} is unreadable: {exc}") from None
    if not isinstance(ids, dict) or not all(
        isinstance(key, str) and isinstance(value, int) and FIRST_ID <= value <= LAST_ID
        for key, value in ids.items()
    ):
        raise PodIdsError(
            f"{home.relative(path)} must map dossier ids to numbers from {FIRST_ID}: restore it "
            "from the backup (a guessed number could give one dossier another's files)"
        )
    if len(set(ids.values())) != len(ids):
        raise PodIdsError(f"{home.relative(path)} gives two dossiers the same number")
    return ids


REPORT_KEY = "{}/report"
RECORDER_KEY = "{}/recorder"


def pod_ids(home: Home) -> dict[str, int]:
    """Every dossier's workspace number handed out so far (read only)."""
    return {key: number for key, number in _read(home).items() if "/" not in key}


def report_pod_ids(home: Home) -> dict[str, int]:
    """Every dossier's report number handed out so far (read only)."""
    suffix = REPORT_KEY.format("")
    return {
        key.removesuffix(suffix): number
        for key, number in _read(home).items()
        if key.endswith(suffix)
    }


def pod_id(home: Home, dossier_id: str) -> int:
    """The dossier's uid (and gid): its number if it has one, else the next never used."""
    return _hand_out(home, dossier_id)


def report_pod_id(home: Home, dossier_id: str) -> int:
    """The uid (and gid) of the dossier's report runs as Jobs: never its workspace's."""
    return _hand_out(home, REPORT_KEY.format(dossier_id))


def recorder_pod_id(home: Home, dossier_id: str) -> int:
    """The uid (and gid) of the workspace pod's recorder: never its workspace's or report's."""
    return _hand_out(home, RECORDER_KEY.format(dossier_id))


def recorder_pod_ids(home: Home) -> dict[str, int]:
    """Every dossier's recorder number handed out so far (read only)."""
    suffix = RECORDER_KEY.format("")
    return {
        key.removesuffix(suffix): number
        for key, number in _read(home).items()
        if key.endswith(suffix)
    }


def _hand_out(home: Home, key: str) -> int:
    known = _read(home).get(key)
    if known is not None:
        return known  # the common case takes no lock
    home.pod_ids_lock_file.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(home.pod_ids_lock_file):
        ids = _read(home)  # again, under the lock: another may have added it meanwhile
        if key in ids:
            return ids[key]
        number = max(ids.values(), default=FIRST_ID - 1) + 1
        if number > LAST_ID:
            raise PodIdsError(f"{home.relative(home.pod_ids_file)}: no numbers left")
        ids[key] = number
        home.pod_ids_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_json(home.pod_ids_file, ids, indent=1, mode=0o600)
        return number
