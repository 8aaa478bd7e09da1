"""Helpers shared by the tests: the CLI in-process and as a process, YAML, tree digests."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import yaml
from click.testing import CliRunner, Result

from dossier_kernel.provenance import FORMAT_VERSION, PROVENANCE_FILE, ExtractProvenance
from dossierhub.cli import main
from dossierhub.data.generations import DATA_LINK
from dossierhub.state.home import Home

VENV_BIN = Path(sys.executable).parent
DOSSIERHUB = str(VENV_BIN / "dossierhub")
SMALL = 3000


def run_cli(home: Path, *args: str, input: str | None = None) -> Result:
    """Run `dossierhub --home HOME ARGS...` in-process, stdout and stderr apart."""
    return CliRunner().invoke(
        main, ["--home", str(home), *args], input=input, catch_exceptions=False
    )


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


def write_rules_only_extracts(home: Home, dossier_id: str, disclosure: dict) -> None:
    """A dossier's current extracts with no views, only its disclosure rules: what the release
    checks read, in a well-formed provenance.json (as apply writes it, through the contract)."""
    data = home.extract_dir(dossier_id) / DATA_LINK
    data.mkdir(parents=True, exist_ok=True)
    provenance = ExtractProvenance(
        dossier=dossier_id,
        title=dossier_id,
        purpose="tests",
        expires="2099-12-31",
        generation="test",
        built_at="2026-01-01T00:00:00+00:00",
        tool_version="test",
        format=FORMAT_VERSION,
        policy_hash="",
        key_id="",
        views={},
        disclosure=disclosure,
    )
    (data / PROVENANCE_FILE).write_text(provenance.to_json())
