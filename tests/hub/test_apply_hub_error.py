"""apply that cannot tell the hub (workspaces/hubrollout.py, apply.py): the extracts are built
and recorded, the record names what failed, and apply exits 1 saying so, so a Job shows
failed instead of leaving the hub with old roles and members unnoticed."""

from __future__ import annotations

from pathlib import Path

import pytest

from dossierhub.state.audit import AuditLog
from dossierhub.state.home import Home

from helpers import run_cli


def test_an_apply_pod_missing_the_hub_s_address_builds_records_and_fails_loudly(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the chart sets all four; here the Deployment's name alone (a hand-made Job, say)
    monkeypatch.setenv("DOSSIERHUB_HUB_DEPLOYMENT", "hub")
    monkeypatch.delenv("DOSSIERHUB_HUB_API_URL", raising=False)
    monkeypatch.delenv("DOSSIERHUB_HUB_TOKEN_FILE", raising=False)
    result = run_cli(home, "apply", "armoede")
    assert result.exit_code == 1
    said = " ".join(result.stderr.split())
    assert (
        "error: the hub was not told: DOSSIERHUB_HUB_DEPLOYMENT is set but "
        "DOSSIERHUB_HUB_API_URL and DOSSIERHUB_HUB_TOKEN_FILE not"
    ) in said
    assert (Home(home).extract_dir("armoede") / "..data").exists()
    record = [r for r in AuditLog(Home(home)).read() if r["action"] == "apply"][-1]
    assert record["details"]["hub_error"].startswith("DOSSIERHUB_HUB_DEPLOYMENT is set")
    assert record["details"]["dossiers"][0]["status"] == "built"
