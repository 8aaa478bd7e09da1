"""Report runs from the tests: the real `dossierhub` command on the test hub's HOME, and
template notebooks written on the fly."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from e2e_hub import DOSSIERHUB, Hub


def dossierhub(hub: Hub, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DOSSIERHUB, "--home", str(hub.home.root), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )


def template(
    path: Path, *cells: str, params: str = "", meta: dict | None = None, kernel: str = "dossier"
) -> None:
    book = new_notebook()
    book.metadata["kernelspec"] = {"name": kernel, "display_name": kernel, "language": "python"}
    if meta is not None:
        book.metadata["dossierhub"] = meta
    parameters = new_code_cell(params or "# Parameters")
    parameters.metadata["tags"] = ["parameters"]
    book.cells = [parameters, *(new_code_cell(c) for c in cells)]
    nbformat.write(book, path)


def run(hub: Hub, *args: str) -> tuple[subprocess.CompletedProcess[str], Path | None]:
    result = dossierhub(hub, "report", "run", *args)
    first = result.stdout.split()
    folder = hub.home.reports_dir / args[0] / first[0] if first else None
    return result, folder


def provenance(folder: Path) -> dict:
    return json.loads((folder / "provenance.json").read_text())


def review(hub: Hub, folder: Path, user: str = "a.jansen") -> str:
    """A run's review page as a lead of its dossier opens it (drawn on first opening)."""
    dossier, run_id = folder.parent.name, folder.name
    with hub.service_api(user) as api:
        answer = api.get(f"dossiers/{dossier}/runs/{run_id}/html", params={"view": "review"})
    assert answer.status_code == 200, answer.text
    assert (folder / "review.html").read_text() == answer.text
    return answer.text
