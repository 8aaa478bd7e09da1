"""What the Dossier panel shows about this workspace's dossier, read only from what the
workspace itself may read: its extracts folder (catalog.duckdb and provenance.json).

Who may start a report run is not decided here: the panel asks the hub-side dossierhub
service with the person's own login, never with this server's token, which every kernel of the
workspace can read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dossier_kernel.expiry import WARNING_DAYS, expiry
from dossier_kernel.provenance import read_provenance

SERVICE = "services/dossierhub/"


class NoDossier(Exception):
    """This server runs outside a dossier workspace, or its dossier has no extracts."""


def dossier_info(environ: dict[str, str] | None = None) -> dict[str, Any]:
    env = os.environ if environ is None else environ
    catalog = env.get("DOSSIER_CATALOG")
    if not catalog or not Path(catalog).exists():
        raise NoDossier(
            "this workspace has no dossier data: its dossier is not applied yet or has expired"
        )
    provenance = read_provenance(Path(catalog).parent)  # ProvenanceError names file and field
    from dossier_kernel import connect
    from dossier_kernel.catalog import describe_views

    con = connect(catalog)
    try:
        views = describe_views(con)
    finally:
        con.close()
    for view in views:
        built = provenance.views.get(view["name"])
        view["rows"] = built.rows_out if built else None
        view["built_at"] = built.built_at if built else None
    expires = provenance.expires
    left = expiry(expires)
    base = env.get("JUPYTERHUB_BASE_URL", "/")
    return {
        "id": provenance.dossier,
        "title": provenance.title,
        "purpose": provenance.purpose,
        "expires": expires,
        "days_left": left.days_left,
        # decided here, by the one expiry rule the hub's pages use too: the panel only shows it
        "expired": left.expired,
        "expires_soon": left.expires_soon,
        "expiry_warning_days": WARNING_DAYS,
        "built_at": provenance.built_at,
        "views": views,
        "service_url": base.rstrip("/") + "/" + SERVICE,
    }
