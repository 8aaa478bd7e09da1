"""HOME/secrets/master.key: the installation's one secret, from which every dossier's
pseudonym key is derived (data/pseudonym.py). Created once by `dossierhub init`, never
overwritten, mode 0600 in a folder only root may enter."""

from __future__ import annotations

import os
import secrets

from dossierhub.state.home import Home

KEY_BYTES = 32


class MasterKeyError(Exception):
    """The master key is missing or malformed; its text never appears in the message."""


def create_master_key(home: Home) -> bool:
    """Write 32 random bytes as 64 hex characters, mode 0600, unless a key is already there."""
    path = home.master_key_file
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(KEY_BYTES) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return True


def read_master_key(home: Home) -> bytes:
    path = home.master_key_file
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise MasterKeyError(
            f"{path} is missing. Fix: run `dossierhub init`, or restore the key from its backup "
            "(a new key changes every pseudonym)."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MasterKeyError(f"{path} cannot be read ({exc.__class__.__name__}).") from None
    if len(text) != 2 * KEY_BYTES or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise MasterKeyError(
            f"{path} must hold exactly 64 hexadecimal characters (32 bytes). "
            "Fix: restore the key from its backup."
        )
    return bytes.fromhex(text)
