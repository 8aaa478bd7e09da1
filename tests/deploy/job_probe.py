"""What a report Job's identity can do with a run's scratch folder, tried for real: run as
`python job_probe.py FOLDER` with the uid and groups of a Job's rendered securityContext
(test_control_identity.py), it prints one JSON object, each attempt's outcome: "ok" or the
exception's class and message. The attempts are what the runner does (jobrunner.py: read the
inputs, write the notebook, the result by rename, publish()'s tables) and what a hostile
template would try against the inputs the service wrote (replace, rewrite, remove, rename
them, or open the folder to everyone) or against their removal (a folder closed to the
service)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

TEMPLATE, PARAMETERS = "template.ipynb", "parameters.json"  # reports/jobrunner.py's names


def attempts(folder: Path) -> dict[str, Callable[[], object]]:
    def replace_template() -> None:
        forged = folder / "forged.ipynb"
        forged.write_text("{}")
        os.replace(forged, folder / TEMPLATE)

    def write_result() -> None:
        partial = folder / ".result.json.partial"
        partial.write_text('{"status": "succeeded", "error": null}')
        os.replace(partial, folder / "result.json")

    def publish() -> None:
        published = folder / "published"
        published.mkdir(exist_ok=True)  # as publish() does: the service made it
        (published / "counts.parquet").write_bytes(b"PAR1")
        (published / "counts.meta.json").write_text("{}")

    def hide_a_folder() -> None:  # closed to the service: it cannot empty it
        hidden = folder / "hidden"
        hidden.mkdir(mode=0o700)
        (hidden / "rows.csv").write_text("kept from the service")

    return {
        "list": lambda: sorted(os.listdir(folder)),
        "read_template": lambda: (folder / TEMPLATE).read_bytes(),
        "read_parameters": lambda: json.loads((folder / PARAMETERS).read_text()),
        "write_notebook": lambda: (folder / "output.ipynb").write_text('{"cells": []}'),
        "write_result": write_result,
        "publish": publish,
        "hide_a_folder": hide_a_folder,
        "replace_template": replace_template,
        "rewrite_parameters": lambda: (folder / PARAMETERS).write_text('{"view": "incomes"}'),
        "remove_parameters": lambda: (folder / PARAMETERS).unlink(),
        "rename_template": lambda: os.rename(folder / TEMPLATE, folder / "moved.ipynb"),
        "open_folder_to_all": lambda: os.chmod(folder, 0o777),
        "swap_published": lambda: os.rename(folder / "published", folder / "old"),
    }


def main() -> None:
    folder = Path(sys.argv[1])
    seen: dict[str, str] = {}
    for name, attempt in attempts(folder).items():
        try:
            attempt()
            seen[name] = "ok"
        except Exception as exc:  # each attempt's outcome is the result
            seen[name] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
