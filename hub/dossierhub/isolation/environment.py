"""What a dossier's processes run with, as one pure function of the dossier model and the
settings: `dossier_environment` gives the environment variables, the DuckDB limits and the
paths of a dossier's workspace (JupyterLab and its kernels) or of one report kernel.

The spawner (spawner.py), the report kernels (kernelpool.py) and, next, a Kubernetes spawner
each apply the result their own way (bubblewrap binds, setpriv, a pod spec); none of them
decides a limit, a variable or a path itself, so a workspace and a report run of the same
dossier cannot drift apart. It starts nothing and reads no file: tested as values
(tests/hub/test_environment.py), like the hub config.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dossierhub.state.home import Home
from dossierhub.state.models import Dossier
from dossierhub.state.settings import Settings

Kind = Literal["workspace", "report"]

# Where a workspace's Jupyter and IPython look for their configuration, their data
# (kernelspecs, JupyterLab extensions) and the kernels' start-up files. Jupyter's defaults are
# under HOME, the workspace folder the team writes: a file put there (~/.jupyter server config,
# ~/.ipython/profile_default/startup, a kernelspec shadowing the Dossier kernel's, a JupyterLab
# extension) would run in the server or in every kernel with no person's execution to record.
# These folders are root's: the sandbox makes the Jupyter ones, empty (sandbox.prefix `empty`),
# and where there is no sandbox no dossier identity can make them (/run is root's). IPython's
# is never made: IPython wants its folder writable and gives each kernel a new empty one in
# the private /tmp instead, and jupyter_core would try to "migrate" an existing one into the
# read-only configuration folder, failing the server's start. JupyterLab's user settings are
# an empty one too: a setting a kernel wrote there (a colleague's Ctrl+S bound to "run all
# cells") would act in every member's browser; each person's settings live in their own
# browser instead (extensions/src/settings.ts). What else JupyterLab and the server write
# (layouts, file ids, notebook signatures: spawner.server_args) stays in the workspace folder.
NO_USER_FILES = Path("/run/dossierhub")
JUPYTER_CONFIG_DIR = NO_USER_FILES / "jupyter-config"
JUPYTER_DATA_DIR = NO_USER_FILES / "jupyter-data"
JUPYTERLAB_SETTINGS_DIR = NO_USER_FILES / "lab-settings"
IPYTHONDIR = NO_USER_FILES / "ipython"


@dataclass(frozen=True)
class KernelLimits:
    """What the dossier's Dossier kernel may use: the manifest's `limits`, else settings'."""

    memory: str  # DuckDB's memory_limit, such as 2GB
    threads: int  # DuckDB's threads

    def env(self) -> dict[str, str]:
        # read by dossier_kernel.connect, which passes them to DuckDB
        return {
            "DOSSIER_DUCKDB_MEMORY_LIMIT": self.memory,
            "DOSSIER_DUCKDB_THREADS": str(self.threads),
        }


@dataclass(frozen=True)
class DossierEnvironment:
    """A workspace's or report kernel's environment, limits and paths (same paths inside a
    sandbox as outside, so the variables that name them hold either way)."""

    kind: Kind
    env: dict[str, str]
    limits: KernelLimits
    read_only: tuple[Path, ...]  # the dossier's extracts
    writable: tuple[Path, ...]  # its own folder: the workspace, or the run's scratch
    workdir: Path
    hostname: str
    # empty folders, not writable by the dossier, that the variables above name (workspaces)
    empty: tuple[Path, ...] = ()


def workspace_python(settings: Settings) -> str:
    """The Python of the environment workspaces and report kernels run in."""
    return settings.workspaces.python or sys.executable


def kernel_limits(dossier: Dossier, settings: Settings) -> KernelLimits:
    return KernelLimits(
        memory=dossier.limits.memory or settings.workspaces.duckdb_memory_limit,
        threads=dossier.limits.threads or settings.workspaces.duckdb_threads,
    )


def dossier_environment(
    home: Home,
    dossier: Dossier,
    settings: Settings,
    *,
    kind: Kind,
    folder: Path,
    python: str,
    sandboxed: bool,
) -> DossierEnvironment:
    """The environment of dossier `dossier`'s workspace (`folder`: its workspace folder) or of
    one report kernel (`folder`: the run's scratch folder, where publish() writes)."""
    limits = kernel_limits(dossier, settings)
    extracts = home.extract_dir(dossier.id)
    env = {
        "HOME": str(folder),
        "DOSSIER_ID": dossier.id,
        "DOSSIER_CATALOG": str(home.extract_catalog(dossier.id)),
        **limits.env(),
    }
    bin_dir = Path(python).parent
    if kind == "workspace":
        env["PATH"] = f"{bin_dir}:/usr/local/bin:/usr/bin:/bin"
        env["SHELL"] = "/bin/bash"
        env.update(_no_user_files(folder))
        if sandboxed:
            # kernels talk over Unix sockets in the sandbox's private /tmp: on TCP, any local
            # process could subscribe to a kernel's output (IOPub needs no key)
            env["JUPYTER_RUNTIME_DIR"] = "/tmp/jupyter-runtime"  # noqa: S108
        else:
            # Jupyter's per-user default, named: the data folder it derives from is read-only
            env["JUPYTER_RUNTIME_DIR"] = str(folder / ".local/share/jupyter/runtime")
        hostname = f"dossier-{dossier.id}"
        empty: tuple[Path, ...] = (JUPYTER_CONFIG_DIR, JUPYTER_DATA_DIR, JUPYTERLAB_SETTINGS_DIR)
    else:
        env["PATH"] = f"{bin_dir}:/usr/bin:/bin"
        env["DOSSIERHUB_RUN_DIR"] = str(folder)
        env["MPLBACKEND"] = "Agg"  # no display: charts render to files
        env["LANG"] = "C.UTF-8"
        hostname = f"report-{dossier.id}"
        empty = ()
    return DossierEnvironment(
        kind=kind,
        env=env,
        limits=limits,
        read_only=(extracts,),
        writable=(folder,),
        workdir=folder,
        hostname=hostname,
        empty=empty,
    )


def _no_user_files(folder: Path) -> dict[str, str]:
    """Jupyter and IPython read nothing from the workspace folder (NO_USER_FILES), JupyterLab
    no settings; its layouts stay where Jupyter keeps them by default."""
    return {
        "JUPYTER_CONFIG_DIR": str(JUPYTER_CONFIG_DIR),
        "JUPYTER_DATA_DIR": str(JUPYTER_DATA_DIR),
        "IPYTHONDIR": str(IPYTHONDIR),
        "JUPYTERLAB_SETTINGS_DIR": str(JUPYTERLAB_SETTINGS_DIR),
        "JUPYTERLAB_WORKSPACES_DIR": str(folder / ".jupyter/lab/workspaces"),
    }
