"""Shared fixtures: small, real HOME folders built with the product's own commands."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dossierhub.demo import write_demo
from dossierhub.home import Home

from helpers import SMALL, run_cli


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
