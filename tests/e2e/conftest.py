"""Fixtures of the e2e tests: the browser, a logged-in page and an API client per person;
their hub is tests/conftest.py's `hub`."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator

import httpx
import pytest

from e2e_hub import Hub
from e2e_pages import person, signed_in  # noqa: F401 - the fixtures, for every browser test


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    """pytest-playwright drives Debian's Chromium: nothing is downloaded."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (./install.sh --dev installs it)")
    return {**browser_type_launch_args, "executable_path": chromium, "args": ["--no-sandbox"]}


@pytest.fixture(scope="module")
def client(hub: Hub) -> Iterator[Callable[[str], httpx.Client]]:
    """An API client per person, with their own hub token (made once per module)."""
    made: dict[str, httpx.Client] = {}

    def as_person(name: str) -> httpx.Client:
        if name not in made:
            made[name] = hub.service_api(name)
        return made[name]

    yield as_person
    for open_client in made.values():
        open_client.close()
