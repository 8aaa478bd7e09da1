"""The benchmarks still run (tiny smoke mode); their targets are judged by full runs only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_extract_benchmark_smoke() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH / "bench_extracts.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    for figure in ("build_unique", "build_repeated", "group_by_cpu", "extract_size"):
        assert "ratio" in lines[figure], figure
    assert "GiB" in lines["apply_peak_memory"]


def test_differencing_benchmark_smoke() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH / "bench_differencing.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    for figure in ("10_released", "2_released_5000_rows"):
        assert "ratio" in lines[figure], figure


def test_audit_store_benchmark_smoke() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH / "bench_audit_store.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if "PostgreSQL's server is not installed" in result.stdout and os.environ.get("CI") != "true":
        pytest.skip(result.stdout.strip())  # as tests/pg.py: in CI a missing server fails
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    for figure in ("one_process", "2_processes"):
        assert "ratio postgresql/file" in lines[figure], figure
