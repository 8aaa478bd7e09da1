"""The type checker, as CI runs it: mypy on hub/ and kernels/ (configured in pyproject.toml)
finds nothing, and every `# type: ignore` left says which error it silences and why.

mypy takes about 20 s of one core on a fresh clone (no .mypy_cache): when its test is selected,
tests/conftest.py starts it as soon as the tests are collected and runs its test last, so the
check runs beside the other tests instead of before them."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = [ROOT / "hub" / "dossierhub", ROOT / "kernels" / "dossier_kernel"]
# `# type: ignore[code]  # reason`: a code (mypy also insists) and a reason after it
EXPLAINED_IGNORE = re.compile(r"# type: ignore\[[a-z-]+(, ?[a-z-]+)*\]  # \S.*")


def _sources() -> list[Path]:
    return [p for package in PACKAGES for p in sorted(package.rglob("*.py"))]


MYPY_STARTED = pytest.StashKey[subprocess.Popen[str]]()


def start_mypy() -> subprocess.Popen[str]:
    """mypy on the configuration's own targets; .mypy_cache keeps a second run to a second
    or two."""
    return subprocess.Popen(
        [sys.executable, "-m", "mypy"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_mypy_finds_no_error_in_hub_and_kernels(request: pytest.FixtureRequest) -> None:
    process = request.config.stash.get(MYPY_STARTED, None) or start_mypy()
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stdout + stderr
    checked = re.search(r"Success: no issues found in (\d+) source files", stdout)
    assert checked, stdout
    assert int(checked.group(1)) >= len(_sources()), "mypy skipped some of hub/ or kernels/"


def test_every_type_ignore_names_its_error_and_why() -> None:
    unexplained = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in _sources()
        for number, line in enumerate(path.read_text("utf-8").splitlines(), start=1)
        if "type: ignore" in line and not EXPLAINED_IGNORE.search(line)
    ]
    assert not unexplained, "\n".join(unexplained)
