"""The viewer's report from what a hostile report kernel can leave: its outputs and the files in
published/. Real parquet files and nbformat notebooks; the end-to-end runs are in
tests/e2e/test_airlock.py."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import nbformat
import polars as pl
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from dossier_kernel.render import ARTEFACT_MIME, table_html
from dossierhub.reports import airlock
from dossierhub.state.home import RunFolder

SECRET = "household 4f1c... earns 274660"


def published(folder: Path, name: str, table: pl.DataFrame, meta: dict) -> None:
    out = folder / "published"
    out.mkdir(exist_ok=True)
    table.write_parquet(out / f"{name}.parquet")
    (out / f"{name}.meta.json").write_text(json.dumps(meta))


def reference(kind: str, name: str, html: str = "") -> dict:
    data = {ARTEFACT_MIME: {"kind": kind, "name": name}}
    if html:
        data["text/html"] = html
    return new_output("display_data", data=data)


def context(folder: Path) -> airlock.Context:
    artefacts = airlock.load_artefacts(RunFolder(folder))
    checks = [{"table": n, "passed": True, "findings": []} for n in artefacts.tables]
    checks += airlock.chart_checks(artefacts, checks)
    return airlock.Context(artefacts, {c["table"]: c for c in checks}, {}, 5000)


def render_viewer(folder: Path, cells: list, included: dict | None = None) -> str:
    book = new_notebook(cells=cells)
    return airlock.render(
        airlock.viewer_notebook(book, context(folder), included or {}), {}, review=False
    )


def test_the_hub_draws_the_checked_file_not_the_kernels_display(tmp_path: Path) -> None:
    per_area = pl.DataFrame({"area": ["Noord", "West"], "people": [1200, 3400]})
    published(tmp_path, "per_area", per_area, {"counts": ["people"], "title": "People per area"})
    html = render_viewer(
        tmp_path,
        [
            new_markdown_cell("## People"),
            new_code_cell(
                "",
                outputs=[
                    new_output("stream", name="stdout", text=SECRET),
                    new_output("stream", name="stdout", text="second print"),
                    # the kernel's display claims the table but carries something else
                    reference("table", "per_area", f"<p>{SECRET}</p>"),
                    reference("table", "not_published", f"<p>{SECRET}</p>"),
                ],
            ),
        ],
    )
    assert SECRET not in html and "second print" not in html
    assert "People per area" in html and "1,200" in html and "3,400" in html
    assert html.count('class="dh-withheld"') == 2  # the two prints share one placeholder
    assert 'data-withheld="c2.o0 c2.o1"' in html and 'data-withheld="c2.o3"' in html


def test_included_outputs_are_shown_with_their_justification(tmp_path: Path) -> None:
    cells = [
        new_code_cell("", outputs=[new_output("stream", name="stdout", text="total 12,000")]),
        new_code_cell("", outputs=[new_output("stream", name="stdout", text=SECRET)]),
    ]
    html = render_viewer(tmp_path, cells, {"c1.o0": "published by the statistics office"})
    assert "total 12,000" in html and "published by the statistics office" in html
    assert SECRET not in html and 'data-withheld="c2.o0"' in html


def test_unreferenced_tables_still_appear_and_charts_follow_their_table(tmp_path: Path) -> None:
    per_area = pl.DataFrame({"area": ["Noord", "West"], "people": [1200, 3400]})
    published(tmp_path, "per_area", per_area, {"counts": ["people"]})
    spec = {"table": "per_area", "kind": "bar", "x": "area", "y": ["people"], "title": "People"}
    (tmp_path / "published" / "per_area_chart.chart.json").write_text(json.dumps(spec))
    bad = {"table": "nowhere", "kind": "bar", "x": "a", "y": ["b"]}
    (tmp_path / "published" / "lost_chart.chart.json").write_text(json.dumps(bad))
    html = render_viewer(tmp_path, [new_code_cell("", outputs=[])])
    assert "Further published tables and charts" in html
    assert 'data-table="per_area"' in html and 'data-chart="per_area_chart"' in html
    assert "data:image/svg+xml;base64," in html
    checks = {c["table"]: c for c in context(tmp_path).checks.values()}
    assert checks["per_area_chart"]["passed"]
    assert not checks["lost_chart"]["passed"]
    assert "was not published" in checks["lost_chart"]["findings"][0]["message"]


def test_captions_publish_would_refuse_fail_the_table(tmp_path: Path) -> None:
    """A title publish() refuses makes the declaration unreadable: the table is not drawn
    (and reports/checks.py fails it); a description of a column the table lacks fails it
    here, and its captions are not shown."""
    per_area = pl.DataFrame({"area": ["Noord", "West"], "people": [1200, 3400]})
    published(tmp_path, "per_area", per_area, {"counts": ["people"], "title": SECRET * 20})
    described = {"counts": ["people"], "title": "T", "descriptions": {"nowhere": SECRET}}
    published(tmp_path, "described", per_area, described)
    artefacts = airlock.load_artefacts(RunFolder(tmp_path))
    assert set(artefacts.tables) == {"described"}
    checks = airlock.chart_checks(artefacts, [{"table": "described", "passed": True}])
    assert [c["passed"] for c in checks if c["table"] == "described"] == [False]
    outputs = [reference("table", "per_area"), reference("table", "described")]
    html = render_viewer(tmp_path, [new_code_cell("", outputs=outputs)])
    assert SECRET not in html and "1,200" in html
    assert 'data-table="per_area"' not in html


def test_outputs_are_indexed_with_ids_and_hashes(tmp_path: Path) -> None:
    book = new_notebook(
        cells=[
            new_markdown_cell("# T"),
            new_code_cell(
                "",
                outputs=[
                    reference("table", "per_area"),
                    new_output("execute_result", data={"text/plain": "42"}, execution_count=1),
                ],
            ),
        ]
    )
    nbformat.write(book, tmp_path / "report.ipynb")
    refs = airlock.write_outputs_index(RunFolder(tmp_path))
    assert [(r.id, r.kind, r.artefact) for r in refs] == [
        ("c2.o0", "artefact", "per_area"),
        ("c2.o1", "unchecked", None),
    ]
    assert airlock.unchecked_outputs(RunFolder(tmp_path))[0]["preview"] == "42"
    assert len({r.sha256 for r in refs}) == 2


def test_numbers_read_as_numbers() -> None:
    """DuckDB's sums of integers arrive as decimals; whole-number floats need no decimals."""
    table = pl.DataFrame(
        {
            "area": ["Noord", "West"],
            "passages": [Decimal("151930"), Decimal("1200")],
            "amount": [6505613.0, 12.0],
            "share": [12.5, None],
        }
    )
    html = table_html(table, {}, name="t")
    cells = re.findall(r'<td class="num">([^<]*)</td>', html)
    assert cells == ["151,930", "6,505,613", "12.5", "1,200", "12", "\N{EN DASH}"]
