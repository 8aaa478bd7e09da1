"""Hub service `dossierhub-expiry`: stops the workspaces of dossiers past `expires`.

Runs under JupyterHub (which passes JUPYTERHUB_API_URL and JUPYTERHUB_API_TOKEN) and checks
every --every seconds, so a running workspace stops well within the hour after expiry.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

from dossierhub.state.audit import AuditLog
from dossierhub.state.directory import read_directory
from dossierhub.state.home import Home
from dossierhub.workspaces.hubapi import HubAPI, HubUnavailable
from dossierhub.workspaces.provision import expire_workspace

log = logging.getLogger("dossierhub.expiry")


def check_once(home: Home, api: HubAPI) -> list[str]:
    stopped = []
    for entry in read_directory(home):
        if entry.expired() and api.server_running(entry.hub_user):
            expire_workspace(home, api, entry.id)
            AuditLog(home).append(
                "expiry.stop", actor="dossierhub-expiry", dossier=entry.id, expired=entry.expires
            )
            stopped.append(entry.id)
    return stopped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", required=True)
    parser.add_argument("--every", type=float, default=600)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="[dossierhub-expiry] %(message)s")
    home = Home(Path(args.home))
    api = HubAPI(os.environ["JUPYTERHUB_API_URL"], os.environ["JUPYTERHUB_API_TOKEN"])
    while True:
        try:
            for dossier_id in check_once(home, api):
                log.info("stopped the workspace of expired dossier %s", dossier_id)
        except (HubUnavailable, OSError) as exc:  # the next round tries again
            log.warning("%s", exc)
        time.sleep(args.every)


if __name__ == "__main__":
    main()
