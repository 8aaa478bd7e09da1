"""The Dossier kernel, as a team member meets it: a real kernel with `db`, %%sql, sources()."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from jupyter_client.manager import KernelManager

import dossier_kernel

KERNEL_PACKAGE = Path(dossier_kernel.__file__).parent


class Kernel:
    def __init__(self, env: dict[str, str]):
        self.manager = KernelManager(kernel_name="dossier")
        self.manager.start_kernel(env=env)
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    def run(self, code: str) -> tuple[str, str, dict | None]:
        """Execute; return (stdout, the text/plain result, the error content if any)."""
        stdout: list[str] = []
        result: list[str] = []
        error: list[dict] = []

        def hook(message: dict) -> None:
            kind, content = message["header"]["msg_type"], message["content"]
            if kind == "stream":
                stdout.append(content["text"])
            elif kind == "execute_result":
                result.append(content["data"].get("text/plain", ""))
            elif kind == "error":
                error.append(content)

        self.client.execute_interactive(code, output_hook=hook, timeout=60)
        return "".join(stdout), "".join(result), (error[0] if error else None)

    def stop(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


@pytest.fixture(scope="module")
def kernel(applied_home: Path) -> Iterator[Kernel]:
    env = {
        **os.environ,
        "DOSSIER_CATALOG": str(applied_home / "extracts" / "armoede" / "catalog.duckdb"),
        "DOSSIER_DUCKDB_THREADS": "1",
        "DOSSIER_DUCKDB_MEMORY_LIMIT": "256MB",
    }
    started = Kernel(env)
    yield started
    started.stop()


def test_kernel_starts_with_db_ready(kernel: Kernel, applied_home: Path) -> None:
    _out, result, error = kernel.run("db.execute('SELECT count(*) FROM residents').fetchall()")
    assert error is None, error
    import duckdb

    expected = duckdb.execute(
        f"SELECT count(*) FROM '{applied_home}/raw/residents.parquet'"
    ).fetchall()
    assert result == repr(expected)


def test_sql_cell_magic_returns_polars(kernel: Kernel) -> None:
    _, result, error = kernel.run(
        "%%sql by_district\nSELECT district, count(*) AS residents FROM residents "
        "GROUP BY ALL ORDER BY residents DESC"
    )
    assert error is None, error
    assert result.startswith("shape: (8, 2)")
    _, kind, error = kernel.run("type(by_district).__module__ + ' ' + str(by_district.height)")
    assert error is None and kind == "'polars.dataframe.frame 8'"


def test_sources_lists_views_with_descriptions(kernel: Kernel) -> None:
    _, result, error = kernel.run("s = sources(); s['view'].to_list()")
    assert error is None, error
    assert result == "['households', 'incomes', 'payments', 'residents']"
    _, result, _ = kernel.run(
        "[(c['kind'], c['description']) for c in s.filter(s['view'] == 'residents')"
        "['columns'][0] if c['name'] in ('bsn', 'birth_year')]"
    )
    assert " ".join(result.split()) == (  # IPython may wrap the list over lines
        "[('pseudonym (identifier)', 'citizen service number'), "
        "('quasi-identifier', 'year of birth')]"
    )


def test_kernel_uses_the_dossier_limits(kernel: Kernel) -> None:
    _, result, error = kernel.run(
        "db.execute(\"SELECT current_setting('threads'), current_setting('memory_limit')\")"
        ".fetchall()"
    )
    assert error is None
    assert result.startswith("[(1, '2")  # 256MB is shown as 244.1 MiB


def test_connection_is_read_only(kernel: Kernel) -> None:
    _, _, error = kernel.run("db.execute('CREATE TABLE x (i INT)')")
    assert error is not None and "read-only" in error["evalue"]


def test_without_a_dossier_the_kernel_says_why() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DOSSIER_CATALOG"}
    lonely = Kernel(env)
    try:
        out, _, error = lonely.run("print('started')")
        assert error is None and out == "started\n"
        _, _, error = lonely.run("%%sql\nSELECT 1")
        assert error is not None
        assert error["ename"] == "NoDossierError"
        assert "DOSSIER_CATALOG is not set" in error["evalue"]
        _, _, error = lonely.run("db.execute('SELECT 1')")
        assert error is not None and "No dossier is configured" in error["evalue"]
    finally:
        lonely.stop()


def test_python_api_outside_a_kernel(applied_home: Path) -> None:
    con = dossier_kernel.connect(applied_home / "extracts" / "mobiliteit" / "catalog.duckdb")
    frame = dossier_kernel.sql("SELECT mode, sum(count) AS n FROM counts GROUP BY ALL", con)
    assert isinstance(frame, pl.DataFrame) and frame.height == 4
    with pytest.raises(dossier_kernel.NoDossierError, match="has not been applied"):
        dossier_kernel.connect(applied_home / "extracts" / "nosuch" / "catalog.duckdb")


def test_kernel_package_never_imports_dossierhub() -> None:
    """The workspace side must not reach hub code paths or secrets."""
    for path in KERNEL_PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(n.split(".")[0] == "dossierhub" for n in names), path
    probe = (
        "import sys, dossier_kernel, dossier_kernel.magics, dossier_kernel.__main__; "
        "print(any(m.split('.')[0] == 'dossierhub' for m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_publish_in_a_notebook_shows_the_verdict(kernel: Kernel) -> None:
    _, result, error = kernel.run(
        "import polars as pl\n"
        "r = publish(pl.DataFrame({'area': ['a', 'b'], 'people': [3, 40]}), 'per_area',"
        " counts=['people'])\n"
        "r.passed, r.findings[0].rule, r.findings[0].rows"
    )
    assert error is None, error
    assert result == "(False, 'min_count', [0])"
    _, _, error = kernel.run("publish(pl.DataFrame({'n': [12]}), 'undeclared')")
    assert error is not None and "say what the numeric column(s) n are" in error["evalue"]
    _, result, error = kernel.run(
        "from dossier_kernel.disclosure import suppress_small\n"
        "t = pl.DataFrame({'area': ['a', 'b'], 'people': [3, 40]})\n"
        "publish(suppress_small(t, ['people'], 10), 'per_area', counts=['people']).passed"
    )
    assert error is None and result == "True"
    _, result, error = kernel.run(
        "ids = db.sql('SELECT bsn FROM residents LIMIT 5').pl()\n"
        "[f.rule for f in publish(ids, 'ids').findings]"
    )
    assert error is None and result == "['identifiers']"


def test_sql_typo_is_one_clear_message(kernel: Kernel) -> None:
    """A typo in %%sql shows DuckDB's own hint, not a Python traceback."""
    _, _, error = kernel.run("%%sql\nSELECT * FROM residentz")
    assert error is not None and error["ename"] == "CatalogException"
    shown = "\n".join(error["traceback"])
    assert "Table with name residentz does not exist" in shown
    assert 'Did you mean "residents"' in shown
    assert "Traceback" not in shown and "magics.py" not in shown
    assert len(shown.splitlines()) <= 3
    # the cell failed, so papermill and "run all" stop at it; the kernel carries on
    reply = kernel.client.execute_interactive("%%sql\nSELECT * FROM residentz", timeout=60)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "CatalogException"
    _, result, _ = kernel.run("1 + 1")
    assert result == "2"


def test_sql_syntax_error_shows_where(kernel: Kernel) -> None:
    _, _, error = kernel.run("%%sql\nSELECT district,\nFROM residents WHER birth_year > 1980")
    assert error is not None and error["ename"] == "ParserException"
    shown = "\n".join(error["traceback"])
    assert 'syntax error at or near "birth_year"' in shown
    assert "LINE 2: FROM residents WHER birth_year > 1980" in shown  # DuckDB's line and caret
    assert "^" in shown and "Traceback" not in shown


def test_sql_traceback_on_demand(kernel: Kernel) -> None:
    kernel.run("%%sql\nSELECT nosuch FROM residents")
    out, _, error = kernel.run("%sql_traceback")
    assert error is None, error
    assert "Traceback" in out or "most recent call last" in out
    assert "sql_magic" in out and "nosuch" in out


def test_duckdb_errors_from_python_keep_their_traceback(kernel: Kernel) -> None:
    _, _, error = kernel.run("db.execute('SELECT * FROM residentz')")
    assert error is not None and error["ename"] == "CatalogException"
    assert len(error["traceback"]) > 1  # the usual IPython traceback frames


def _display(kernel: Kernel, code: str) -> dict:
    data: list[dict] = []

    def hook(message: dict) -> None:
        if message["header"]["msg_type"] in ("execute_result", "display_data"):
            data.append(message["content"]["data"])

    kernel.client.execute_interactive(code, output_hook=hook, timeout=60)
    assert len(data) == 1, data
    return data[0]


def test_sql_result_is_an_html_table_with_the_row_count(kernel: Kernel) -> None:
    data = _display(kernel, "%%sql\nSELECT * FROM residents")
    _, total, _ = kernel.run("db.execute('SELECT count(*) FROM residents').fetchall()[0][0]")
    html = data["text/html"]
    assert f"{int(total):,} rows, 5 columns" in html
    assert html.count("<tr>") == min(int(total), 100) + 2  # header, dtypes, the rows shown
    if int(total) > 100:
        assert "first 100 shown" in html
    assert "overflow: auto" in html  # scrolls inside the output, not the notebook
    small = _display(kernel, "%%sql\nSELECT 'a<b' AS x")
    assert "1 row, 1 column" in small["text/html"] and "a&lt;b" in small["text/html"]


TABLE_MIME = "application/vnd.dossier.sql-table.v1+json"


def test_sql_result_is_a_sortable_table_of_the_first_rows(kernel: Kernel) -> None:
    """JupyterLab gets the rows as data for the Dossier extension's table (sorted in the
    browser), beside the HTML and text; no widget, so no module of a kernel's choosing."""
    bundle = _display(kernel, "%%sql\nSELECT * FROM residents ORDER BY birth_year")
    _, total, _ = kernel.run("db.execute('SELECT count(*) FROM residents').fetchall()[0][0]")
    assert set(bundle) == {TABLE_MIME, "text/html", "text/plain"}
    table = bundle[TABLE_MIME]
    assert len(table["rows"]) == min(int(total), 100)  # no more rows leave the kernel than before
    assert table["count"].startswith(f"{int(total):,} rows, 5 columns")
    names = [c["name"] for c in table["columns"]]
    year = names.index("birth_year")
    assert table["columns"][year]["numeric"] is True
    years = [row[year] for row in table["rows"]]
    assert all(type(y) is int for y in years)  # typed values, sorted by the browser as such
    assert years == sorted(years)

    odd = _display(
        kernel,
        "%%sql\nSELECT '<b>x</b>' AS x, NULL::INTEGER AS n, 1152921504606846976::BIGINT AS big, "
        "DATE '2025-03-01' AS d, 1.5::DECIMAL(4, 2) AS dec, 'nan'::DOUBLE AS nan",
    )[TABLE_MIME]
    assert odd["count"] == "1 row, 6 columns"
    # text stays text (the renderer writes it as such), null stays null; numbers JavaScript
    # cannot hold exactly, dates and decimals come as their text; JSON has no NaN
    assert odd["rows"] == [["<b>x</b>", None, "1152921504606846976", "2025-03-01", "1.50", "nan"]]
    assert [c["numeric"] for c in odd["columns"]] == [False, True, True, False, True, True]
    json.dumps(odd, allow_nan=False)  # what the kernel sends is strict JSON


def test_a_workspace_result_converts_to_its_html_table(kernel: Kernel) -> None:
    """nbconvert (a notebook downloaded or converted outside JupyterLab) knows nothing of the
    Dossier extension's table: it shows the static HTML of the same rows."""
    import nbformat
    from nbconvert import HTMLExporter

    bundle = _display(kernel, "%%sql\nSELECT * FROM residents ORDER BY birth_year")
    cell = nbformat.v4.new_code_cell(
        "%%sql\nSELECT * FROM residents ORDER BY birth_year",
        outputs=[nbformat.v4.new_output("display_data", data=bundle)],
    )
    page, _ = HTMLExporter().from_notebook_node(nbformat.v4.new_notebook(cells=[cell]))
    assert bundle[TABLE_MIME]["count"] in page and page.count("<tr>") >= 100
    assert '"rows"' not in page  # the table's data is not in the page a second time


def test_a_report_kernel_stores_the_rows_once(applied_home: Path) -> None:
    """papermill stores every output of a report; nbconvert shows its HTML table."""
    env = {
        **os.environ,
        "DOSSIER_CATALOG": str(applied_home / "extracts" / "armoede" / "catalog.duckdb"),
        "DOSSIERHUB_RUN_DIR": str(applied_home / "run"),
    }
    report = Kernel(env)
    try:
        bundle = _display(report, "%%sql\nSELECT * FROM residents")
    finally:
        report.stop()
    assert set(bundle) == {"text/html", "text/plain"}
    assert "rows, 5 columns" in bundle["text/html"]


def _complete(kernel: Kernel, code: str, cursor: int | None = None) -> list[str]:
    """The cell's text up to the cursor as each offered completion would make it."""
    cursor = len(code) if cursor is None else cursor
    msg_id = kernel.client.complete(code, cursor)
    reply = kernel.client.get_shell_msg(timeout=30)
    assert reply["parent_header"]["msg_id"] == msg_id
    content = reply["content"]
    start = content["cursor_start"]
    return [code[:start] + m for m in content["matches"]]


def test_view_and_column_names_complete_in_sql_cells(kernel: Kernel) -> None:
    assert "%%sql\nSELECT * FROM residents" in _complete(kernel, "%%sql\nSELECT * FROM resi")
    assert "%%sql\nSELECT residents.birth_year" in _complete(
        kernel, "%%sql\nSELECT residents.birth"
    )
    # a column of the view the cell selects from, before the FROM is typed out
    cell = "%%sql\nSELECT bir FROM residents"
    assert "%%sql\nSELECT birth_year" in _complete(kernel, cell, cell.index(" FROM"))
    in_python = _complete(kernel, "resi")
    assert not any(m.endswith("residents") for m in in_python)


def test_sources_reads_well_in_lab_and_in_a_terminal(kernel: Kernel, applied_home: Path) -> None:
    import duckdb

    residents = duckdb.execute(
        f"SELECT count(*) FROM '{applied_home}/raw/residents.parquet'"
    ).fetchall()[0][0]
    html = _display(kernel, "sources()")["text/html"]
    assert html.count('<div class="dossier-source">') == 4  # a table per view
    assert f"<h4>residents: {residents:,} rows</h4>" in html
    assert (
        "<tr><td><code>birth_year</code></td><td>SMALLINT</td><td>quasi-identifier</td>"
        "<td>year of birth</td></tr>"
    ) in html
    printed = subprocess.run(
        [sys.executable, "-c", "import dossier_kernel as d; print(d.sources())"],
        env={**os.environ, "DOSSIER_CATALOG": str(_catalog(applied_home))},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"residents: {residents:,} rows\n" in printed
    assert "    birth_year    SMALLINT  quasi-identifier        year of birth\n" in printed
    assert "┌" not in printed  # not Polars' box of a nested column


def _catalog(home: Path) -> Path:
    return home / "extracts" / "armoede" / "catalog.duckdb"
