"""The home folder: all state of one installation (DESIGN.md, "The home folder")."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dossierhub.state.masterkey import create_master_key

DEFAULT_HOME = "./var"


@dataclass(frozen=True)
class Home:
    root: Path

    @classmethod
    def from_option(cls, value: str | os.PathLike[str] | None) -> Home:
        """--home, else $DOSSIERHUB_HOME, else ./var (the embedded default)."""
        chosen = value or os.environ.get("DOSSIERHUB_HOME") or DEFAULT_HOME
        return cls(Path(chosen).expanduser().absolute())

    @property
    def catalog_file(self) -> Path:
        return self.root / "catalog.yaml"

    @property
    def dossiers_dir(self) -> Path:
        return self.root / "dossiers"

    @property
    def master_key_file(self) -> Path:
        return self.root / "secrets" / "master.key"

    @property
    def extracts_dir(self) -> Path:
        return self.root / "extracts"

    def extract_dir(self, dossier_id: str) -> Path:
        return self.extracts_dir / dossier_id

    @property
    def workspaces_dir(self) -> Path:
        return self.root / "workspaces"

    @property
    def templates_dir(self) -> Path:
        return self.root / "templates"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def scratch_dir(self) -> Path:
        """Report runs in progress: one folder per run, owned by the dossier's report identity."""
        return self.root / "scratch"

    def scratch_parent(self, dossier_id: str) -> Path:
        return self.scratch_dir / dossier_id

    @property
    def logs_dir(self) -> Path:
        """What workspaces and report kernels print, one folder per dossier (root only)."""
        return self.root / "logs"

    @property
    def audit_dir(self) -> Path:
        return self.root / "audit"

    @property
    def hub_dir(self) -> Path:
        return self.root / "hub"

    @property
    def locks_dir(self) -> Path:
        return self.root / "extracts" / ".locks"

    @property
    def spill_dir(self) -> Path:
        """DuckDB's temporary files while building; raw-derived, so never inside extracts/<id>."""
        return self.root / "extracts" / ".spill"

    def relative(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def exists(self) -> bool:
        return self.catalog_file.exists() or self.master_key_file.exists()


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
    created_key = create_master_key(home.master_key_file)
    created_catalog = False
    if not home.catalog_file.exists():
        home.catalog_file.write_text(
            "# Data sources, described once by their stewards (see DESIGN.md, catalog.yaml).\n"
            "sources: {}\n",
            encoding="utf-8",
        )
        created_catalog = True
    return InitResult(created, created_key, created_catalog)
