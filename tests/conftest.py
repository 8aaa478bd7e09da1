"""Shared fixtures: small, real HOME folders built with the product's own commands, and one
real hub (dossierhub serve with its proxy on 127.0.0.1) for the e2e and security tests."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dossierhub.demo import write_demo
from dossierhub.isolation.podspec import RECORDER_PYTHON
from dossierhub.state.atomic import write_atomic
from dossierhub.state.directory import read_directory
from dossierhub.state.home import Home
from dossierhub.state.settings import KubernetesSettings, load_settings
from dossierhub.workspaces.hub_auth import read_passwords, set_password
from dossierhub.workspaces.hubconfig import ports
from dossierhub.workspaces.servestate import read_serve_state
from pg import Postgres, postgres_server  # noqa: F401 - the fixture `postgres`, for every test
from test_types import MYPY_STARTED, start_mypy

from e2e_hub import (
    ADMIN,
    DOSSIERHUB,
    PASSWORD,
    Hub,
    free_ports,
    reachable_python,
    release_identities,
)
from helpers import SMALL, run_cli


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """mypy's test (tests/test_types.py) selected: mypy starts now, beside the other tests,
    and its test, moved to the end, reads its verdict."""
    mypy = [i for i in items if i.name == "test_mypy_finds_no_error_in_hub_and_kernels"]
    if not mypy or config.option.collectonly:
        return
    items.remove(mypy[0])
    items.append(mypy[0])
    config.stash[MYPY_STARTED] = start_mypy()


def pytest_unconfigure(config: pytest.Config) -> None:
    """A session that ended before mypy's test (-x, ^C) leaves no mypy running."""
    process = config.stash.get(MYPY_STARTED, None)
    if process is not None and process.poll() is None:
        process.kill()
        process.communicate()


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Raw demo data, catalog and manifests for SMALL residents, generated once per session."""
    root = tmp_path_factory.mktemp("demo-data")
    assert run_cli(root, "init").exit_code == 0
    write_demo(Home(root), size=SMALL, seed=7, log=lambda text: None)
    return root


@pytest.fixture
def home(demo_data: Path, tmp_path: Path) -> Path:
    """A fresh, initialised, not yet applied HOME with the demo catalog and dossiers."""
    root = tmp_path / "home"
    shutil.copytree(demo_data, root, symlinks=True)
    return root


@pytest.fixture(scope="session")
def applied_demo_data(demo_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`demo_data` applied once per session; `applied_home` hands each module a copy (apply
    is seconds of CPU, the copy milliseconds: the HOME holds no absolute path and, off
    Kubernetes and without a hub, only root's files, so a copy is the same HOME)."""
    root = tmp_path_factory.mktemp("applied-demo") / "home"
    shutil.copytree(demo_data, root, symlinks=True)
    result = run_cli(root, "apply")
    assert result.exit_code == 0, result.stderr
    return root


@pytest.fixture(scope="module")
def applied_home(applied_demo_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A HOME with the demo dossiers applied, shared by the read-only tests of a module."""
    root = tmp_path_factory.mktemp("applied") / "home"
    shutil.copytree(applied_demo_data, root, symlinks=True)
    return root


@pytest.fixture(scope="session")
def hub() -> Iterator[Hub]:
    if os.geteuid() != 0:
        pytest.skip("the e2e tests check workspace isolation, which needs root")
    with serving({}, os.environ.get("DOSSIERHUB_TEST_PREFIX", "dht")) as running:
        yield running


@pytest.fixture(scope="module")
def hub_on_postgres(postgres: Postgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """A second hub like `hub`, its database on the throwaway PostgreSQL, the password in a
    file outside HOME; Unix users of their own (`<prefix>p-<id>`), so both hubs may run."""
    if os.geteuid() != 0:
        pytest.skip("the e2e tests check workspace isolation, which needs root")
    password_file = tmp_path_factory.mktemp("secrets") / "db-password"
    password_file.write_text(postgres.password + "\n")
    os.chmod(password_file, 0o600)
    database = {"db_url": postgres.url, "db_password_file": str(password_file)}
    prefix = os.environ.get("DOSSIERHUB_TEST_PREFIX", "dht")[:5] + "p"
    with serving(database, prefix) as running:
        yield running


@pytest.fixture(scope="module")
def hub_on_standin(k8s_standin_module: Any) -> Iterator[Hub]:  # tests/k8s/standin.py StandIn
    """A hub like `hub` whose workspaces are pods on the Kubernetes stand-in (found only by
    tests under tests/k8s, where the stand-in's fixtures are); Unix users `<prefix>k-<id>`."""
    if os.geteuid() != 0:
        pytest.skip("the e2e tests check workspace isolation, which needs root")
    prefix = os.environ.get("DOSSIERHUB_TEST_PREFIX", "dht")[:5] + "k"
    with serving_on_standin(k8s_standin_module, prefix) as running:
        yield running


@contextlib.contextmanager
def serving_on_standin(k8s: Any, prefix: str) -> Iterator[Hub]:
    """`serving` with hub.spawner and reports.backend kubernetes on the stand-in `k8s`: its
    API server and kubeconfig, HOME as its home volume claim, the workspace Python in its
    image."""
    python_env = str(Path(reachable_python()).parents[1])
    if python_env not in k8s.kubelet.image:
        k8s.kubelet.image.append(python_env)
    # the workspace image's recorder interpreter, with its file capability (podspec.py)
    recorder = Path(reachable_python()).parent / RECORDER_PYTHON
    if not recorder.exists():
        shutil.copy(Path(reachable_python()).resolve(), recorder)
    k8s.kubelet.file_capabilities[str(recorder)] = {"NET_BIND_SERVICE"}
    kubernetes = {
        "api_url": k8s.api_url,
        "namespace": "default",
        "image": "standin/dossierhub-workspace:test",  # the stand-in runs the host's Python
    }
    with serving(
        {"spawner": "kubernetes"},
        prefix,
        # report runs as Jobs too, as the service runs them on a cluster
        sections={"kubernetes": kubernetes, "reports": {"backend": "kubernetes"}},
        env={"KUBECONFIG": str(k8s.kubeconfig)},
    ) as running:
        k8s.kubelet.claims[KubernetesSettings().home_claim] = running.home.root
        # pods have a network of their own: they reach the proxy, hub and service (as their
        # env names them, at 127.0.0.1) because the stand-in's kubelet forwards these ports
        public, _, hub_port, service_port = ports(load_settings(running.home))
        k8s.kubelet.egress.update({public, hub_port, service_port})
        yield running


@contextlib.contextmanager
def serving(
    hub_settings: dict,
    prefix: str,
    *,
    sections: dict | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[Hub]:
    """`dossierhub serve` on a new demo HOME with `hub_settings` added to settings.yaml's hub
    section and `sections` as sections of their own, `env` added to serve's environment, its
    Unix users named `<prefix>-<id>` (DOSSIERHUB_TEST_PREFIX lets two test sessions run side
    by side)."""
    remove_dead_hubs()
    root = Path(tempfile.mkdtemp(prefix="dossierhub-e2e-", dir="/tmp"))
    os.chmod(root, 0o711)
    home = Home(root / "home")
    subprocess.run([DOSSIERHUB, "--home", str(home.root), "init"], check=True, capture_output=True)
    write_demo(home, size=2000, seed=11, log=lambda text: None)
    base = free_ports()
    (home.settings_file).write_text(
        yaml.safe_dump(
            {
                "hub": {
                    "port": base,
                    "expiry_check_seconds": 5,
                    "admins": [ADMIN],
                    **hub_settings,
                },
                "workspaces": {"python": reachable_python(), "auth_cache_seconds": 2},
                # Unix users of its own, so a dossierhub installed on this machine keeps its own
                "isolation": {"prefix": prefix},
                **(sections or {}),
            }
        )
    )
    applied = subprocess.run(
        [DOSSIERHUB, "--home", str(home.root), "apply"], capture_output=True, text=True, check=False
    )
    assert applied.returncode == 0, applied.stderr
    people = {p for e in read_directory(home) for p in (*e.workers, *e.viewers)}
    set_everyones_password(home, sorted(people | {"s.vreemd", ADMIN}))
    log = root / "serve.log"
    with log.open("w") as handle:
        serve = subprocess.Popen(
            [DOSSIERHUB, "--home", str(home.root), "serve"],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    try:
        deadline = time.monotonic() + 90
        while read_serve_state(home) is None:
            assert serve.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        running = Hub(home, f"http://127.0.0.1:{base}/", serve, log)
        api = running.api()
        api.create_users(["s.vreemd", ADMIN])  # a stranger (no dossier) and an admin
        api.close()
    except BaseException:  # a hub that did not start leaves no HOME or users behind either
        serve.send_signal(signal.SIGTERM)
        serve.wait(60)
        release_identities(home)
        shutil.rmtree(root, ignore_errors=True)
        raise
    try:
        yield running
    finally:
        stop_serving(running, root)


def set_everyones_password(home: Home, people: list[str]) -> None:
    """PASSWORD for each of `people`: `set_password` for the first, its stored hash copied to
    the others (one scrypt hash takes about a third of a second; a hub has some fifteen
    people, who all have the same password here anyway)."""
    set_password(home.passwords_file, people[0], PASSWORD)
    stored = read_passwords(home.passwords_file)[people[0]]
    table = {person: stored for person in people}
    write_atomic(home.passwords_file, json.dumps(table, indent=1, sort_keys=True), mode=0o600)


def stop_serving(running: Hub, root: Path) -> None:
    try:
        api = running.api()
        for name in api.users():
            if name.startswith("dossier-"):
                api.stop_server(name)
        api.close()
    finally:  # whatever failed above, the hub and its proxy and service go
        running.serve.send_signal(signal.SIGTERM)
        running.serve.wait(60)
        release_identities(running.home)
    if not os.environ.get("DOSSIERHUB_KEEP_E2E"):
        shutil.rmtree(root, ignore_errors=True)


def remove_dead_hubs() -> None:
    """A test session that was killed leaves its HOME, which owns the test users' names: one
    whose serve is gone (and that is not being set up right now) is removed with its users."""
    for root in Path("/tmp").glob("dossierhub-e2e-*"):
        home = Home(root / "home")
        if read_serve_state(home) is None and time.time() - root.stat().st_mtime > 120:
            release_identities(home)
            shutil.rmtree(root, ignore_errors=True)
