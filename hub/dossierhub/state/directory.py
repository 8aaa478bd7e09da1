"""HOME/hub/directory.json: who belongs to which dossier, as the hub side needs to know it.

Written by apply and serve from the validated manifests; read by the hub's configuration
and pages, which must not parse manifests or touch data on every request.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dossier_kernel.expiry import expiry
from dossierhub.state.atomic import write_json
from dossierhub.state.home import Home
from dossierhub.state.models import Dossier
from dossierhub.state.roles import WORKER_ROLES

WORKSPACE_PREFIX = "dossier-"


@dataclass(frozen=True)
class DossierEntry:
    id: str
    title: str
    purpose: str
    legal_basis: str
    expires: str
    leads: tuple[str, ...]
    analysts: tuple[str, ...]
    viewers: tuple[str, ...]

    @property
    def hub_user(self) -> str:
        return WORKSPACE_PREFIX + self.id

    @property
    def group(self) -> str:
        """Leads and analysts: the people who may open, start and stop the workspace."""
        return WORKSPACE_PREFIX + self.id

    @property
    def viewer_group(self) -> str:
        return f"{WORKSPACE_PREFIX}{self.id}-viewers"

    @property
    def workers(self) -> tuple[str, ...]:
        """The people of WORKER_ROLES (roles.py): the hub lets them reach the workspace."""
        by_role = {"lead": self.leads, "analyst": self.analysts, "viewer": self.viewers}
        return tuple(p for role in WORKER_ROLES for p in by_role[role])

    def role_of(self, person: str) -> str | None:
        for role, people in (
            ("lead", self.leads),
            ("analyst", self.analysts),
            ("viewer", self.viewers),
        ):
            if person in people:
                return role
        return None

    def expired(self, today: dt.date | None = None) -> bool:
        return expiry(self.expires, today).expired


def entry_for(dossier: Dossier) -> DossierEntry:
    return DossierEntry(
        dossier.id,
        dossier.title,
        dossier.purpose,
        dossier.legal_basis,
        dossier.expires.isoformat(),
        tuple(dossier.members.lead),
        tuple(dossier.members.analyst),
        tuple(dossier.members.viewer),
    )


def directory_path(home: Home) -> Path:
    return home.directory_file


def write_directory(home: Home, dossiers: list[Dossier]) -> list[DossierEntry]:
    entries = sorted((entry_for(d) for d in dossiers), key=lambda e: e.id)
    home.hub_dir.mkdir(parents=True, exist_ok=True)
    path = directory_path(home)
    write_json(path, [asdict(e) for e in entries], indent=1)
    return entries


def read_directory(home: Home) -> list[DossierEntry]:
    try:
        raw = json.loads(directory_path(home).read_text("utf-8"))
    except (OSError, ValueError):
        return []
    return [DossierEntry(**_with_tuples(e)) for e in raw]


def _with_tuples(entry: dict[str, Any]) -> dict[str, Any]:
    """JSON has no tuples: the role lists come back as lists."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in entry.items()}
