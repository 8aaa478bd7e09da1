"""`dossierhub init`: make a HOME's folders, an empty catalog and the master key, never
overwriting what is there (the names are Home's)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from dossierhub.state.atomic import write_atomic
from dossierhub.state.home import Home
from dossierhub.state.masterkey import create_master_key


@dataclass(frozen=True)
class InitResult:
    created_dirs: list[str]
    created_key: bool
    created_catalog: bool


def init_home(home: Home) -> InitResult:
    """Create the folders, an empty catalog and the master key if missing; never overwrite."""
    created: list[str] = []
    dirs = [
        home.root,
        home.dossiers_dir,
        home.master_key_file.parent,
        home.extracts_dir,
        home.workspaces_dir,
        home.templates_dir,
        home.reports_dir,
        home.scratch_dir,
        home.logs_dir,
        home.audit_dir,
        home.hub_dir,
        home.locks_dir,
    ]
    for folder in dirs:
        if not folder.exists():
            folder.mkdir(parents=True)
            created.append(home.relative(folder) if folder != home.root else ".")
    for private in (
        home.master_key_file.parent,
        home.hub_dir,
        home.audit_dir,
        home.locks_dir,
        home.logs_dir,
    ):
        os.chmod(private, 0o700)
    created_key = create_master_key(home)
    created_catalog = False
    if not home.catalog_file.exists():
        write_atomic(
            home.catalog_file,
            "# Data sources, described once by their stewards (docs/reference.md, catalog.yaml).\n"
            "sources: {}\n",
        )
        created_catalog = True
    return InitResult(created, created_key, created_catalog)
