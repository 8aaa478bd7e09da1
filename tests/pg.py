"""A throwaway PostgreSQL for the tests of the hub on PostgreSQL (issue 14): Debian's server
binaries (`./install.sh --dev` installs them), one cluster in a temp folder, fsync off,
listening on a free port of 127.0.0.1 and a Unix socket in that folder, with one database and
one role that logs in with a password over TCP (scram-sha-256), as the hub will in production.

Run as root the cluster belongs to the `postgres` user (the server refuses to run as root).
Without the binaries the tests are skipped, except in CI (CI=true), where that is a failure.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    database: str
    user: str
    password: str
    socket_dir: Path
    psql: Path
    run_as: list[str]  # the prefix that runs a server binary as the cluster's owner

    @property
    def url(self) -> str:
        """The URL as settings.yaml holds it: no password (that is in a file)."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.database}"

    def sql(self, statement: str) -> str:
        """One statement as the superuser over the socket; its rows, tab-separated."""
        where = ["-h", str(self.socket_dir), "-p", str(self.port), "-d", self.database]
        quiet = ["-XAtq", "-F", "\t"]  # no psqlrc, unaligned, rows only, tab-separated
        result = subprocess.run(
            [*self.run_as, str(self.psql), *where, "-U", "postgres", *quiet, "-c", statement],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout


def ephemeral_port() -> int:
    """A free port the kernel picks, away from the 18000s where the test hubs look for theirs."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_bin() -> Path | None:
    """The newest Debian PostgreSQL server's bin folder (/usr/lib/postgresql/N/bin)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name)
    )
    return found[-1].parent if found else None


@pytest.fixture(scope="session", name="postgres")
def postgres_server() -> Iterator[Postgres]:
    bindir = postgres_bin()
    if bindir is None:
        why = "PostgreSQL's server is not installed (./install.sh --dev installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    with throwaway_postgres(bindir) as server:
        yield server


@contextlib.contextmanager
def throwaway_postgres(bindir: Path, fsync: bool = False) -> Iterator[Postgres]:
    """A cluster up for the `with` block (also used by the benches); its folder, data and
    server go at the end whatever happened. `fsync`: commits wait for the disk, as a
    production server's do (bench/bench_audit_store.py, against the file log's fsync)."""
    root = Path(tempfile.mkdtemp(prefix="dossierhub-pg-", dir="/tmp"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(root, owner.pw_uid, owner.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", ephemeral_port()

    def server_binary(name: str, *args: str) -> None:
        done = subprocess.run(
            [*run_as, str(bindir / name), "-D", str(data), *args], capture_output=True, text=True
        )
        assert done.returncode == 0, f"{name}: {done.stdout}{done.stderr}"

    try:
        pwfile = root / "superuser"  # initdb wants one to set up scram for TCP; never used
        pwfile.write_text(secrets.token_urlsafe(18))
        if run_as:
            shutil.chown(pwfile, "postgres")
        auth = ["--auth-local=trust", "--auth-host=scram-sha-256"]
        server_binary("initdb", "-U", "postgres", "--pwfile", str(pwfile), *auth, "--no-sync")
        no_fsync = "" if fsync else "-F "
        options = f"{no_fsync}-k {root} -p {port} -c listen_addresses=127.0.0.1"
        server_binary("pg_ctl", "-o", options, "-w", "-l", str(root / "server.log"), "start")
        try:
            server = Postgres(
                "127.0.0.1", port, "postgres", "postgres", "", root, bindir / "psql", run_as
            )
            password = secrets.token_urlsafe(18)
            server.sql(f"CREATE ROLE jupyterhub LOGIN PASSWORD '{password}'")
            server.sql("CREATE DATABASE jupyterhub OWNER jupyterhub")
            yield replace(server, database="jupyterhub", user="jupyterhub", password=password)
        finally:
            server_binary("pg_ctl", "-m", "immediate", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)
