"""Pseudonyms as DuckDB computes them equal README.md's "Pseudonyms" contract computed with hmac."""

from __future__ import annotations

import hashlib
import hmac

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dossierhub.data.pseudonym import bind_key, dossier_key, sql_pseudonym

MASTER = bytes(range(32))
DOSSIER = "armoede"


def contract(value_text: str) -> str:
    """README.md's "Pseudonyms", written out independently of the product's helpers."""
    key = hmac.new(MASTER, b"dossier:" + DOSSIER.encode(), hashlib.sha256).digest()
    return hmac.new(key, value_text.encode("utf-8"), hashlib.sha256).digest()[:16].hex()


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect()
    bind_key(connection, dossier_key(MASTER, DOSSIER))
    return connection


@settings(max_examples=300, deadline=None)
@given(value=st.text())
def test_text_pseudonym_matches_contract(con: duckdb.DuckDBPyConnection, value: str) -> None:
    got = con.execute(
        f"SELECT {sql_pseudonym('v')} FROM (SELECT ?::VARCHAR AS v)", [value]
    ).fetchall()[0][0]
    assert got == contract(value)
    assert len(got) == 32


@settings(max_examples=300, deadline=None)
@given(value=st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_integer_pseudonym_matches_contract(con: duckdb.DuckDBPyConnection, value: int) -> None:
    got = con.execute(
        f"SELECT {sql_pseudonym('v')} FROM (SELECT ?::BIGINT AS v)", [value]
    ).fetchall()[0][0]
    assert got == contract(str(value))


def test_null_stays_null(con: duckdb.DuckDBPyConnection) -> None:
    for sql_type in ("VARCHAR", "BIGINT", "DATE"):
        rows = con.execute(
            f"SELECT {sql_pseudonym('v')} FROM (VALUES (NULL::{sql_type}), ('1'::{sql_type})) t(v)"
            if sql_type != "DATE"
            else f"SELECT {sql_pseudonym('v')} FROM (VALUES (NULL::DATE), (DATE '2025-01-01')) t(v)"
        ).fetchall()
        assert rows[0] == (None,)
        assert rows[1][0] is not None


def test_other_dossier_gives_other_pseudonyms() -> None:
    other = duckdb.connect()
    bind_key(other, dossier_key(MASTER, "mobiliteit"))
    got = other.execute(f"SELECT {sql_pseudonym('v')} FROM (SELECT '123456782' AS v)").fetchall()[0]
    assert got[0] != contract("123456782")


def test_key_is_not_in_query_text(con: duckdb.DuckDBPyConnection) -> None:
    """The pads are session variables: no SQL string the product writes holds key material."""
    key = dossier_key(MASTER, DOSSIER)
    text = sql_pseudonym('"bsn"')
    assert key.hex() not in text and MASTER.hex() not in text
