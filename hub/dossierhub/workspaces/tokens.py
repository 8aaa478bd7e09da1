"""HOME/hub/proxy.token and HOME/hub/service.token: the secrets serve mints once and who holds
them. The proxy's token is the hub's key to its routes; the service's is the dossierhub service's
hub API token (role dossierhub-provisioner), which apply and provisioning also use. Each is
audited as `hub.token` when minted, and never printed."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Literal

from dossierhub.state.audit import AuditLog
from dossierhub.state.home import Home

Token = Literal["proxy", "service"]

HOLDERS: dict[Token, str] = {
    "proxy": "configurable-http-proxy (the hub's key to its routes)",
    "service": "the dossierhub service (role dossierhub-provisioner)",
}


def token_file(home: Home, which: Token) -> Path:
    return home.proxy_token_file if which == "proxy" else home.service_token_file


def read_token(home: Home, which: Token) -> str:
    return token_file(home, which).read_text().strip()


def mint_tokens(home: Home) -> None:
    """Mint each token that is not there yet (0600), auditing who holds it."""
    for which, holder in HOLDERS.items():
        path = token_file(home, which)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32) + "\n")
        AuditLog(home).append("hub.token", user=holder, file=home.relative(path))
