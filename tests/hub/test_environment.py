"""A dossier's workspace and report kernels run with what one pure function builds from the
dossier model and the settings: tested as values, without a hub or a kernel."""

from __future__ import annotations

from pathlib import Path

from dossierhub.isolation.environment import dossier_environment
from dossierhub.state.home import Home
from dossierhub.state.models import Dossier
from dossierhub.state.settings import Settings

HOME = Home(Path("/srv/dossierhub"))
PYTHON = "/opt/env/bin/python"
WORKDIR = Path("/srv/dossierhub/workspaces/armoede")
SCRATCH = Path("/srv/dossierhub/scratch/armoede/0a1b2c3d")
SETTINGS = Settings.model_validate(
    {"workspaces": {"duckdb_memory_limit": "3GB", "duckdb_threads": 3}}
)


def dossier(**limits: object) -> Dossier:
    return Dossier.model_validate(
        {
            "id": "armoede",
            "title": "Poverty",
            "purpose": "Why",
            "legal_basis": "art. 6",
            "expires": "2099-01-01",
            "members": {"lead": ["a.jansen"]},
            "sources": {"incomes": {"from": "incomes", "columns": ["district"]}},
            "limits": limits,
        }
    )


def workspace(d: Dossier, sandboxed: bool = True):  # type: ignore[no-untyped-def]
    return dossier_environment(
        HOME, d, SETTINGS, kind="workspace", folder=WORKDIR, python=PYTHON, sandboxed=sandboxed
    )


def report(d: Dossier):  # type: ignore[no-untyped-def]
    return dossier_environment(
        HOME, d, SETTINGS, kind="report", folder=SCRATCH, python=PYTHON, sandboxed=True
    )


def test_a_workspace_gets_its_dossier_its_limits_and_its_folders() -> None:
    made = workspace(dossier(memory="4GB", threads=8))
    assert made.env == {
        "HOME": str(WORKDIR),
        "DOSSIER_ID": "armoede",
        "DOSSIER_CATALOG": "/srv/dossierhub/extracts/armoede/catalog.duckdb",
        "DOSSIER_DUCKDB_MEMORY_LIMIT": "4GB",
        "DOSSIER_DUCKDB_THREADS": "8",
        "PATH": "/opt/env/bin:/usr/local/bin:/usr/bin:/bin",
        "SHELL": "/bin/bash",
        "JUPYTER_RUNTIME_DIR": "/tmp/jupyter-runtime",
        # nothing Jupyter or IPython reads comes from the folder the team writes
        "JUPYTER_CONFIG_DIR": "/run/dossierhub/jupyter-config",
        "JUPYTER_DATA_DIR": "/run/dossierhub/jupyter-data",
        "IPYTHONDIR": "/run/dossierhub/ipython",
        # no team-wide settings a kernel could write: each person's are in their browser
        "JUPYTERLAB_SETTINGS_DIR": "/run/dossierhub/lab-settings",
        # layouts stay in the folder, where they always were
        "JUPYTERLAB_WORKSPACES_DIR": f"{WORKDIR}/.jupyter/lab/workspaces",
    }
    assert made.read_only == (Path("/srv/dossierhub/extracts/armoede"),)
    assert made.writable == (WORKDIR,)
    # made empty and root's in the sandbox; IPython's is not made (it then takes a new one)
    assert made.empty == (
        Path("/run/dossierhub/jupyter-config"),
        Path("/run/dossierhub/jupyter-data"),
        Path("/run/dossierhub/lab-settings"),
    )
    assert made.workdir == WORKDIR
    assert made.hostname == "dossier-armoede"


def test_a_report_kernel_gets_the_same_dossier_and_limits_as_its_workspace() -> None:
    d = dossier(memory="700MB", threads=1)
    made, theirs = report(d), workspace(d)
    shared = (
        "DOSSIER_ID",
        "DOSSIER_CATALOG",
        "DOSSIER_DUCKDB_MEMORY_LIMIT",
        "DOSSIER_DUCKDB_THREADS",
    )
    assert {k: made.env[k] for k in shared} == {k: theirs.env[k] for k in shared}
    assert made.limits == theirs.limits
    assert made.env["DOSSIER_DUCKDB_MEMORY_LIMIT"] == "700MB"
    assert made.env["DOSSIER_DUCKDB_THREADS"] == "1"
    # its own scratch folder is its HOME, where publish() writes, and all it may write
    assert made.env["HOME"] == made.env["DOSSIERHUB_RUN_DIR"] == str(SCRATCH)
    assert made.env["PATH"] == "/opt/env/bin:/usr/bin:/bin"
    assert made.env["MPLBACKEND"] == "Agg"
    assert made.read_only == theirs.read_only
    assert made.writable == (SCRATCH,) and made.workdir == SCRATCH
    assert made.hostname == "report-armoede"
    assert "JUPYTER_RUNTIME_DIR" not in made.env and "SHELL" not in made.env
    assert "JUPYTER_CONFIG_DIR" not in made.env and made.empty == ()  # HOME is the run's own


def test_without_limits_in_the_manifest_the_settings_decide() -> None:
    for made in (workspace(dossier()), report(dossier())):
        assert made.env["DOSSIER_DUCKDB_MEMORY_LIMIT"] == "3GB"
        assert made.env["DOSSIER_DUCKDB_THREADS"] == "3"
    one = workspace(dossier(threads=1))  # each limit on its own
    assert (one.limits.memory, one.limits.threads) == ("3GB", 1)


def test_a_workspace_without_a_sandbox_keeps_the_machine_s_runtime_folder() -> None:
    """/tmp is private only inside the sandbox: outside it, the shared /tmp is no place
    for a kernel's sockets, so Jupyter's own per-user default stays (named, since the data
    folder Jupyter derives it from is read-only now)."""
    made = workspace(dossier(), sandboxed=False)
    assert made.env["JUPYTER_RUNTIME_DIR"] == f"{WORKDIR}/.local/share/jupyter/runtime"
    assert made.env["IPYTHONDIR"] == "/run/dossierhub/ipython"
