"""Inside a report run's Job (reports/jobs.py): papermill on a Dossier kernel in the same pod.

`dossierhub report execute-job FOLDER` is the Job's command. FOLDER is the run's scratch
folder on HOME's shared volume, the only folder of HOME the pod may write; the service put
the notebook to run there (`template.ipynb`) before it made the Job: its notebook of record,
already parameterised (jobnotebook.py), which the runner runs as it is, parameterising
nothing (a `parameters.json` beside it is not read). The runner writes the executed notebook
(`output.ipynb`, saved by papermill after every cell, so a failed run keeps its partial
notebook) and its verdict (`result.json`); publish() writes the tables beside them
(DOSSIERHUB_RUN_DIR). It exits 0 only when every cell ran, so the Job's own status says
succeeded or failed; `result.json` only names the cell error. The kernel runs as the same
number as this runner and can rewrite both files, so neither is trusted: the service reads
them through descriptors that follow no link, after the pod has ended, and takes from the
notebook only the outputs of the cells it handed over (jobnotebook.fill_outputs).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

TEMPLATE = "template.ipynb"
PARAMETERS = "parameters.json"  # written by the service, not read (the notebook has them)
OUTPUT = "output.ipynb"
RESULT = "result.json"


def execute_job(folder: Path) -> int:
    """Run the notebook in `folder` as it is; 0 when it succeeded, else 1."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    # the container's command is PID 1 of its pod, which the kernel gives no default action
    # for SIGTERM: without a handler a deleted run's pod would live out its grace period
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))
    result: dict[str, Any] = {"status": "succeeded", "error": None}
    try:
        papermill.execute_notebook(
            str(folder / TEMPLATE),
            str(folder / OUTPUT),
            kernel_name="dossier",
            language="python",  # the Dossier kernel's, whatever the notebook was saved with
            progress_bar=False,
            cwd=str(folder),
        )
    except PapermillExecutionError as exc:
        result = {"status": "failed", "error": f"{exc.ename}: {exc.evalue}"[:500]}
    except Exception as exc:  # a dead kernel, a broken template: the Job fails, with why
        result = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:500]}
    partial = folder / f".{RESULT}.partial"
    partial.write_text(json.dumps(result), encoding="utf-8")
    os.replace(partial, folder / RESULT)
    return 0 if result["status"] == "succeeded" else 1
