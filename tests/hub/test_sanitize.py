"""What survives in a report's HTML: what a reader needs, nothing that runs."""

from __future__ import annotations

from dossierhub.reports.sanitize import clean_report_html


def test_headings_tables_and_embedded_images_survive() -> None:
    html = (
        '<h2 id="reach">Reach</h2><table><thead><tr><th>area</th></tr></thead>'
        "<tbody><tr><td>West</td></tr></tbody></table>"
        '<img src="data:image/png;base64,iVBORw0KGgo=" alt="chart">'
    )
    assert clean_report_html(html) == html


def test_nothing_that_runs_survives() -> None:
    html = (
        '<style>.dataframe { color: red }</style><p onclick="alert(1)">text</p>'
        '<script>alert(2)</script><a href="javascript:alert(3)">link</a>'
        '<svg><circle onload="alert(4)"/></svg><iframe src="https://example.org"></iframe>'
        '<img src="x" onerror="alert(5)">'
    )
    cleaned = clean_report_html(html)
    for needle in (
        "alert",
        "onclick",
        "<script",
        "<svg",
        "<iframe",
        "javascript:",
        "<style",
        "color: red",
    ):
        assert needle not in cleaned, needle
    assert "<p>text</p>" in cleaned
