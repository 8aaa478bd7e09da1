"""The hub folder's own state: serve.json (where the running hub answers) and the two tokens serve
mints. apply and provisioning find the hub through serve.json, so a stale or broken file must read
as "no hub", never as a hub that is not there; a token is minted once, private, and audited."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from dossierhub.state.audit import AuditLog
from dossierhub.state.home import Home
from dossierhub.state.init import init_home
from dossierhub.workspaces.servestate import (
    ServeState,
    clear_serve_state,
    read_serve_state,
    write_serve_state,
)
from dossierhub.workspaces.tokens import mint_tokens, read_token


def _home(tmp_path: Path) -> Home:
    home = Home(tmp_path / "home")
    init_home(home)
    AuditLog(home).write_genesis("init")
    return home


def test_serve_state_reads_back_what_serve_wrote(tmp_path: Path) -> None:
    home = _home(tmp_path)
    assert read_serve_state(home) is None
    state = ServeState.now("http://127.0.0.1:8002/hub/api", "http://127.0.0.1:8000/", ["armoede"])
    write_serve_state(home, state)
    assert read_serve_state(home) == state
    clear_serve_state(home)
    assert read_serve_state(home) is None


def test_a_serve_that_died_or_a_broken_file_reads_as_no_hub(tmp_path: Path) -> None:
    home = _home(tmp_path)
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead = ServeState(int(gone.stdout), "http://127.0.0.1:1/hub/api", "http://x/", (), 0.0)
    write_serve_state(home, dead)
    assert read_serve_state(home) is None
    for broken in ("{", "[]", json.dumps({"serve_pid": os.getpid()}), '{"serve_pid": "x"}'):
        home.serve_state_file.write_text(broken)
        assert read_serve_state(home) is None, broken


def test_tokens_are_minted_once_private_and_audited(tmp_path: Path) -> None:
    home = _home(tmp_path)
    mint_tokens(home)
    first = {which: read_token(home, which) for which in ("proxy", "service")}
    assert first["proxy"] != first["service"] and all(len(t) == 64 for t in first.values())
    for path in (home.proxy_token_file, home.service_token_file):
        assert path.stat().st_mode & 0o777 == 0o600
    mint_tokens(home)
    assert {which: read_token(home, which) for which in ("proxy", "service")} == first
    records = [r for r in AuditLog(home).read() if r["action"] == "hub.token"]
    assert sorted(r["details"]["file"] for r in records) == ["hub/proxy.token", "hub/service.token"]
    assert not any(t in json.dumps(records) for t in first.values())
