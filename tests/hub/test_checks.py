"""The hub's output checks (dossierhub.reports.checks) on a real applied demo HOME: tables are
made from the dossier's real extracts with the kernel's own `connect` and `publish()` (as in a
report run), then checked by `run_checks` against the dossier's own pseudonyms and
quasi-identifiers.
Each disguise of issue 11 is one test: it passed the checks before they compared values."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl
import pytest

import dossier_kernel
from dossier_kernel.disclosure import suppress_small
from dossier_kernel.publish import publish
from dossierhub.data.extracts import current_provenance
from dossierhub.reports.checks import run_checks
from dossierhub.state.home import Home, RunFolder


@dataclass
class Run:
    """A report run's folder, and the dossier's data as the report kernel sees it."""

    home: Home
    dossier_id: str
    folder: Path
    db: duckdb.DuckDBPyConnection

    def checks(self) -> dict[str, dict]:
        extracts = current_provenance(self.home.extract_dir(self.dossier_id))
        assert extracts is not None
        results = run_checks(self.home, self.dossier_id, RunFolder(self.folder), extracts)
        return {c["table"]: c for c in results}

    def sql(self, query: str) -> pl.DataFrame:
        return self.db.sql(query).pl()


def open_run(root: Path, folder: Path, monkeypatch: pytest.MonkeyPatch, dossier_id: str) -> Run:
    catalog = root / "extracts" / dossier_id / "catalog.duckdb"
    monkeypatch.setenv("DOSSIERHUB_RUN_DIR", str(folder))
    monkeypatch.setenv("DOSSIER_CATALOG", str(catalog))
    return Run(Home(root), dossier_id, folder, dossier_kernel.connect(catalog))


@pytest.fixture
def run(applied_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Run:
    return open_run(applied_home, tmp_path, monkeypatch, "armoede")


SECRET_TITLE = "household 4f1c earns 274660 "


def findings(check: dict) -> dict[tuple[str, str | None], tuple[list[int], str]]:
    return {(f["rule"], f["column"]): (f["rows"], f["severity"]) for f in check["findings"]}


def test_quasi_identifiers_are_carried_into_the_extracts_provenance(applied_home: Path) -> None:
    provenance = current_provenance(Home(applied_home).extract_dir("armoede"))
    assert provenance is not None
    views = provenance.views
    assert views["residents"].quasi_identifiers == ("birth_year",)
    assert views["households"].quasi_identifiers == ("size",)  # household size
    assert views["incomes"].quasi_identifiers == ()


DISGUISES = {
    "upper_cased": ("SELECT upper(bsn) AS person, district FROM residents LIMIT 30", []),
    "truncated_to_20": ("SELECT bsn[1:20] AS person, district FROM residents LIMIT 30", []),
    "categorical": ("SELECT bsn::ENUM_PLACEHOLDER AS person, district FROM residents LIMIT 30", []),
    "integer_attribute": (
        "SELECT ('0x' || household_id[1:15])::BIGINT AS person, district FROM residents LIMIT 30",
        ["person"],
    ),
}


@pytest.mark.parametrize("disguise", sorted(DISGUISES))
def test_disguised_pseudonyms_are_flagged(run: Run, disguise: str) -> None:
    query, attributes = DISGUISES[disguise]
    if disguise == "categorical":
        table = run.sql(query.replace("::ENUM_PLACEHOLDER", "")).with_columns(
            pl.col("person").cast(pl.Categorical)
        )
    else:
        table = run.sql(query)
    early = publish(table, disguise, attributes=attributes)
    check = run.checks()[disguise]
    assert not check["passed"]
    found = findings(check)
    assert found[("identifiers", "person")] == (list(range(30)), "fail")
    assert "the dossier's own pseudonyms" in check["findings"][0]["message"]
    # the author saw it already in the notebook: the kernel compares with its extracts too
    assert not early.passed
    assert next(f.rule for f in early.findings if f.column == "person") == "identifiers"


def test_a_pseudonym_diluted_among_other_values_is_flagged(run: Run) -> None:
    areas = run.sql("SELECT DISTINCT area AS label FROM households ORDER BY area")
    ids = run.sql("SELECT household_id AS label FROM households LIMIT 2")
    table = pl.concat([areas, ids])  # 2 of about 30 values are pseudonyms
    publish(table, "labels")
    check = run.checks()["labels"]
    assert findings(check) == {("identifiers", "label"): ([areas.height, areas.height + 1], "fail")}


def test_a_count_declared_as_an_attribute_is_shown_to_the_reviewer(run: Run) -> None:
    table = run.sql(
        "SELECT area, count(*) AS households, 3 AS disguised FROM households "
        "GROUP BY area ORDER BY area"
    )
    publish(table, "per_area", counts=["households"], attributes=["disguised"])
    check = run.checks()["per_area"]
    assert check["passed"]  # shown, not blocking
    assert findings(check) == {
        ("count_like_attribute", "disguised"): (list(range(table.height)), "review")
    }


def test_a_count_stored_as_text_is_checked_as_a_count(run: Run) -> None:
    table = run.sql(
        "SELECT area, count(*)::VARCHAR AS households FROM households "
        "WHERE district = 'Noord' GROUP BY area UNION ALL SELECT 'tiny', '3' ORDER BY area"
    )
    tiny = table["area"].to_list().index("tiny")
    publish(table, "as_text")  # no numeric column: publish() asks for no declaration
    publish(table, "as_declared_text", counts=["households"])
    checks = run.checks()
    for name in ("as_text", "as_declared_text"):
        assert not checks[name]["passed"]
        rows, severity = findings(checks[name])[("min_count", "households")]
        assert tiny in rows and severity == "fail"


def test_one_households_income_in_a_single_row_is_flagged(run: Run) -> None:
    table = run.sql("SELECT disposable_income FROM incomes LIMIT 1")
    publish(table, "one_value", attributes=["disposable_income"])
    check = run.checks()["one_value"]
    assert findings(check) == {("microdata", "disposable_income"): ([0], "fail")}


def test_person_level_microdata_declared_as_attributes_is_refused(run: Run) -> None:
    records = run.sql("SELECT month, scheme, amount FROM payments LIMIT 5000")
    publish(records, "all_payments", attributes=["amount"])
    publish(records.head(900), "some_payments", attributes=["amount"])
    checks = run.checks()
    rules = {f["rule"] for f in checks["all_payments"]["findings"]}
    assert rules == {"max_rows", "microdata", "unknown_group_size"}
    assert not checks["some_payments"]["passed"]
    rows, severity = findings(checks["some_payments"])[("microdata", "amount")]
    assert severity == "fail" and len(rows) > 800


def test_quasi_identifier_combinations_need_the_minimum_count(run: Run) -> None:
    people = run.sql("SELECT birth_year, area FROM residents WHERE district = 'Weesp'")
    publish(people, "people", attributes=["birth_year"])
    per_year = suppress_small(
        run.sql(
            "SELECT birth_year, count(*) AS residents FROM residents "
            "WHERE district = 'Weesp' GROUP BY ALL"
        ),
        ["residents"],
        10,
    )
    publish(per_year, "per_year", counts=["residents"], attributes=["birth_year"])
    checks = run.checks()
    assert not checks["people"]["passed"]
    rows, _ = findings(checks["people"])[("k_anonymity", "birth_year")]
    assert 0 < len(rows) <= people.height
    years = people["birth_year"].gather(rows).value_counts()
    assert years["count"].max() < 10  # the rows of birth years shared by fewer than 10
    assert checks["per_year"]["passed"] and checks["per_year"]["findings"] == []


def test_the_built_in_aggregates_pass(run: Run) -> None:
    table = suppress_small(
        run.sql("SELECT area, type, count(*) AS households FROM households GROUP BY ALL"),
        ["households"],
        10,
    )
    publish(table, "households_per_area", counts=["households"])
    check = run.checks()["households_per_area"]
    assert check == {"table": "households_per_area", "passed": True, "findings": []}


def test_an_hour_of_day_is_shown_but_does_not_block(
    applied_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = open_run(applied_home, tmp_path, monkeypatch, "mobiliteit")
    hourly = run.sql(
        "SELECT hour, sum(count) AS passages FROM counts WHERE mode = 'fiets' "
        "GROUP BY hour ORDER BY hour"
    )
    publish(hourly, "passages_per_hour", counts=["passages"], attributes=["hour"])
    check = run.checks()["passages_per_hour"]
    assert check["passed"]
    # every hour from 1 is under mobiliteit's min_count (100): shown for review, not blocking
    assert findings(check) == {("count_like_attribute", "hour"): (list(range(1, 24)), "review")}


def test_a_hand_written_declaration_is_not_trusted(run: Run) -> None:
    published = run.folder / "published"
    published.mkdir()
    table = run.sql("SELECT area, count(*) AS households FROM households GROUP BY area")
    table = pl.concat(
        [table, pl.DataFrame({"area": ["x"], "households": [2]})], how="vertical_relaxed"
    )
    table.write_parquet(published / "undeclared.parquet")
    (published / "undeclared.meta.json").write_text(json.dumps({}))
    table.write_parquet(published / "garbled.parquet")
    (published / "garbled.meta.json").write_text(json.dumps({"counts": "households"}))
    (published / "not_a_table.parquet").write_text("no parquet here")
    (published / "not_a_table.meta.json").write_text(json.dumps({}))
    checks = run.checks()
    assert findings(checks["undeclared"]) == {
        ("min_count", "households"): ([table.height - 1], "fail")
    }
    for name in ("garbled", "not_a_table"):
        assert not checks[name]["passed"]
        assert checks[name]["findings"][0]["rule"] == "published"


def test_a_pseudonym_in_a_chart_title_fails_the_table_it_draws(run: Run) -> None:
    """The chart's texts are checked with its table (the chart passes when the table does)."""
    from dossier_kernel.publish import publish_chart

    person = run.sql("SELECT household_id FROM households LIMIT 1").item()
    per_area = run.sql("SELECT area, count(*) AS households FROM households GROUP BY ALL")
    publish(per_area, "per_area", counts=["households"])
    publish_chart("per_area", x="area", y="households", title="Households per area")
    assert run.checks()["per_area"]["passed"]
    publish_chart("per_area", x="area", y="households", y_label=f"incl. {person[:14].upper()}")
    check = run.checks()["per_area"]
    assert not check["passed"]
    assert findings(check)[("captions", None)] == ([], "fail")
    assert person[:12] not in json.dumps(check).lower()


HOSTILE_DECLARATIONS = {
    # what a hostile kernel can write instead of publish()'s declaration, and the field named
    "title_object": ({"counts": ["households"], "title": {"text": SECRET_TITLE}}, "field title"),
    "counts_nested": ({"counts": [["households"]]}, "field counts"),
    "huge_description": (
        {"counts": ["households"], "descriptions": {"area": SECRET_TITLE * 10_000}},
        "the file is larger than",
    ),
    "long_description": (
        {"counts": ["households"], "descriptions": {"area": SECRET_TITLE * 10}},
        "field descriptions",
    ),
    "deeply_nested": ("[" * 30_000 + "]" * 30_000, "the file is not JSON"),
}


def test_a_hostile_declaration_fails_its_table_and_is_not_drawn(run: Run) -> None:
    """Each malformed .meta.json fails that table's check with a finding naming the file and
    the field, the run's other tables are checked as usual, and the viewer's report never
    draws the table (airlock reads the declaration through the same strict reader)."""
    from dossierhub.reports import airlock

    published = run.folder / "published"
    published.mkdir()
    table = run.sql("SELECT area, count(*) AS households FROM households GROUP BY area")
    for name, (meta, _) in HOSTILE_DECLARATIONS.items():
        table.write_parquet(published / f"{name}.parquet")
        text = meta if isinstance(meta, str) else json.dumps(meta)
        (published / f"{name}.meta.json").write_text(text)
    publish(table, "honest", counts=["households"])
    checks = run.checks()
    assert checks["honest"]["passed"]
    for name, (_, field) in HOSTILE_DECLARATIONS.items():
        assert not checks[name]["passed"], name
        [finding] = checks[name]["findings"]
        assert finding["rule"] == "published"
        assert f"{name}.meta.json: {field}" in finding["message"], finding["message"]
    assert SECRET_TITLE not in json.dumps(checks)
    artefacts = airlock.load_artefacts(RunFolder(run.folder))
    assert set(artefacts.tables) == {"honest"}
