"""The extract provenance contract (dossier_kernel.provenance) on real extracts built by apply:
the writer's serialisation is the file on disk, a malformed file is refused with its name and
the field wherever the workspace reads it (publish() included), and older files still read."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import dossier_kernel
from dossier_kernel.identifiers import DossierFacts
from dossier_kernel.provenance import (
    PROVENANCE_FILE,
    ExtractProvenance,
    ProvenanceError,
    read_provenance,
)
from dossier_kernel.publish import publish


@pytest.fixture
def extracts(applied_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of armoede's current extracts this test may spoil, as its workspace sees it."""
    copy = tmp_path / "armoede"
    shutil.copytree(applied_home / "extracts" / "armoede", copy)
    monkeypatch.setenv("DOSSIER_CATALOG", str(copy / "catalog.duckdb"))
    monkeypatch.delenv("DOSSIERHUB_RUN_DIR", raising=False)
    return copy


def rewrite(folder: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    path = folder / PROVENANCE_FILE
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return path


def test_the_writer_s_serialisation_is_the_file_apply_wrote(applied_home: Path) -> None:
    folder = applied_home / "extracts" / "armoede"
    provenance = read_provenance(folder)
    assert provenance.to_json() == (folder / PROVENANCE_FILE).read_text()
    assert provenance.views["residents"].quasi_identifiers == ("birth_year",)
    assert provenance.identifier_columns() >= {"bsn"}


MALFORMED: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "a count as text": (
        lambda d: d["views"]["residents"].update(rows_out="many"),
        "field views.residents.rows_out should be an integer, not str",
    ),
    "a missing field": (lambda d: d.pop("expires"), "field expires is missing"),
    "a date that is none": (
        lambda d: d.update(expires="soon"),
        "field expires should be a date such as 2027-06-30, not 'soon'",
    ),
    "a view file outside the folder": (
        lambda d: d["views"]["residents"].update(file="../../secrets/master.key"),
        "field views.residents.file should name a parquet file beside it",
    ),
    "identifiers that are not names": (
        lambda d: d["views"]["payments"].update(pseudonymized=[1, 2]),
        "field views.payments.pseudonymized should list names",
    ),
    "views that are a list": (
        lambda d: d.update(views=[]),
        "field views should be an object, not list",
    ),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_provenance_is_refused_naming_the_file_and_the_field(
    extracts: Path, case: str
) -> None:
    change, said = MALFORMED[case]
    path = rewrite(extracts, change)
    with pytest.raises(ProvenanceError) as refused:
        read_provenance(extracts)
    assert str(path) in str(refused.value) and said in str(refused.value)
    assert "dossierhub apply" in str(refused.value)


def test_a_provenance_that_is_not_json_is_refused(extracts: Path) -> None:
    path = extracts / PROVENANCE_FILE
    path.write_text(path.read_text()[:100])
    with pytest.raises(ProvenanceError, match="is not JSON") as refused:
        read_provenance(extracts)
    assert str(path) in str(refused.value)


def test_publish_refuses_pseudonyms_rather_than_pass_them_on_a_malformed_provenance(
    extracts: Path,
) -> None:
    """Read as "no identifiers" (as before the contract), a torn provenance.json let a table
    of the dossier's own pseudonyms, truncated, pass the notebook's check; now publish() says
    which file is wrong, and the pseudonym check names the field."""
    con = dossier_kernel.connect()
    table = con.sql("SELECT bsn[1:20] AS person, 12 AS n FROM residents LIMIT 30").pl()
    con.close()
    assert not publish(table, "people", counts=["n"]).passed  # the well-formed baseline
    path = extracts / PROVENANCE_FILE
    whole = path.read_text()
    path.write_text(whole[:-20])
    with pytest.raises(ProvenanceError, match="is not JSON") as refused:
        publish(table, "people", counts=["n"])
    assert str(path) in str(refused.value)
    path.write_text(whole)
    rewrite(extracts, lambda d: d["views"]["residents"].update(pseudonymized="bsn"))
    with pytest.raises(ProvenanceError, match=r"field views\.residents\.pseudonymized"):
        DossierFacts.from_environment()


def test_a_provenance_from_before_the_output_checks_still_reads(extracts: Path) -> None:
    """PROVENANCE_VERSION 1 had no quasi_identifiers; older still, no disclosure rules."""

    def old_shape(data: dict[str, Any]) -> None:
        data.pop("disclosure")
        for view in data["views"].values():
            view.pop("quasi_identifiers")

    rewrite(extracts, old_shape)
    provenance = read_provenance(extracts)
    assert isinstance(provenance, ExtractProvenance)
    assert provenance.disclosure == {}
    assert all(v.quasi_identifiers == () for v in provenance.views.values())
    assert provenance.views["residents"].rows_out > 0
    con = dossier_kernel.connect()
    table = con.sql("SELECT bsn AS person, 12 AS n FROM residents LIMIT 30").pl()
    con.close()
    verdict = publish(table, "people", counts=["n"])  # default rules, identifiers still known
    assert not verdict.passed
    assert any(f.column == "person" for f in verdict.findings)


def test_a_newer_writer_s_extra_fields_do_not_break_this_reader(extracts: Path) -> None:
    rewrite(extracts, lambda d: d.update(added_later={"x": 1}))
    assert read_provenance(extracts).dossier == "armoede"
