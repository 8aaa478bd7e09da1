"""HOME/hub/serve.json: where the running hub answers, written by `dossierhub serve` after each
hub (re)start and removed when serve stops. apply, provisioning and the hub API client read it to
find the hub; a file left by a serve that died (its pid gone) reads as no hub at all."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass

from dossierhub.state.atomic import write_json
from dossierhub.state.home import Home


@dataclass(frozen=True)
class ServeState:
    serve_pid: int  # the `dossierhub serve` process, which restarts the hub on SIGHUP
    hub_api: str  # the hub's REST API, http://127.0.0.1:<port>/hub/api
    public_url: str  # where people open the hub
    role_ids: tuple[str, ...]  # the dossiers whose roles the running hub was configured with
    started: float  # time.time() of the hub start

    @classmethod
    def now(cls, hub_api: str, public_url: str, role_ids: list[str]) -> ServeState:
        return cls(os.getpid(), hub_api, public_url, tuple(role_ids), time.time())


def write_serve_state(home: Home, state: ServeState) -> None:
    write_json(home.serve_state_file, dataclasses.asdict(state))


def clear_serve_state(home: Home) -> None:
    home.serve_state_file.unlink(missing_ok=True)


def read_serve_state(home: Home) -> ServeState | None:
    """The running serve's state, or None when no serve runs for this HOME."""
    try:
        raw = json.loads(home.serve_state_file.read_text())
        state = ServeState(
            int(raw["serve_pid"]),
            str(raw["hub_api"]),
            str(raw["public_url"]),
            tuple(str(i) for i in raw["role_ids"]),
            float(raw["started"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(state.serve_pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, under another user
    return state
