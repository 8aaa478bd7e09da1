"""The benchmarks still run (tiny smoke mode); their targets are judged by full runs only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from dossierhub.state.settings import load_settings
from dossierhub.workspaces.hubconfig import ports
from dossierhub.workspaces.tokens import read_token

from e2e_hub import LEAD, Hub

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_extract_benchmark_smoke() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH / "bench_extracts.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    for figure in ("build_unique", "build_repeated", "group_by_cpu", "extract_size"):
        assert "ratio" in lines[figure], figure
    assert "GiB" in lines["apply_peak_memory"]


def test_differencing_benchmark_smoke() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH / "bench_differencing.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    for figure in ("10_released", "2_released_5000_rows"):
        assert "ratio" in lines[figure], figure


def test_audit_store_benchmark_smoke() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH / "bench_audit_store.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if "PostgreSQL's server is not installed" in result.stdout and os.environ.get("CI") != "true":
        pytest.skip(result.stdout.strip())  # as tests/pg.py: in CI a missing server fails
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    for figure in ("one_process", "2_processes"):
        assert "ratio postgresql/file" in lines[figure], figure


def armoede_route(hub: Hub) -> str:
    """Where the proxy sends armoede's workspace (configurable-http-proxy's REST API)."""
    answer = httpx.get(
        f"http://127.0.0.1:{ports(load_settings(hub.home))[1]}/api/routes/user/dossier-armoede",
        headers={"Authorization": f"token {read_token(hub.home, 'proxy')}"},
    )
    return answer.raise_for_status().json()["target"]


def test_attribution_benchmark_smoke(hub: Hub, capsys: pytest.CaptureFixture[str]) -> None:
    """On the session hub's armoede workspace: a few executions through the recording bridge
    and a plain pump, the route switched between them and put back. In this process: the
    benchmark's imports are this session's already (a new Python would take seconds)."""
    token = hub.token(LEAD)
    hub.ensure_running("dossier-armoede", token)
    before = armoede_route(hub)
    sys.path.insert(0, str(BENCH))
    try:
        from bench_attribution import main as bench_main
    finally:
        sys.path.remove(str(BENCH))
    proxy_api = f"http://127.0.0.1:{ports(load_settings(hub.home))[1]}"
    code = bench_main(
        [
            "--smoke",
            f"--home={hub.home.root}",
            f"--url={hub.url}",
            f"--token={token}",
            f"--proxy-api={proxy_api}",
            "--dossier=armoede",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    lines = {line.split()[0]: line for line in printed.splitlines() if line.strip()}
    assert "ratio" in lines["attribution_cost"]
    # each arm's own process CPU per execution: the bridge's and both pumps' (three figures)
    assert lines["cpu_per_execution"].count(" us") == 2  # "NNN us", "NNN / NNN us"
    assert "MiB" in lines["server_memory"] and "MiB" in lines["bridge_memory"]
    assert armoede_route(hub) == before  # the hub's route, put back
