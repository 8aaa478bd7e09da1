"""Red-team findings against the airlock (issue 11), each a failing test on main at f0b442a.

Every test performs the attack on real components: tables written by publish() itself from the
dossier's real extracts and checked by the hub's run_checks; released run folders compared by
differencing_checks; a real audit log rolled back and verified by `dossierhub audit verify`;
the dossier's audit trail read as its viewer. See the red-team report for the full runs
(report.html and CSV as a viewer) behind each one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import duckdb
import polars as pl
import pytest

import dossier_kernel
from dossier_kernel.publish import publish
from dossierhub import portal
from dossierhub.data.extracts import current_provenance
from dossierhub.reports.checks import run_checks
from dossierhub.reports.differencing import differencing_checks
from dossierhub.state.home import Home, RunFolder

from helpers import run_cli, write_rules_only_extracts

DOSSIER = "armoede"

# ---------------------------------------------------------------- output checks


@pytest.fixture
def kernel(
    applied_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> duckdb.DuckDBPyConnection:
    """The dossier as a report kernel sees it; publish() writes into a run folder."""
    catalog = applied_home / "extracts" / DOSSIER / "catalog.duckdb"
    monkeypatch.setenv("DOSSIERHUB_RUN_DIR", str(tmp_path))
    monkeypatch.setenv("DOSSIER_CATALOG", str(catalog))
    return dossier_kernel.connect(catalog)


def hub_verdict(applied_home: Path, folder: Path, table: str) -> dict:
    home = Home(applied_home)
    extracts = current_provenance(home.extract_dir(DOSSIER))
    assert extracts is not None
    checks = {c["table"]: c for c in run_checks(home, DOSSIER, RunFolder(folder), extracts)}
    return checks[table]


def households(db: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    return db.sql(
        "SELECT h.household_id, h.area, h.size, i.disposable_income AS income "
        "FROM households h JOIN incomes i USING (household_id)"
    ).pl()


def small_counts(db: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Households above an income cut-off per area, the first cut-off at which at least a
    tenth of the areas have 1 to 4 households and some have 5 to 9."""
    for cut in range(50000, 120001, 5000):
        frame = (
            households(db)
            .filter(pl.col("income") >= cut)
            .group_by("area")
            .agg(pl.len().alias("n"))
            .sort("area")
        )
        n = pl.col("n")
        if (
            frame.filter(n < 5).height >= 0.1 * frame.height
            and frame.filter((n >= 5) & (n < 10)).height > 0
        ):
            return frame
    raise AssertionError("no cut-off gives small counts in the demo data")


def test_pseudonyms_as_column_names_fail(
    kernel: duckdb.DuckDBPyConnection, applied_home: Path, tmp_path: Path
) -> None:
    """A pivot by household (a common slip): each column is named by a household's
    pseudonym and holds that household's income. Column names are never compared."""
    rich = households(kernel).sort("income", descending=True).head(5)
    wide = rich.pivot(on="household_id", index="area", values="income")
    publish(wide, "pivot_by_household", attributes=[c for c in wide.columns if c != "area"])
    assert not hub_verdict(applied_home, tmp_path, "pivot_by_household")["passed"]


def test_pseudonyms_in_titles_descriptions_and_table_names_fail(
    kernel: duckdb.DuckDBPyConnection, applied_home: Path, tmp_path: Path
) -> None:
    """Captions and names reach viewers verbatim (report.html, CSV URL) and are not checked."""
    top = households(kernel).sort("income", descending=True).row(0, named=True)
    per_area = households(kernel).group_by("area").agg(pl.len().alias("households"))
    leak = f"{top['household_id']} earns {top['income']}"
    publish(per_area, "captions", counts=["households"], title=f"Households ({leak})")
    publish(per_area, "described", counts=["households"], descriptions={"households": leak})
    publish(per_area, "h" + top["household_id"], counts=["households"])
    for table in ("captions", "described", "h" + top["household_id"]):
        assert not hub_verdict(applied_home, tmp_path, table)["passed"], table


@pytest.mark.parametrize(
    "disguise",
    [
        "list",  # [3]: nested, not numeric, not text: no rule looks at it
        "text_with_unit",  # "3 households", even declared as a count
        "float_as_text",  # "3.0": not a whole number, so not "mostly whole numbers"
        "text_with_markers",  # "<5" for 1-4 (the wrong threshold), 5-9 shown as text
    ],
)
def test_small_counts_in_disguise_fail(
    kernel: duckdb.DuckDBPyConnection, applied_home: Path, tmp_path: Path, disguise: str
) -> None:
    counts = small_counts(kernel)
    n = pl.col("n")
    if disguise == "list":
        table, declared = counts.with_columns(pl.concat_list(n).alias("households")), {}
    elif disguise == "text_with_unit":
        text = n.cast(pl.String) + " households"
        table, declared = counts.with_columns(text.alias("households")), {"counts": ["households"]}
    elif disguise == "float_as_text":
        text = n.cast(pl.Float64).cast(pl.String)
        table, declared = counts.with_columns(text.alias("households")), {}
    else:
        text = pl.when(n < 5).then(pl.lit("<5")).otherwise(n.cast(pl.String))
        table, declared = counts.with_columns(text.alias("households")), {}
        assert counts.filter((n >= 5) & (n < 10)).height > 0  # shown 5 to 9
        assert counts.filter(n < 5).height >= 0.1 * counts.height  # enough markers
    publish(table.drop("n"), "disguised", **declared)
    assert not hub_verdict(applied_home, tmp_path, "disguised")["passed"]


def test_a_pseudonym_stored_as_a_duration_fails(
    kernel: duckdb.DuckDBPyConnection, applied_home: Path, tmp_path: Path
) -> None:
    """15 hex digits of a pseudonym as microseconds: shown to viewers as "8588342 days,
    19:27:44.722239", which gives the digits back exactly."""
    refs = (
        households(kernel)
        .head(20)
        .select(
            "area",
            pl.col("household_id")
            .str.slice(0, 15)
            .str.to_integer(base=16)
            .cast(pl.Duration("us"))
            .alias("ref"),
        )
    )
    publish(refs, "durations")
    assert not hub_verdict(applied_home, tmp_path, "durations")["passed"]


def test_a_mean_over_one_household_fails(
    kernel: duckdb.DuckDBPyConnection, applied_home: Path, tmp_path: Path
) -> None:
    """An analyst picks a threshold that leaves one household in an area; the mean per
    area, published without its count, is that household's income."""
    rich = households(kernel).filter(pl.col("income") >= 90000)
    means = rich.group_by("area").agg(pl.col("income").mean().alias("mean_income"))
    sizes = rich.group_by("area").len()
    assert sizes.filter(pl.col("len") == 1).height > 0
    publish(means, "mean_income", attributes=["mean_income"])
    assert not hub_verdict(applied_home, tmp_path, "mean_income")["passed"]


def test_person_level_rows_with_a_joined_count_fail(
    kernel: duckdb.DuckDBPyConnection, applied_home: Path, tmp_path: Path
) -> None:
    """One row per household (area, size, income) with its area's household count joined
    on: the count column switches the k-anonymity and records rules off."""
    rows = households(kernel)
    per_area = rows.group_by("area").agg(pl.len().alias("households_in_area"))
    micro = (
        rows.join(per_area, on="area")
        .select("area", "size", "income", "households_in_area")
        .head(900)
    )
    publish(micro, "records", counts=["households_in_area"], attributes=["size", "income"])
    assert not hub_verdict(applied_home, tmp_path, "records")["passed"]


def test_dominance_does_not_trust_the_order_of_contributions(
    kernel: duckdb.DuckDBPyConnection, applied_home: Path, tmp_path: Path
) -> None:
    """Contributions listed smallest first (publish() asks for descending, nobody checks):
    a cell made 90% of one contributor passes, because the hub takes the list's head."""
    table = pl.DataFrame({"area": ["A"], "households": [12], "amount": [100_000.0]})
    contributions = [[1000.0] * 10 + [90_000.0]]  # the largest last
    publish(table, "amounts", counts=["households"], magnitudes={"amount": contributions})
    assert not hub_verdict(applied_home, tmp_path, "amounts")["passed"]


# ---------------------------------------------------------------- differencing


class Runs:
    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.home = Home(root)
        self.monkeypatch = monkeypatch
        monkeypatch.delenv("DOSSIER_CATALOG", raising=False)
        write_rules_only_extracts(self.home, DOSSIER, {"min_count": 10})

    def run(
        self, run_id: str, frame: pl.DataFrame, declared: dict, *, threshold: int, released: bool
    ) -> Path:
        folder = self.home.reports_dir / DOSSIER / run_id
        folder.mkdir(parents=True)
        self.monkeypatch.setenv("DOSSIERHUB_RUN_DIR", str(folder))
        publish(frame, "low_income", **declared)
        self.monkeypatch.delenv("DOSSIERHUB_RUN_DIR")
        provenance = {
            "run_id": run_id,
            "dossier": DOSSIER,
            "user": "b.devries",
            "status": "succeeded",
            "template": "rt_diff",
            "parameters": {"threshold": threshold},
        }
        (folder / "provenance.json").write_text(json.dumps(provenance))
        if released:
            (folder / "release.json").write_text(json.dumps({"by": "a.jansen"}))
        return folder


def low_income(rows: list[tuple[str, int]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"area": pl.String, "n": pl.Int64}, orient="row")


def test_the_parameter_as_a_column_does_not_switch_differencing_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A template that adds its threshold as a column (so the CSV says what it is): the
    column is an integer attribute, hence a dimension, and its value differs per run, so
    no row ever joins and one household between 20,000 and 21,000 goes unflagged."""
    runs = Runs(tmp_path / "home", monkeypatch)

    def table(threshold: int, n: int) -> pl.DataFrame:
        return low_income([("Noord-West", n), ("Noord-Oost", 40)]).with_columns(
            pl.lit(threshold).alias("threshold")
        )

    declared = {"counts": ["n"], "attributes": ["threshold"]}
    runs.run("20260101T000000-aaaaaa", table(21000, 11), declared, threshold=21000, released=True)
    new = runs.run(
        "20260101T000001-bbbbbb", table(20000, 10), declared, threshold=20000, released=False
    )
    flagged = {e["table"] for e in differencing_checks(runs.home, DOSSIER, RunFolder(new))}
    assert "low_income" in flagged


def test_a_row_left_out_is_compared_like_a_suppressed_cell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """district_profile's payments_per_scheme leaves small rows out instead of blanking
    them; a blank against a shown 10 is flagged, a missing row against it is not."""
    runs = Runs(tmp_path / "home", monkeypatch)
    runs.run(
        "20260101T000000-aaaaaa",
        low_income([("Noord-West", 10), ("Noord-Oost", 40)]),
        {"counts": ["n"]},
        threshold=21000,
        released=True,
    )
    new = runs.run(
        "20260101T000001-bbbbbb",
        low_income([("Noord-Oost", 40)]),  # 9: left out
        {"counts": ["n"]},
        threshold=20000,
        released=False,
    )
    flagged = {e["table"] for e in differencing_checks(runs.home, DOSSIER, RunFolder(new))}
    assert "low_income" in flagged


# ---------------------------------------------------------------- audit

RUN = "20260101T000000-abcdef"


@pytest.fixture
def released(applied_home: Path, tmp_path: Path) -> Path:
    """A copy of an applied HOME with a succeeded run, a copy of audit/ taken before it
    was released (audit-before/), and the release."""
    root = tmp_path / "home"
    shutil.copytree(applied_home, root, symlinks=True)
    folder = root / "reports" / DOSSIER / RUN
    folder.mkdir(parents=True)
    (folder / "report.ipynb").write_text('{"cells": []}')
    provenance = {
        "run_id": RUN,
        "dossier": DOSSIER,
        "template": "district_profile",
        "user": "a.jansen",
        "status": "succeeded",
        "outputs": {"report.ipynb": hashlib.sha256(b'{"cells": []}').hexdigest()},
        "checks_passed": True,
    }
    (folder / "provenance.json").write_text(json.dumps(provenance))
    (folder / "checks.json").write_text("[]")
    shutil.copytree(root / "audit", tmp_path / "audit-before")
    result = run_cli(root, "report", "release", DOSSIER, RUN, "--user", "e.mulder")
    assert result.exit_code == 0, result.stderr
    assert run_cli(root, "audit", "verify").exit_code == 0
    return root


def roll_back(home: Path) -> None:
    shutil.rmtree(home / "audit")
    shutil.copytree(home.parent / "audit-before", home / "audit")


def strip_head(release: dict) -> object:
    release.pop("audit_head")
    return release


def wrap_in_a_list(release: dict) -> object:
    return [release]


@pytest.mark.parametrize("disguise", [strip_head, wrap_in_a_list])
def test_a_rollback_below_a_release_fails_whatever_its_release_json_says(
    released: Path, disguise
) -> None:
    """A HOME writer without the master key puts back audit/ from before the release and
    rewrites release.json (removes audit_head, or wraps it in a list): verify passed, and
    viewers still read the released report while the trail has no report.release for it."""
    path = released / "reports" / DOSSIER / RUN / "release.json"
    roll_back(released)
    path.write_text(json.dumps(disguise(json.loads(path.read_text()))))
    viewer = portal.Person("d.visser")
    assert RUN in [r["run_id"] for r in portal.runs_for(Home(released), DOSSIER, viewer)]
    assert run_cli(released, "audit", "verify").exit_code == 1


def test_a_team_members_free_text_does_not_reach_viewers_through_the_audit_trail(
    applied_home: Path, tmp_path: Path
) -> None:
    """An analyst types data as a template name or parameter name: the refusal is recorded
    with the text, under the dossier, and its viewers read it in the trail (no four eyes).
    (A failed run's error, e.g. a template's ValueError naming a household and its income,
    reaches viewers the same way, in report.finished.)"""
    root = tmp_path / "home"
    shutil.copytree(applied_home, root, symlinks=True)
    leak = "hh 0123456789abcdef0123456789abcdef earns 227440"
    result = run_cli(root, "report", "run", DOSSIER, leak, "--user", "b.devries")
    assert result.exit_code == 1
    trail = portal.audit_trail(Home(root), DOSSIER, portal.Person("d.visser"))
    assert leak not in json.dumps(trail)
