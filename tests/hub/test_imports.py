"""What the JupyterHub process loads: its configuration reads settings.yaml and the
directory, and starts workspaces; none of that needs DuckDB, sqlglot or Polars (tens of MiB
and a second or so in every hub start)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_the_hub_process_loads_no_data_engine() -> None:
    probe = (
        "import json, sys\n"
        "import dossierhub.workspaces.hubconfig, dossierhub.state.settings\n"
        "import dossierhub.workspaces.spawner\n"
        "print(json.dumps(sorted(m for m in ('duckdb', 'sqlglot', 'polars',"
        " 'dossierhub.data.policy')"
        " if m in sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert json.loads(result.stdout) == []
