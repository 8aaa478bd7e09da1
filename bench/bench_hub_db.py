"""The hub on PostgreSQL vs SQLite (issue 14), in one run on this machine: the same burst as
bench_workspaces.py (N dossier workspaces started at once, the hub API's p95 latency while
they start), first with the hub's database in SQLite under HOME, then on a throwaway
PostgreSQL (tests/pg.py; Debian's server, installed by ./install.sh --dev).

Needs root (workspace isolation), like the e2e tests.
    .venv/bin/python bench/bench_hub_db.py [--workspaces 20] [--smoke]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_workspaces import LEAD, burst, setup_dossierhub
from dossierhub.state.home import Home
from pg import postgres_bin, throwaway_postgres

from e2e_hub import DOSSIERHUB, release_identities


def run_burst(label: str, count: int, hub: dict) -> bool:
    """One hub with `hub` in its settings, `count` workspaces at once; its line printed."""
    root = Path(tempfile.mkdtemp(prefix="dossierhub-bench-", dir="/tmp"))
    os.chmod(root, 0o711)
    serve = None
    try:
        serve, url, home = setup_dossierhub(root, count, hub)
        token = subprocess.run(
            [DOSSIERHUB, "--home", str(home.root), "token", LEAD],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        print(f"{label}:", flush=True)
        return burst(url, token, count)
    finally:
        if serve is not None:
            serve.send_signal(signal.SIGTERM)
            serve.wait(120)
        release_identities(Home(root / "home"))
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workspaces", type=int, default=20)
    parser.add_argument("--smoke", action="store_true", help="2 workspaces")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root: workspaces run as their own Unix users")
        return 1
    bindir = postgres_bin()
    if bindir is None:
        print("PostgreSQL's server is not installed (./install.sh --dev installs it)")
        return 1
    count = 2 if args.smoke else args.workspaces
    ok = run_burst("SQLite (hub/jupyterhub.sqlite)", count, {})
    with throwaway_postgres(bindir) as postgres, tempfile.TemporaryDirectory() as secrets:
        password_file = Path(secrets) / "db-password"
        password_file.write_text(postgres.password)
        database = {"db_url": postgres.url, "db_password_file": str(password_file)}
        ok &= run_burst(f"PostgreSQL ({postgres.url})", count, database)
    if args.smoke:
        print("smoke run: too small to judge the targets")
        return 0
    print("all targets met" if ok else "some targets missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
