"""The Kubernetes stand-in (standin.py) as a fixture: a fresh API server and kubelet per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from standin import StandIn


@pytest.fixture
def k8s_standin(tmp_path: Path) -> Iterator[StandIn]:
    """kmock on a free port, its kubeconfig, and a kubelet running its pods (see standin.py)."""
    with StandIn(tmp_path / "k8s") as standin:
        yield standin
    assert not standin.kubelet.errors, f"the stand-in kubelet failed: {standin.kubelet.errors}"
