"""Login for the embedded default: local accounts for the people the manifests name.

Passwords are kept as scrypt hashes in HOME/hub/passwords.json (0600), set with
`dossierhub passwd`; they are never logged. Workspace accounts (`dossier-<id>`) never log in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jupyterhub.auth import Authenticator
from tornado import web
from traitlets import Unicode, default

from dossierhub.state.atomic import write_atomic
from dossierhub.state.directory import WORKSPACE_PREFIX

_N, _R, _P = 2**14, 8, 1


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    encoded = [base64.b64encode(part).decode() for part in (salt, digest)]
    return "$".join(["scrypt", str(_N), str(_R), str(_P), *encoded])


def verify_password(stored: str, password: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    got = hashlib.scrypt(
        password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=32
    )
    return hmac.compare_digest(got, base64.b64decode(digest))


def read_passwords(path: Path) -> dict[str, str]:
    """passwords.json: username -> scrypt hash; {} when there is none. ValueError when the file
    is not such a mapping (nobody logs in then, and `passwd` refuses to overwrite it)."""
    if not path.exists():
        return {}
    table = json.loads(path.read_text())
    if not isinstance(table, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in table.items()
    ):
        raise ValueError(f"{path.name} is not a mapping of username to password hash")
    return table


def set_password(path: Path, username: str, password: str) -> None:
    """Store a hash for `username`; atomically, mode 0600."""
    table = read_passwords(path)
    table[username] = hash_password(password)
    write_atomic(path, json.dumps(table, indent=1, sort_keys=True), mode=0o600)


class LocalPasswordAuthenticator(Authenticator):
    """Username + password against HOME/hub/passwords.json."""

    passwords_file = Unicode(
        help="JSON file of username -> scrypt hash, written by `dossierhub passwd`."
    ).tag(config=True)

    @default("allow_all")
    def _allow_all_default(self) -> bool:
        # Only people with a password set can log in at all; what they may open is decided
        # by the dossier roles, not by an allow list.
        return True

    async def authenticate(self, handler: web.RequestHandler, data: dict[str, Any]) -> str | None:
        username = self.normalize_username(str(data.get("username", "")))
        password = str(data.get("password", ""))
        if not username or username.startswith(WORKSPACE_PREFIX):
            return None
        try:
            table = read_passwords(Path(self.passwords_file))
        except (OSError, ValueError):
            self.log.error("passwords file %s cannot be read", self.passwords_file)
            return None
        stored = table.get(username)
        if stored is None or not verify_password(stored, password):
            self.log.warning("failed login for %s", username)
            return None
        return username


def refuse_workspace_accounts(
    authenticator: Authenticator, handler: web.RequestHandler, authentication: dict
) -> dict:
    """post_auth_hook: a `dossier-<id>` account is a workspace, never a person."""
    if str(authentication.get("name", "")).startswith(WORKSPACE_PREFIX):
        raise web.HTTPError(403, "Workspace accounts cannot log in.")
    return authentication


def oauth_username(claim: str, strip_domain: bool) -> Callable[[dict], str]:
    """The manifest name of an OIDC user: the claim, lowercased, without '@domain'."""

    def pick(user_info: dict) -> str:
        value = str(user_info.get(claim, "")).strip().lower()
        if strip_domain and "@" in value:
            value = value.split("@", 1)[0]
        return value

    return pick
