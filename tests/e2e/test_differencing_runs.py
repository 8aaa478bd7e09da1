"""Differencing between releases on real runs of district_profile over the demo data: two
neighbouring thresholds single out a few households in an area; the second run is flagged
and its release needs a written justification. A threshold off its step grid is refused
before any kernel starts."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import nbformat
import polars as pl
import pytest

from dossierhub.state.audit import AuditLog
from dossierhub.state.templates import builtin_dir, load_template

from e2e_hub import Hub
from e2e_runs import dossierhub

DOSSIER = "armoede"
# districts no other e2e test runs district_profile for, so their releases do not meet ours
QUIET_DISTRICTS = ("Oost", "Nieuw-West", "Centrum", "Weesp", "Zuidoost")
STEPPED = "stepped_profile"


def report_run(hub: Hub, user: str, district: str, threshold: int) -> Path:
    result = dossierhub(
        hub,
        "report",
        "run",
        DOSSIER,
        "district_profile",
        "--user",
        user,
        "-p",
        "district",
        district,
        "-p",
        "low_income_threshold",
        str(threshold),
    )
    assert result.returncode == 0, result.stderr
    run_id, status = result.stdout.split()[:2]
    assert status == "succeeded"
    return hub.home.reports_dir / DOSSIER / run_id


def release(hub: Hub, folder: Path, *justification: str) -> subprocess.CompletedProcess[str]:
    extra = ["--justification", *justification] if justification else []
    return dossierhub(hub, "report", "release", DOSSIER, folder.name, "--user", "a.jansen", *extra)


def checks(folder: Path) -> dict[str, dict]:
    return {c["table"]: c for c in json.loads((folder / "checks.json").read_text())}


def neighbouring_thresholds(hub: Hub) -> tuple[str, str, int, int, int, int]:
    """(district, area, threshold, next threshold on its grid, low-income households at each)
    where the two counts are both shown (at least min_count) and differ by less than
    min_count: found in the dossier's own extracts, as the template counts them."""
    parameter = next(
        p for p in load_template(hub.home, "district_profile").parameters if p.type == "int"
    )
    step = parameter.step or 1000  # the grid the template declares, else a round one
    extracts = hub.home.extract_dir(DOSSIER)
    minimum = json.loads((extracts / "provenance.json").read_text())["disclosure"]["min_count"]
    rows = duckdb.execute(
        f"""
        WITH h AS (
            SELECT h.district, h.area, i.disposable_income AS income
            FROM '{extracts / "households.parquet"}' h
            JOIN '{extracts / "incomes.parquet"}' i USING (household_id)),
        grid AS (SELECT unnest(range(?, ?, ?)) AS t)
        SELECT district, area, t, count(*) FILTER (WHERE income < t) AS low,
               count(*) FILTER (WHERE income < t + ?) AS low_next
        FROM h, grid GROUP BY ALL
        HAVING low >= ? AND low_next - low BETWEEN 1 AND ? - 1
        ORDER BY low_next - low, district, area, t
        """,
        [parameter.min, parameter.max, step, step, minimum, minimum],
    ).fetchall()
    quiet = [r for r in rows if r[0] in QUIET_DISTRICTS]
    assert quiet or rows, "the demo data has no neighbouring thresholds to difference"
    district, area, threshold, low, low_next = (quiet or rows)[0]
    return district, area, threshold, threshold + step, low, low_next


def test_neighbouring_thresholds_are_flagged_and_need_a_justification(hub: Hub) -> None:
    district, area, first_t, second_t, low, low_next = neighbouring_thresholds(hub)
    first = report_run(hub, "b.devries", district, first_t)
    before_release = report_run(hub, "c.bakker", district, second_t)
    rules = {f["rule"] for c in checks(before_release).values() for f in c["findings"]}
    assert "differencing" not in rules  # nothing was released yet

    released = release(hub, first)  # four eyes: an analyst ran it, a lead releases it
    assert released.returncode == 0, released.stderr
    assert json.loads((first / "release.json").read_text())["failed_checks"] == []

    # a run after the release is flagged in its checks, with the area and both counts
    second = report_run(hub, "b.devries", district, second_t)
    reach = checks(second)["reach_per_area"]
    assert not reach["passed"]
    findings = [f for f in reach["findings"] if f["rule"] == "differencing"]
    low_income = next(f for f in findings if f["column"] == "low_income_households")
    assert json.loads((second / "provenance.json").read_text())["checks_passed"] is False
    published = pl.read_parquet(second / "published" / "reach_per_area.parquet")
    assert published["area"].to_list().index(area) in low_income["rows"]
    message = low_income["message"]
    assert first.name in message and f"low_income_threshold={first_t}" in message
    assert f"area={area}: {low_next} here, {low} there (difference {low_next - low})" in message

    # both the flagged run and the one that finished before the release are refused
    for folder in (second, before_release):
        refused = release(hub, folder)
        assert refused.returncode == 1
        assert "reach_per_area (differencing" in refused.stderr, refused.stderr
        assert "written justification" in refused.stderr
        assert not (folder / "release.json").exists()

    justified = release(hub, second, "the lead checked the band: no person stands out")
    assert justified.returncode == 0, justified.stderr
    record = json.loads((second / "release.json").read_text())
    assert "reach_per_area" in record["failed_checks"]
    assert any(e["table"] == "reach_per_area" for e in record["differencing"])
    audit = [r for r in AuditLog(hub.home).read() if r["action"] == "report.release"]
    assert any(
        r["details"]["run"] == second.name and "reach_per_area" in r["details"]["failed_checks"]
        for r in audit
    )


@pytest.fixture
def stepped(hub: Hub) -> Iterator[str]:
    """district_profile with a step of 1000 on its threshold, as a template of the HOME."""
    book = nbformat.read(builtin_dir() / "district_profile.ipynb", as_version=4)
    for parameter in book.metadata["dossierhub"]["parameters"]:
        if parameter["name"] == "low_income_threshold":
            parameter["step"] = 1000
    nbformat.write(book, hub.home.templates_dir / f"{STEPPED}.ipynb")
    manifest = hub.manifest(DOSSIER)
    original = dict(manifest)
    hub.write_manifest(DOSSIER, {**manifest, "templates": [*manifest["templates"], STEPPED]})
    assert hub.apply().returncode == 0
    yield STEPPED
    hub.write_manifest(DOSSIER, original)
    (hub.home.templates_dir / f"{STEPPED}.ipynb").unlink()
    assert hub.apply().returncode == 0


def test_a_threshold_off_its_step_grid_is_refused_before_any_kernel_starts(
    hub: Hub, stepped: str
) -> None:
    runs = hub.home.reports_dir / DOSSIER
    scratch = hub.home.scratch_dir / DOSSIER

    def folders() -> tuple[set[Path], ...]:
        return tuple(set(f.iterdir()) if f.exists() else set() for f in (runs, scratch))

    before = folders()
    started = time.monotonic()
    result = dossierhub(
        hub, "report", "run", DOSSIER, stepped, "--user", "b.devries",
        "-p", "district", "Oost", "-p", "low_income_threshold", "20100",
    )  # fmt: skip
    assert result.returncode == 1
    assert (
        "parameter 'low_income_threshold': 20100 is not on its step grid (multiples of 1000 "
        "from 10000); the nearest allowed values are 20000 and 21000" in result.stderr
    )
    assert "nothing was run" in result.stderr
    assert time.monotonic() - started < 10
    assert folders() == before  # no run folder, no scratch folder: no kernel was started
    refusals = [r for r in AuditLog(hub.home).read() if r["action"] == "report.run.refused"]
    assert refusals and "20000 and 21000" in refusals[-1]["details"]["message"]
