"""The Kubernetes stand-in (standin.py) as fixtures: API server and kubelet per test or module."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from standin import StandIn


@pytest.fixture
def k8s_standin(tmp_path: Path) -> Iterator[StandIn]:
    """kmock on a free port, its kubeconfig, and a kubelet running its pods (see standin.py)."""
    yield from _standin(tmp_path / "k8s")


@pytest.fixture(scope="module")
def k8s_standin_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIn]:
    """The same, shared by a module's tests (a hub kept across them needs one API server)."""
    yield from _standin(tmp_path_factory.mktemp("k8s"))


def _standin(workdir: Path) -> Iterator[StandIn]:
    # install.sh installs bubblewrap as root; pods run as other uids, which needs root
    if os.geteuid() != 0 or not shutil.which("bwrap"):
        pytest.skip("the Kubernetes stand-in runs pods as their own uids: needs root and bwrap")
    with StandIn(workdir) as standin:
        yield standin
    # a kubelet bug (not a refused pod) fails the test rather than hiding in the log
    assert not standin.kubelet.errors, f"the stand-in kubelet failed: {standin.kubelet.errors}"
    assert not standin.jobs.errors, f"the stand-in Job controller failed: {standin.jobs.errors}"
