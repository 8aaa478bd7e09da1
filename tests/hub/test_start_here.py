"""The "Start here" notebook a workspace starts with: written by the chore as the workspace
would, executed for real (papermill, the Dossier kernel, the demo's extracts), and never
overwriting what a person changed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill
import pytest

from dossierhub.state.home import Home
from dossierhub.state.models import read_dossier
from dossierhub.workspaces.chores import START_HERE, write_start_here
from dossierhub.workspaces.workspacechores import start_here_spec


@pytest.fixture
def spec(applied_home: Path) -> dict:
    return start_here_spec(read_dossier(Home(applied_home), "armoede"))


def test_it_runs_top_to_bottom_on_the_demo(
    applied_home: Path, spec: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert write_start_here(tmp_path, spec) == "written"
    monkeypatch.setenv("DOSSIER_CATALOG", str(Home(applied_home).extract_catalog("armoede")))
    monkeypatch.setenv("DOSSIER_DUCKDB_THREADS", "1")
    ran = papermill.execute_notebook(
        str(tmp_path / START_HERE),
        str(tmp_path / "ran.ipynb"),
        kernel_name="dossier",
        cwd=str(tmp_path),
        progress_bar=False,
    )
    code = [cell for cell in ran.cells if cell.cell_type == "code"]
    assert all(o.output_type != "error" for cell in code for o in cell.outputs)
    assert ran.metadata.kernelspec.name == "dossier"
    # one example query per view, each showing that view's first rows
    queries = [cell for cell in code if cell.source.startswith("%%sql")]
    assert [q.source.splitlines()[1] for q in queries] == [
        f'SELECT * FROM "{view}" LIMIT 10' for view in spec["views"]
    ]
    for query, view in zip(queries, spec["views"].values(), strict=True):
        shown = "".join(str(o.get("data", {}).get("text/plain", "")) for o in query.outputs)
        assert view["columns"][0] in shown
    # publish() answers with the table and the check's verdict
    published = next(cell for cell in code if "publish(" in cell.source)
    assert any("text/html" in o.get("data", {}) for o in published.outputs)
    text = "\n".join(cell.source for cell in ran.cells if cell.cell_type == "markdown")
    for view in spec["views"]:
        assert f"| `{view}` |" in text
    for template in spec["templates"]:
        assert f"`{template}`" in text
    assert "dossiers/armoede" in text


def test_a_persons_changes_are_kept(spec: dict, tmp_path: Path) -> None:
    assert write_start_here(tmp_path, spec) == "written"
    path = tmp_path / START_HERE
    assert write_start_here(tmp_path, spec) == "kept"  # the same version: untouched
    # the dossier changes: an untouched notebook follows it
    spec["templates"] = [*spec["templates"], "extra_template"]
    assert write_start_here(tmp_path, spec) == "refreshed"
    assert "`extra_template`" in path.read_text()
    # outputs from running it are no change of the person's
    notebook = nbformat.read(path, as_version=4)
    notebook.cells[2].outputs = [nbformat.v4.new_output("stream", text="ran")]
    nbformat.write(notebook, path)
    spec["templates"] = spec["templates"][:-1]
    assert write_start_here(tmp_path, spec) == "refreshed"
    # an edited cell makes it the person's: never overwritten again
    notebook = nbformat.read(path, as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell("my_analysis = 1"))
    nbformat.write(notebook, path)
    before = path.read_bytes()
    spec["templates"] = [*spec["templates"], "extra_template"]
    assert write_start_here(tmp_path, spec) == "kept"
    assert path.read_bytes() == before


def test_a_planted_link_is_not_followed(spec: dict, tmp_path: Path) -> None:
    """The workspace may plant a link under the notebook's name: the chore (the workspace's
    own identity) neither reads nor writes through it."""
    target = tmp_path / "elsewhere.txt"
    target.write_text("not a notebook\n")
    folder = tmp_path / "workspace"
    folder.mkdir()
    (folder / START_HERE).symlink_to(target)
    assert write_start_here(folder, spec) == "kept"
    assert target.read_text() == "not a notebook\n"


def test_a_huge_file_under_its_name_is_kept_unread(spec: dict, tmp_path: Path) -> None:
    """A sparse file of 8 GiB under the notebook's name: kept as the team's, never read whole
    (the workspace's start waits for this chore)."""
    folder = tmp_path / "workspace"
    folder.mkdir()
    with (folder / START_HERE).open("wb") as handle:
        handle.truncate(8 * 1024**3)
    assert write_start_here(folder, spec) == "kept"
    assert (folder / START_HERE).stat().st_size == 8 * 1024**3


def test_the_chore_command(spec: dict, tmp_path: Path) -> None:
    """As workspacechores.run_chore starts it: python -I, the spec on stdin."""
    import json

    done = subprocess.run(
        [sys.executable, "-I", "-m", "dossierhub.workspaces.chores", "start-here", str(tmp_path)],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": os.environ["PATH"]},
    )
    assert done.stdout.strip() == "written"
    assert nbformat.read(tmp_path / START_HERE, as_version=4).metadata.dossierhub["start_here"]
