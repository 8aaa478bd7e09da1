"""The command line as an admin meets it: exit codes, init, demo, and documented commands."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import click
import pytest

from dossierhub import portal
from dossierhub.cli import main
from dossierhub.demo import DEMO_ADMIN, write_demo
from dossierhub.state.audit import AuditLog
from dossierhub.state.home import Home
from dossierhub.state.settings import load_settings

from e2e_hub import release_identities
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


def test_demo_builds_two_dossiers_and_skips_the_expired_one() -> None:
    # short (a report kernel's socket path must fit), a port of its own (the banner must
    # print it) and Unix identities of its own, as root
    home = Path(tempfile.mkdtemp(prefix="dhdemo-", dir="/tmp"))
    prefix = os.environ.get("DOSSIERHUB_TEST_PREFIX", "dht")
    (home / "settings.yaml").write_text(
        f"hub:\n  port: 8613\n  admins: [z.beheer]\nisolation:\n  prefix: {prefix}\n"
    )
    try:
        result = run_cli_process(home, "demo", "--size", "2000", "--no-serve")
        assert result.returncode == 0, result.stderr
        assert "generating synthetic data for 2,000 residents" in result.stderr
        assert "armoede: extracts/armoede/catalog.duckdb (4 views)" in result.stdout
        assert "mobiliteit: extracts/mobiliteit/catalog.duckdb (2 views)" in result.stdout
        assert "woonfraude-2025: expired on 2025-12-31" in result.stdout
        assert not (home / "extracts" / "woonfraude-2025").exists()
        assert_demo_banner(Home(home), result.stdout)
        again = run_cli_process(home, "demo", "--size", "2000", "--no-serve")
        assert again.returncode == 0
        assert "already present" in again.stderr
        assert "the demo dossiers have runs already" in again.stderr  # no second examples
        assert "armoede: up to date" in again.stdout
        assert run_cli_process(home, "audit", "verify").returncode == 0
    finally:
        release_identities(Home(home))
        shutil.rmtree(home, ignore_errors=True)


def assert_demo_banner(home: Home, stdout: str) -> None:
    """The banner names the URL serve listens on, every account by role (a second lead and
    the admin among them), and one run in each state, which the pages show as it says."""
    url = "http://127.0.0.1:8613/"
    password = home.demo_password_file.read_text().strip()
    assert f"Open {url} and log in (password for every demo account: {password})" in stdout
    for line in (
        "a.jansen   lead of armoede",
        "e.mulder   lead of armoede",
        "b.devries  analyst of armoede",
        "d.visser   viewer of armoede, viewer of mobiliteit",
        "g.meijer   lead of mobiliteit",
        "z.beheer   admin",
    ):
        assert f"  {line}" in stdout, line
    runs = dict(re.findall(rf"{url}services/dossierhub/dossiers/(\S+)  (a [^(]+)", stdout))
    assert sorted(runs.values()) == [
        "a released report ",
        "a run waiting for release by e.mulder ",
        "a run whose output checks failed ",
    ]
    by_state = {words: path.split("/") for path, words in runs.items()}
    dossier, _, released = by_state["a released report "]
    row = portal.run_detail(home, dossier, released, portal.Person("d.visser"))
    assert row["released_words"] == "released by a.jansen"
    dossier, _, waiting = by_state["a run waiting for release by e.mulder "]
    second_lead = portal.Person("e.mulder")
    assert portal.run_detail(home, dossier, waiting, second_lead)["release"]["allowed"]
    assert [d["awaiting_release"] for d in portal.my_dossiers(home, second_lead)] == [1]
    dossier, _, failed = by_state["a run whose output checks failed "]
    detail = portal.run_detail(home, dossier, failed, portal.Person("g.meijer"))
    assert detail["checks_failed"] and detail["release"]["needs_justification"]
    # made as the people they belong to, audited as usual (the runs at once, so in any
    # order; the release after the run it releases)
    log = [r for r in AuditLog(home).read() if r["action"] in ("report.run", "report.release")]
    made = [(r["action"], r["actor"]) for r in log]
    assert sorted(made) == [
        ("report.release", "a.jansen"),
        ("report.run", "a.jansen"),
        ("report.run", "b.devries"),
        ("report.run", "h.deboer"),
    ]
    assert made.index(("report.run", "b.devries")) < made.index(("report.release", "a.jansen"))
    (release,) = [r for r in log if r["action"] == "report.release"]
    assert release["details"]["run"] == released


def test_the_demo_names_its_admin_unless_settings_exist(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    write_demo(home, size=100, seed=1, log=lambda text: None)
    assert load_settings(home).hub.admins == [DEMO_ADMIN]
    home.settings_file.write_text("hub:\n  admins: [q.eigen]\n")
    write_demo(home, size=100, seed=1, log=lambda text: None)
    assert load_settings(home).hub.admins == ["q.eigen"]  # an admin's own settings stay


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
