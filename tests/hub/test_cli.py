"""The command line as an admin meets it: exit codes, init, demo, and documented commands."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import re
import stat
import subprocess
from pathlib import Path

import click
import pytest

from dossierhub.cli import main

from helpers import DOSSIERHUB, run_cli, run_cli_process

README = Path(__file__).resolve().parents[2] / "README.md"


def test_malformed_command_line_exits_2(tmp_path: Path) -> None:
    for args in (["apply", "--nosuch"], ["frobnicate"], ["demo", "--size", "many"]):
        result = run_cli_process(tmp_path, *args)
        assert result.returncode == 2, args
        assert "Usage:" in result.stderr or "Error:" in result.stderr


def test_init_creates_home_and_private_key(tmp_path: Path) -> None:
    home = tmp_path / "new"
    result = run_cli(home, "init")
    assert result.exit_code == 0
    key = home / "secrets" / "master.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    assert re.fullmatch(r"[0-9a-f]{64}\n", key.read_text())
    assert "Back up secrets/master.key" in result.stderr
    assert key.read_text() not in result.stdout + result.stderr
    for folder in ("dossiers", "extracts", "workspaces", "templates", "reports", "audit", "hub"):
        assert (home / folder).is_dir()
    again = run_cli(home, "init")
    assert again.exit_code == 0 and "already initialised" in again.stdout
    assert key.read_text() == result_key(home)


def result_key(home: Path) -> str:
    return (home / "secrets" / "master.key").read_text()


def test_home_comes_from_the_environment_then_var(tmp_path: Path) -> None:
    env = {**os.environ, "DOSSIERHUB_HOME": str(tmp_path / "from-env")}
    subprocess.run([DOSSIERHUB, "init"], env=env, check=True, capture_output=True)
    assert (tmp_path / "from-env" / "secrets" / "master.key").exists()
    env.pop("DOSSIERHUB_HOME")
    subprocess.run([DOSSIERHUB, "init"], env=env, cwd=tmp_path, check=True, capture_output=True)
    assert (tmp_path / "var" / "secrets" / "master.key").exists()


def test_demo_builds_two_dossiers_and_skips_the_expired_one(tmp_path: Path) -> None:
    home = tmp_path / "demo"
    result = run_cli_process(home, "demo", "--size", "2000", "--no-serve")
    assert result.returncode == 0, result.stderr
    assert "generating synthetic data for 2,000 residents" in result.stderr
    assert "armoede: extracts/armoede/catalog.duckdb (4 views)" in result.stdout
    assert "mobiliteit: extracts/mobiliteit/catalog.duckdb (2 views)" in result.stdout
    assert "woonfraude-2025: expired on 2025-12-31" in result.stdout
    assert not (home / "extracts" / "woonfraude-2025").exists()
    again = run_cli_process(home, "demo", "--size", "2000", "--no-serve")
    assert again.returncode == 0
    assert "already present" in again.stderr
    assert "armoede: up to date" in again.stdout
    assert run_cli_process(home, "audit", "verify").returncode == 0


def commands(group: click.Group, prefix: str = "") -> list[str]:
    names = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            names += commands(command, f"{prefix}{name} ")
        else:
            names.append(f"{prefix}{name}")
    return names


def test_every_command_and_option_is_documented() -> None:
    """Like Datasette's test_docs: an undocumented command or option fails the build."""
    readme = README.read_text()
    for name in commands(main):
        assert f"dossierhub {name}" in readme, f"`dossierhub {name}` is not in README.md"
    for command in [main, *main.commands.values()]:
        for param in command.params:
            for opt in getattr(param, "opts", []):
                if opt.startswith("--") and opt not in ("--help", "--version"):
                    assert opt in readme, f"option {opt} of {command.name} is not in README.md"


def test_every_setting_is_documented() -> None:
    """Every key of settings.yaml appears in the README's settings.yaml example."""
    from pydantic import BaseModel

    from dossierhub.state.settings import OAuthSettings, Settings

    readme = README.read_text()
    example = readme[readme.index("### settings.yaml") :]
    example = example[: example.index("```\n", example.index("```yaml") + 7)]

    def keys(model: type[BaseModel]) -> list[str]:
        found = []
        for name, field in model.model_fields.items():
            found.append(name)
            inner = field.annotation
            for candidate in (inner, *getattr(inner, "__args__", ())):
                if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                    found += keys(candidate)
        return found

    for key in {*keys(Settings), *keys(OAuthSettings)}:
        assert f"{key}:" in example, f"setting `{key}` is not in README.md's settings.yaml"


def finished_run(home: Path, dossier_id: str, user: str) -> str:
    """A succeeded run of `user`, as `report run` leaves it (a real run needs a kernel as the
    dossier's identity: tests/e2e/test_reports.py)."""
    run_id = "20260101T000000-abcdef"
    folder = home / "reports" / dossier_id / run_id
    folder.mkdir(parents=True)
    (folder / "report.ipynb").write_text('{"cells": []}')
    outputs = {"report.ipynb": hashlib.sha256((folder / "report.ipynb").read_bytes()).hexdigest()}
    provenance = {
        "run_id": run_id,
        "dossier": dossier_id,
        "template": "district_profile",
        "user": user,
        "status": "succeeded",
        "error": None,
        "outputs": outputs,
        "checks_passed": True,
    }
    (folder / "provenance.json").write_text(json.dumps(provenance))
    (folder / "checks.json").write_text("[]")
    return run_id


def test_release_from_the_command_line_says_so_in_the_audit_log(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--user NAME` is NAME's release, recorded with the channel and who ran the command."""
    assert run_cli(home, "apply").exit_code == 0
    run_id = finished_run(home, "armoede", "a.jansen")
    monkeypatch.setenv("SUDO_USER", "alice")
    refused = run_cli_process(home, "report", "release", "armoede", run_id, "--user", "b.devries")
    assert refused.returncode == 1 and "only leads release" in refused.stderr
    result = run_cli_process(home, "report", "release", "armoede", run_id, "--user", "e.mulder")
    assert result.returncode == 0, result.stderr
    log = (home / "audit" / "audit.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in log[-2:]]
    login = pwd.getpwuid(os.geteuid()).pw_name
    for record, action, actor in zip(
        records,
        ("report.release.refused", "report.release"),
        ("b.devries", "e.mulder"),
        strict=True,
    ):
        assert record["action"] == action and record["actor"] == actor
        assert record["channel"] == "cli"
        assert record["os_user"] == f"{login} (sudo: alice)"
    assert run_cli(home, "audit", "verify").exit_code == 0
