"""Browser settings of the e2e tests; their hub is tests/conftest.py's `hub`."""

from __future__ import annotations

import shutil

import pytest

from e2e_pages import person  # noqa: F401 - the fixture, for every browser test


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    """pytest-playwright drives Debian's Chromium: nothing is downloaded."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (./install.sh --dev installs it)")
    return {**browser_type_launch_args, "executable_path": chromium, "args": ["--no-sandbox"]}
