"""Red team (issue 15): a report run's code plants a deep folder chain in its scratch.

The Job (its report number) writes its run folder scratch/<id>/<run> (group-writable). It makes
`d`, mode 0700, and under it a chain of folders deeper than Python's recursion limit. The service
(the control identity, no capability) cannot open `d`, so `remove_scratch` renames the run folder
`.left-<run>` for apply. apply (root) then removes it in `own_report_scratch` (secure_dossier,
for every built dossier, on every apply): shutil.rmtree on Python 3.11 (the image's) recurses
one frame per level and raises RecursionError, which `ignore_errors` does not swallow. apply
dies after swapping in new extracts but before directory.json, the hub sync (membership
revocations), deprovisioning and its audit record; every later apply dies the same way.
With `d` left 0755 the same chain crashes the service's own `remove_scratch`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dossierhub.isolation.unixusers import LEFT_OVER, _remove_left_over, remove_scratch

DEPTH = 1500  # > apply's recursion limit: what a notebook cell makes in well under a second


@pytest.fixture(autouse=True)
def _apply_s_recursion_limit() -> Iterator[None]:
    """apply's and the service's processes keep Python's default (1000); another test's
    import (cel-python) raises it for the whole pytest process."""
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    yield
    sys.setrecursionlimit(before)


@pytest.fixture(autouse=True)
def _no_deep_tree_left(tmp_path: Path) -> Iterator[None]:
    """pytest's own clean-up of old temporary folders is shutil.rmtree too: a chain left by a
    failing test here would break it for every later run on the machine (rm is iterative)."""
    yield
    subprocess.run(["rm", "-rf", str(tmp_path / "scratch")], check=False)


def _chain(parent: Path, name: str, depth: int = DEPTH) -> None:
    """`parent/name/d/d/.../d`, `depth` folders deep, made by descriptor as a cell would."""
    top = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    os.mkdir(name, dir_fd=top)
    current = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=top)
    os.close(top)
    for _ in range(depth):
        os.mkdir("d", dir_fd=current)
        deeper = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=current)
        os.close(current)
        current = deeper
    os.close(current)


def test_apply_removes_a_deep_left_over_run_folder_without_dying(tmp_path: Path) -> None:
    scratch_id = tmp_path / "scratch" / "armoede"
    scratch_id.mkdir(parents=True)
    _chain(scratch_id, f"{LEFT_OVER}0a1b2c3d4e5f6a7b")
    folder = os.open(scratch_id, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _remove_left_over(folder)  # RecursionError today: apply stops here, every time
    finally:
        os.close(folder)
    assert os.listdir(scratch_id) == []


def test_the_service_s_scratch_removal_survives_a_deep_run_folder(tmp_path: Path) -> None:
    run = tmp_path / "scratch" / "armoede"
    run.mkdir(parents=True)
    _chain(run, "0a1b2c3d4e5f6a7b")
    remove_scratch(run / "0a1b2c3d4e5f6a7b")  # RecursionError today: the collection dies
    assert not os.path.lexists(run / "0a1b2c3d4e5f6a7b")
