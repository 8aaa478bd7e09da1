"""The hub on PostgreSQL (issue 14): `dossierhub serve` with `hub.db_url` on a real throwaway
PostgreSQL (tests/pg.py), end to end. apply's members become the hub's users and groups in that
database, a workspace keeps running and reachable through the proxy across a hub restart, and
the database password is nowhere a person on the machine could read it: not in HOME's files,
the hub's log, or the hub's command line and environment.

The last test measures the hub API under 20 concurrent requests on PostgreSQL and on SQLite
(the session's `hub`), in the same run; its numbers are printed (pytest -s).
"""

from __future__ import annotations

import os
import signal
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from dossierhub.state.directory import read_directory
from dossierhub.workspaces.servestate import read_serve_state
from dossierhub.workspaces.tokens import read_token
from pg import Postgres

from e2e_hub import Hub

ARMOEDE = "dossier-armoede"
NEWCOMER = "n.nieuw"


def hub_groups(postgres: Postgres) -> dict[str, set[str]]:
    """Every group in the hub's PostgreSQL database with its members, read with psql."""
    rows = postgres.sql(
        "SELECT g.name, coalesce(u.name, '') FROM groups g "
        "LEFT JOIN user_group_map m ON m.group_id = g.id LEFT JOIN users u ON u.id = m.user_id"
    )
    groups: dict[str, set[str]] = {}
    for line in rows.splitlines():
        group, user = line.split("\t")
        groups.setdefault(group, set()).update({user} - {""})
    return groups


def hub_users(postgres: Postgres) -> set[str]:
    return set(postgres.sql("SELECT name FROM users").split())


def test_apply_s_members_are_the_hub_s_users_and_groups_in_postgresql(
    hub_on_postgres: Hub, postgres: Postgres
) -> None:
    hub = hub_on_postgres
    assert not hub.home.hub_db_file.exists()  # no SQLite beside it
    entries = read_directory(hub.home)
    groups, users = hub_groups(postgres), hub_users(postgres)
    for entry in entries:
        assert entry.hub_user in users
        assert groups[entry.group] == {*entry.leads, *entry.analysts}, entry.id
        assert groups[entry.viewer_group] == set(entry.viewers), entry.id
        assert {*entry.leads, *entry.analysts, *entry.viewers} <= users
    manifest = hub.manifest("armoede")
    original = dict(manifest)
    members = manifest["members"]
    manifest["members"] = {**members, "analyst": [*members.get("analyst", []), NEWCOMER]}
    hub.write_manifest("armoede", manifest)
    try:
        applied = hub.apply()  # the running hub is brought in line through its API
        assert applied.returncode == 0, applied.stderr
        assert NEWCOMER in hub_groups(postgres)[ARMOEDE]
        assert NEWCOMER in hub_users(postgres)
    finally:
        hub.write_manifest("armoede", original)
        assert hub.apply().returncode == 0
    assert NEWCOMER not in hub_groups(postgres)[ARMOEDE]


def server_model(hub: Hub, token: str) -> dict:
    response = httpx.get(
        f"{hub.url}hub/api/users/{ARMOEDE}", headers={"Authorization": f"token {token}"}
    )
    assert response.status_code == 200, response.text
    return response.json()["servers"].get("", {})


def workspace_status(hub: Hub, token: str) -> int:
    return httpx.get(
        f"{hub.url}user/{ARMOEDE}/api/status", headers={"Authorization": f"token {token}"}
    ).status_code


def test_a_hub_restart_finds_the_running_workspace_again(
    hub_on_postgres: Hub, postgres: Postgres
) -> None:
    hub = hub_on_postgres
    lead = hub.token("a.jansen")
    assert hub.start(ARMOEDE, lead).status_code in (201, 202)
    assert workspace_status(hub, lead) == 200
    before = server_model(hub, lead)
    assert before["ready"]
    assert postgres.sql("SELECT count(*) FROM spawners WHERE server_id IS NOT NULL").strip() == "1"
    state = read_serve_state(hub.home)
    assert state is not None
    hub_pid = int(hub.home.hub_pid_file.read_text())
    os.kill(state.serve_pid, signal.SIGHUP)  # what apply does when dossiers come or go
    deadline = time.monotonic() + 60
    while (current := read_serve_state(hub.home)) is None or current.started == state.started:
        assert time.monotonic() < deadline, "the hub did not restart"
        time.sleep(0.2)
    assert int(hub.home.hub_pid_file.read_text()) != hub_pid  # a new hub process
    after = server_model(hub, lead)
    assert after["ready"] and after["started"] == before["started"]  # the same server, resumed
    assert workspace_status(hub, lead) == 200  # still reachable through the proxy


def test_the_password_is_in_no_file_log_command_line_or_environment(
    hub_on_postgres: Hub, postgres: Postgres
) -> None:
    hub = hub_on_postgres
    secret = postgres.password.encode()
    root = hub.home.root.parent  # HOME and serve's log (with the hub's) beside it
    log = hub.log.read_bytes()
    assert b"Running JupyterHub version" in log  # the hub's own log is in serve's
    seen = set()
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            seen.add(path)
            assert secret not in path.read_bytes(), f"the database password is in {path}"
    home = hub.home
    assert {hub.log, home.hub_config_file, home.effective_settings_file, home.settings_file} <= seen
    hub_pid = int(hub.home.hub_pid_file.read_text())
    for pid in (hub_pid, hub.serve.pid):
        for part in ("cmdline", "environ"):
            assert secret not in Path(f"/proc/{pid}/{part}").read_bytes(), f"{pid} {part}"


def api_p95(hub: Hub, concurrent: int = 20, rounds: int = 6) -> tuple[float, float]:
    """GET /hub/api/users through the proxy, `concurrent` at once, `rounds` times: the p95 and
    the median in milliseconds."""
    headers = {"Authorization": f"token {read_token(hub.home, 'service')}"}
    url = f"{hub.url}hub/api/users"

    def one(client: httpx.Client) -> float:
        started = time.perf_counter()
        response = client.get(url, headers=headers)
        assert response.status_code == 200, response.text
        return (time.perf_counter() - started) * 1000

    times: list[float] = []
    with httpx.Client(timeout=30, limits=httpx.Limits(max_connections=concurrent)) as client:
        one(client)  # warm: the hub's first token lookup
        with ThreadPoolExecutor(concurrent) as pool:
            for _ in range(rounds):
                times += pool.map(lambda _: one(client), range(concurrent))
    return statistics.quantiles(times, n=20)[18], statistics.median(times)


def test_hub_api_p95_under_20_concurrent_requests_postgresql_vs_sqlite(
    hub_on_postgres: Hub, hub: Hub
) -> None:
    measured = {"PostgreSQL": api_p95(hub_on_postgres), "SQLite": api_p95(hub)}
    for name, (p95, median) in measured.items():
        print(
            f"\nhub API GET /hub/api/users, 20 at once x 6: {name} p95 {p95:.0f} ms, "
            f"median {median:.0f} ms"
        )
        assert p95 < 5000, f"{name}: the hub API's p95 is {p95:.0f} ms"
