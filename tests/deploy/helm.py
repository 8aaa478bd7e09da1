"""`helm template` of deploy/chart with the helm ./install.sh --dev extracts (pinned by
deploy/package-lock.json); offline, with no user's helm configuration."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
HELM = REPO / ".tools" / "helm"
CHART = REPO / "deploy" / "chart"


def render(*args: str) -> list[dict[str, Any]]:
    assert HELM.exists(), f"{HELM} is missing: run ./install.sh --dev"
    result = subprocess.run(
        [HELM, "template", "dossierhub", str(CHART), "--namespace", "dossiers", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"HOME": "/nonexistent", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    return [obj for obj in yaml.safe_load_all(result.stdout) if obj]
