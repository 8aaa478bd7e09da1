"""Per-dossier keyed pseudonyms (DESIGN.md, "Pseudonyms").

dossier key = HMAC-SHA256(master key, "dossier:" + id)
pseudonym   = hex(HMAC-SHA256(dossier key, CAST(value AS VARCHAR) as UTF-8)[:16]), NULL stays NULL

Extracts compute this inside DuckDB as plain SHA-256 calls over the HMAC pads, so it runs on
all cores at DuckDB speed. The pads are bound as session variables, never written into SQL
text, so no query string, plan or error message can carry key material.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the hub process reads keys without loading DuckDB
    import duckdb

KEY_BYTES = 32
_BLOCK = 64  # SHA-256 block size: HMAC pads the key to this length


class MasterKeyError(Exception):
    """The master key is missing or malformed; its text never appears in the message."""


def create_master_key(path: Path) -> bool:
    """Write 32 random bytes as 64 hex characters, mode 0600, unless a key is already there."""
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


def read_master_key(path: Path) -> bytes:
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


def dossier_key(master_key: bytes, dossier_id: str) -> bytes:
    return hmac.new(master_key, b"dossier:" + dossier_id.encode(), hashlib.sha256).digest()


def key_id(key: bytes) -> str:
    """A one-way label of a dossier key, to notice a changed key without storing the key."""
    return hmac.new(key, b"dossierhub key id", hashlib.sha256).hexdigest()[:16]


def bind_key(con: duckdb.DuckDBPyConnection, key: bytes) -> None:
    """Put the HMAC pads of `key` into session variables that `sql_pseudonym` reads."""
    padded = key.ljust(_BLOCK, b"\0") if len(key) <= _BLOCK else hashlib.sha256(key).digest()
    padded = padded.ljust(_BLOCK, b"\0")
    con.execute("SET VARIABLE dossierhub_ipad = ?", [bytes(b ^ 0x36 for b in padded)])
    con.execute("SET VARIABLE dossierhub_opad = ?", [bytes(b ^ 0x5C for b in padded)])


def sql_pseudonym(column_sql: str) -> str:
    """SQL for the pseudonym of `column_sql` on a connection prepared by `bind_key`."""
    inner = (
        f"unhex(sha256(getvariable('dossierhub_ipad') || encode(CAST({column_sql} AS VARCHAR))))"
    )
    return f"substr(sha256(getvariable('dossierhub_opad') || {inner}), 1, 32)"
