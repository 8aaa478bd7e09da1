"""Audit appends per second: the table in PostgreSQL vs the file log, in one run on this
machine (issue 15). Each store gets a HOME of its own (`dossierhub init`; the table one moved
there by `audit migrate`), then `--appends` appends through AuditLog from one process, and the
same number split over `--writers` processes appending at once. PostgreSQL is a throwaway
cluster (tests/pg.py) on this machine's disk with fsync on: each commit waits for the disk, as
each file append's fsync does.

    .venv/bin/python bench/bench_audit_store.py [--appends 2000] [--writers 8] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from dossierhub.cli import main as cli_main
from dossierhub.state.audit import AuditLog
from dossierhub.state.home import Home
from pg import Postgres, postgres_bin, throwaway_postgres

WRITER = """
import sys, time
from pathlib import Path
from dossierhub.state.audit import AuditLog
from dossierhub.state.home import Home
home, go, count = Home(Path(sys.argv[1])), Path(sys.argv[2]), int(sys.argv[3])
while not go.exists():
    time.sleep(0.002)
for i in range(count):
    AuditLog(home).append("bench.append", i=i)
"""


def cli(home: Path, *args: str) -> None:
    try:
        cli_main(["--home", str(home), *args], standalone_mode=False)
    except SystemExit as exc:
        assert not exc.code, f"dossierhub {' '.join(args)} failed"


def make_home(root: Path, postgres: Postgres | None) -> Path:
    home = root / ("table" if postgres else "file")
    cli(home, "init")
    settings: dict = {"audit": {"witness": "none"}}
    if postgres is not None:
        name = "bench_audit"
        postgres.sql(f"CREATE DATABASE {name} OWNER {postgres.user}")
        secret = root / "db.password"
        secret.write_text(postgres.password)
        url = f"postgresql://{postgres.user}@{postgres.host}:{postgres.port}/{name}"
        settings["hub"] = {"db_url": url, "db_password_file": str(secret)}
        (home / "settings.yaml").write_text(json.dumps(settings))
        cli(home, "audit", "migrate")
        settings["audit"]["store"] = "postgresql"
    (home / "settings.yaml").write_text(json.dumps(settings))
    return home


def one_process(home: Path, count: int) -> float:
    """Appends per second from this process."""
    log_home = Home(home)
    started = time.perf_counter()
    for i in range(count):
        AuditLog(log_home).append("bench.append", i=i)
    return count / (time.perf_counter() - started)


def many_processes(home: Path, count: int, writers: int) -> float:
    """Appends per second, `writers` processes appending count/writers each at once."""
    go = home / "go"
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(home), str(go), str(count // writers)])
        for _ in range(writers)
    ]
    time.sleep(1.5)  # every interpreter up and waiting
    started = time.perf_counter()
    go.touch()
    for proc in procs:
        assert proc.wait() == 0
    took = time.perf_counter() - started
    go.unlink()
    return writers * (count // writers) / took


def verify(home: Path) -> None:
    cli(home, "audit", "verify")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--appends", type=int, default=2000)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--smoke", action="store_true", help="40 appends, 2 writers")
    args = parser.parse_args()
    count, writers = (40, 2) if args.smoke else (args.appends, args.writers)
    bindir = postgres_bin()
    if bindir is None:
        print("PostgreSQL's server is not installed (./install.sh --dev installs it)")
        return 1
    with throwaway_postgres(bindir, fsync=True) as postgres, tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        file_home, table_home = make_home(root, None), make_home(root, postgres)
        figures = {}
        for label, run in (
            ("one_process", lambda h: one_process(h, count)),
            (f"{writers}_processes", lambda h: many_processes(h, count, writers)),
        ):
            file_rate, table_rate = run(file_home), run(table_home)
            figures[label] = (file_rate, table_rate)
            print(
                f"{label} appends/s: file {file_rate:.0f}, postgresql {table_rate:.0f}, "
                f"ratio postgresql/file {table_rate / file_rate:.2f}",
                flush=True,
            )
        for home in (file_home, table_home):
            verify(home)  # every append there, chain intact
    if args.smoke:
        print("smoke run: too small to judge")
    return 0


if __name__ == "__main__":
    sys.exit(main())
