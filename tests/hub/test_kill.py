"""kill -9 of apply at random moments always leaves complete, readable extracts."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import duckdb
import pytest

from dossierhub.demo import write_demo
from dossierhub.state.home import Home

from helpers import DOSSIERHUB, run_cli

KILLS = 12


def check_complete(home: Path) -> str:
    """Open as a workspace would; every view must match the current provenance exactly."""
    folder = home / "extracts" / "armoede"
    provenance = json.loads((folder / "provenance.json").read_text())
    con = duckdb.connect(str(folder / "catalog.duckdb"), read_only=True)
    try:
        con.execute(f"SET file_search_path = '{folder}'")
        views = {
            r[0]
            for r in con.execute(
                "SELECT view_name FROM duckdb_views() WHERE NOT internal"
            ).fetchall()
        }
        assert (
            views == set(provenance["views"]) == {"residents", "households", "incomes", "payments"}
        )
        for view, entry in provenance["views"].items():
            count = con.execute(f'SELECT count(*) FROM "{view}"').fetchall()[0][0]
            assert count == entry["rows_out"] > 0
            data = (folder / entry["file"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    finally:
        con.close()
    return provenance["generation"]


@pytest.mark.slow
def test_kill_at_random_moments(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert run_cli(home, "init").exit_code == 0
    write_demo(Home(home), size=60_000, seed=3, log=lambda text: None)
    (home / "dossiers" / "mobiliteit.yaml").unlink()
    assert run_cli(home, "apply").exit_code == 0
    generations = {check_complete(home)}

    env = {**os.environ, "DOSSIERHUB_HOME": str(home)}
    command = [DOSSIERHUB, "apply", "armoede", "--force"]
    started = time.perf_counter()
    assert subprocess.run(command, env=env, capture_output=True, check=False).returncode == 0
    duration = time.perf_counter() - started
    generations.add(check_complete(home))

    rng = random.Random(20261128)
    mid_build = 0
    folder = home / "extracts" / "armoede"
    for kill in range(KILLS):
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        if kill % 2:  # any moment, start-up and swap included
            time.sleep(rng.uniform(0.3, duration))
        else:  # surely mid-build, whatever the machine's load: once a build folder exists
            deadline = time.monotonic() + 4 * duration
            while process.poll() is None and time.monotonic() < deadline:
                if any(e.name.startswith("..tmp-") for e in folder.iterdir()):
                    time.sleep(rng.uniform(0, 0.05))
                    break
                time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        process.wait()
        mid_build += any(e.name.startswith("..tmp-") for e in folder.iterdir())
        generations.add(check_complete(home))
    # the kills landed while building, and some applies finished between them
    assert mid_build >= 3, f"only {mid_build} of {KILLS} kills hit a build in progress"

    final = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert final.returncode == 0, final.stderr
    check_complete(home)
    leftovers = [
        e.name
        for e in (home / "extracts" / "armoede").iterdir()
        if e.name.startswith("..tmp-") or e.name.endswith(".new")
    ]
    assert leftovers == []
    assert run_cli(home, "audit", "verify").exit_code == 0
