"""Per-dossier keyed pseudonyms (README.md, "Pseudonyms").

dossier key = HMAC-SHA256(master key, "dossier:" + id)
pseudonym   = hex(HMAC-SHA256(dossier key, CAST(value AS VARCHAR) as UTF-8)[:16]), NULL stays NULL

Extracts compute this inside DuckDB as plain SHA-256 calls over the HMAC pads, so it runs on
all cores at DuckDB speed. The pads are bound as session variables, never written into SQL
text, so no query string, plan or error message can carry key material.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the hub process reads keys without loading DuckDB
    import duckdb

_BLOCK = 64  # SHA-256 block size: HMAC pads the key to this length


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
