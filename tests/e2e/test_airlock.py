"""The airlock: what a viewer reads is what was checked. Real runs on the demo data, the
released report read in headless Chromium as a viewer."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import polars as pl
import pytest
from playwright.sync_api import Page, expect

from e2e_hub import Hub
from e2e_pages import shot
from e2e_runs import dossierhub, review, run, template

CHATTY = (
    # a team member's notebook that shows more than it publishes
    "incomes = db.sql('SELECT disposable_income FROM incomes "
    "ORDER BY disposable_income DESC LIMIT 3').pl()\n"
    "print('highest income', incomes[0, 0])",
    "incomes",  # a DataFrame display
    "from matplotlib.figure import Figure\n"
    "fig = Figure()\n"
    "fig.add_subplot().bar(['top'], [incomes[0, 0]])\n"
    "fig",  # a figure of one person's value
    "from dossier_kernel.disclosure import suppress_small\n"
    "per_district = db.sql('SELECT district, count(*) AS residents FROM residents "
    "GROUP BY ALL ORDER BY district').pl()\n"
    "publish(suppress_small(per_district, ['residents'], 10), 'residents_per_district',"
    " counts=['residents'], title='Residents per district')",
    "publish_chart('residents_per_district', x='district', y='residents', "
    "title='Residents per district')",
)


@pytest.fixture(scope="module")
def chatty(hub: Hub) -> Iterator[Hub]:
    template(hub.home.templates_dir / "chatty.ipynb", *CHATTY)
    manifest = hub.manifest("armoede")
    original = dict(manifest)
    manifest["templates"] = [*manifest["templates"], "chatty"]
    hub.write_manifest("armoede", manifest)
    assert hub.apply().returncode == 0
    yield hub
    hub.write_manifest("armoede", original)
    (hub.home.templates_dir / "chatty.ipynb").unlink()
    assert hub.apply().returncode == 0


RUNS = ("read", "include", "viewer", "review")  # one chatty run for each test that uses one
ZUID = (  # a district no other test releases (differencing compares releases)
    "district_profile", "-p", "district", "Zuid", "-p", "low_income_threshold", "40000",
)  # fmt: skip


@pytest.fixture(scope="module")
def runs(chatty: Hub) -> dict[str, Path]:
    """Each test's own real run, made up front two at a time (the dossier's two run slots):
    one run's kernel start and notebook overlap another's instead of following it."""

    def one(template: str, *extra: str) -> Path:
        result, folder = run(chatty, "armoede", template, *extra, "--user", "b.devries")
        assert result.returncode == 0, result.stderr
        assert folder is not None
        return folder

    with ThreadPoolExecutor(2) as pool:
        made = {name: pool.submit(one, "chatty") for name in RUNS}
        made["zuid"] = pool.submit(one, *ZUID)
        made["quality"] = pool.submit(one, "data_quality", "-p", "view", "incomes")
        return {name: future.result() for name, future in made.items()}


def highest_income(hub: Hub) -> float:
    catalog = hub.home.extract_dir("armoede") / "catalog.duckdb"
    con = duckdb.connect(str(catalog), read_only=True)
    con.execute(f"SET file_search_path = '{catalog.parent}'")
    try:
        return con.execute("SELECT max(disposable_income) FROM incomes").fetchall()[0][0]
    finally:
        con.close()


def outputs(folder: Path) -> list[dict]:
    return json.loads((folder / "outputs.json").read_text())


def test_only_checked_artefacts_reach_the_viewer(chatty: Hub, runs: dict[str, Path]) -> None:
    folder = runs["read"]
    top = highest_income(chatty)
    report = (folder / "report.html").read_text()
    review_page = review(chatty, folder)
    # the print, the DataFrame display and the figure are withheld from what viewers read ...
    assert "highest income" not in report and str(top) not in report
    assert '<img src="data:image/png' not in report
    unchecked = [o for o in outputs(folder) if o["kind"] == "unchecked"]
    assert len(unchecked) == 3, unchecked
    withheld = " ".join(re.findall(r'data-withheld="([^"]+)"', report)).split()
    assert sorted(withheld) == sorted(o["id"] for o in unchecked)
    assert report.count("withheld: not a published table or chart") == 3
    # ... the published table and its chart are drawn from the checked file
    table = pl.read_parquet(folder / "published" / "residents_per_district.parquet")
    assert report.count("<tr>") == table.height + 1
    assert 'data-chart="residents_per_district_chart"' in report
    assert "data:image/svg+xml;base64," in report
    # the reviewer sees everything, each unchecked output marked with its id
    assert "highest income" in review_page
    for output in unchecked:
        assert f"{output['id']}: unchecked output" in review_page
    checks = {c["table"]: c for c in json.loads((folder / "checks.json").read_text())}
    assert checks["residents_per_district_chart"]["passed"]
    assert checks["residents_per_district_chart"]["kind"] == "chart"


def test_an_unchecked_output_leaves_only_with_a_justification(
    chatty: Hub, runs: dict[str, Path]
) -> None:
    folder = runs["include"]
    printed = next(o for o in outputs(folder) if o["types"] == ["stream:stdout"])
    release = ["report", "release", "armoede", folder.name, "--user", "a.jansen"]
    bare = dossierhub(chatty, *release, "--include", printed["id"], " ")
    assert bare.returncode == 1
    assert f"including {printed['id']} needs a written justification" in bare.stderr
    unknown = dossierhub(chatty, *release, "--include", "c99.o0", "why not")
    assert unknown.returncode == 1 and "c99.o0 is not an unchecked output" in unknown.stderr
    assert not (folder / "release.json").exists()
    why = "the highest income of the demo city is published by the statistics office"
    released = dossierhub(chatty, *release, "--include", printed["id"], why)
    assert released.returncode == 0, released.stderr
    record = json.loads((folder / "release.json").read_text())
    assert record["included"] == [
        {"output": printed["id"], "sha256": printed["sha256"], "justification": why}
    ]
    report = (folder / "report.html").read_text()
    assert "highest income" in report and why in report
    assert report.count("withheld: not a published table or chart") == 2  # the other two
    assert '<img src="data:image/png' not in report
    audit = [json.loads(line) for line in (chatty.home.audit_log_file).read_text().splitlines()]
    releases = [r for r in audit if r["action"] == "report.release"]
    assert releases[-1]["details"]["included"] == record["included"]


def test_data_quality_shows_no_extreme_values(chatty: Hub, runs: dict[str, Path]) -> None:
    folder = runs["quality"]
    top = highest_income(chatty)
    review(chatty, folder)
    for page in ("report.html", "review.html", "report.ipynb"):
        text = (folder / page).read_text()
        assert str(top) not in text and f"{top:,.0f}" not in text, page
    checks = json.loads((folder / "checks.json").read_text())
    assert {c["table"] for c in checks} >= {"view_size", "column_profile"}
    assert [o for o in outputs(folder) if o["kind"] == "unchecked"] == []


def test_a_viewer_reads_a_released_report(
    chatty: Hub, runs: dict[str, Path], person: Callable[[str], Page]
) -> None:
    folder, chatty_folder = runs["zuid"], runs["viewer"]
    released = dossierhub(chatty, "report", "release", "armoede", folder.name, "--user", "a.jansen")
    assert released.returncode == 0, released.stderr
    assert (
        dossierhub(
            chatty, "report", "release", "armoede", chatty_folder.name, "--user", "a.jansen"
        ).returncode
        == 0
    )

    viewer = person("d.visser")
    viewer.goto(f"{chatty.service}dossiers/armoede/runs/{folder.name}")
    expect(viewer.locator("#review-tab")).to_have_count(0)  # no unchecked outputs for viewers
    frame = viewer.frame_locator("#report-frame")
    header = frame.locator("#report-header")
    expect(header).to_contain_text("Poverty measures 2026")
    expect(frame.locator("#report-title")).to_have_text("District profile")
    expect(header).to_contain_text("Zuid")
    expect(header).to_contain_text("40,000")
    expect(frame.locator("#report-released")).to_contain_text("by a.jansen")
    for name in ("households_per_area", "reach_per_area", "payments_per_scheme"):
        table = pl.read_parquet(folder / "published" / f"{name}.parquet")
        rows = frame.locator(f"figure[data-table='{name}'] tbody tr")
        expect(rows).to_have_count(table.height)  # every row, no "…"
    amount = frame.locator("figure[data-table='payments_per_scheme'] tbody tr td.num").last
    assert re.fullmatch(r"\d{1,3}(,\d{3})+", amount.inner_text()), amount.inner_text()
    chart = frame.locator("figure[data-chart='reach_per_area_chart'] img")
    expect(chart).to_be_visible()
    assert chart.evaluate("img => img.naturalWidth") > 300  # the SVG drew
    legend = frame.locator("figure[data-table='reach_per_area'] .dh-legend")
    expect(legend).to_contain_text("Households with a disposable income below the threshold")
    shot(viewer, "10-released-report-viewer")

    link = viewer.locator(".table-download[data-table='reach_per_area']")
    csv = viewer.request.get(f"{chatty.url.rstrip('/')}{link.get_attribute('href')}")
    assert csv.status == 200 and csv.headers["content-type"].startswith("text/csv")
    table = pl.read_parquet(folder / "published" / "reach_per_area.parquet")
    assert csv.text().splitlines()[0] == ",".join(table.columns)
    assert len(csv.text().splitlines()) == table.height + 1
    not_for_viewers = viewer.request.get(
        f"{chatty.service}dossiers/armoede/runs/{chatty_folder.name}/review.html"
    )
    assert not_for_viewers.status == 403

    viewer.goto(f"{chatty.service}dossiers/armoede/runs/{chatty_folder.name}")
    withheld = viewer.frame_locator("#report-frame").locator(".dh-withheld")
    expect(withheld).to_have_count(3)
    expect(withheld.first).to_contain_text("withheld")
    expect(viewer.frame_locator("#report-frame").locator("body")).not_to_contain_text(
        "highest income"
    )
    shot(viewer, "11-withheld-outputs-viewer")


def test_the_releasing_lead_reviews_every_output(
    chatty: Hub, runs: dict[str, Path], person: Callable[[str], Page]
) -> None:
    folder = runs["review"]
    lead = person("a.jansen")
    lead.goto(f"{chatty.service}dossiers/armoede/runs/{folder.name}?view=review")
    expect(lead.locator(".unchecked-output")).to_have_count(3)
    frame = lead.frame_locator("#report-frame")
    expect(frame.locator(".dh-mark-unchecked")).to_have_count(3)
    expect(frame.locator("body")).to_contain_text("highest income")
    shot(lead, "12-review-lead")
    printed = next(o for o in outputs(folder) if o["types"] == ["stream:stdout"])
    css = printed["id"].replace(".", "\\.")
    lead.locator(f"#include-{css}").check()
    lead.locator("#release-button").click()
    field = lead.locator(".unchecked-output .invalid-feedback")
    expect(field).to_contain_text("needs a written justification")
    assert not (folder / "release.json").exists()
    lead.locator(f"#include-{css}").check()
    lead.locator(f"#why-{css}").fill("an approved exception")
    lead.locator("#release-button").click()
    expect(lead.locator("#released")).to_have_text("released by a.jansen")
    record = json.loads((folder / "release.json").read_text())
    assert [i["output"] for i in record["included"]] == [printed["id"]]
