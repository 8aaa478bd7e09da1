"""Shared fixtures: small, real HOME folders built with the product's own commands."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from dossierhub.cli import main
from dossierhub.demo import write_demo
from dossierhub.home import Home

VENV_BIN = Path(sys.executable).parent
DOSSIERHUB = str(VENV_BIN / "dossierhub")
SMALL = 3000


def run_cli(home: Path, *args: str) -> Result:
    """Run `dossierhub --home HOME ARGS...` in-process, stdout and stderr apart."""
    return CliRunner().invoke(main, ["--home", str(home), *args], catch_exceptions=False)


def run_cli_process(home: Path, *args: str, **kwargs) -> subprocess.CompletedProcess[str]:
    """The same, as a separate process (kill tests, concurrency, exit codes end to end)."""
    env = {**os.environ, "DOSSIERHUB_HOME": str(home)}
    return subprocess.run(
        [DOSSIERHUB, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
        **kwargs,
    )


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


@pytest.fixture(scope="module")
def applied_home(demo_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A HOME with the demo dossiers applied, shared by the read-only tests of a module."""
    root = tmp_path_factory.mktemp("applied") / "home"
    shutil.copytree(demo_data, root, symlinks=True)
    result = run_cli(root, "apply")
    assert result.exit_code == 0, result.stderr
    return root


def write_yaml(path: Path, data: object) -> None:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def read_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def tree_digest(*folders: Path) -> dict[str, str]:
    """Every file (and link target) under the folders, with its content hash."""
    digest: dict[str, str] = {}
    for folder in folders:
        if not folder.exists():
            continue
        for path in sorted(folder.rglob("*")):
            if path.is_symlink():
                digest[str(path)] = "-> " + os.readlink(path)
            elif path.is_file() and path.name not in {".lock"} and path.suffix != ".lock":
                digest[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest
