"""Report run benchmark (issue 4): request to provenance written (HTML included) against the
plain papermill CLI on the same notebook, data and kernel, in the same run. Target <= 1.3x.

Needs root (runs execute as the dossier's Unix identity), like the e2e tests.
    .venv/bin/python bench/bench_reports.py [--repeat 3] [--template district_profile]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from dossierhub.demo import write_demo
from dossierhub.reports.kernelpool import KernelPool
from dossierhub.reports.runs import run_report
from dossierhub.state.home import Home
from dossierhub.state.templates import load_template

from e2e_hub import DOSSIERHUB, reachable_python, release_identities

PARAMETERS = {"district_profile": {"district": "Noord"}, "data_quality": {"view": "payments"}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--template", default="district_profile", choices=sorted(PARAMETERS))
    parser.add_argument("--size", type=int, default=100_000, help="synthetic residents")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root: runs execute as the dossier's Unix identity")
        return 1
    ok = False
    root = Path(tempfile.mkdtemp(prefix="dossierhub-bench-", dir="/tmp"))
    os.chmod(root, 0o711)
    try:
        home = Home(root / "home")
        subprocess.run(
            [DOSSIERHUB, "--home", str(home.root), "init"], check=True, capture_output=True
        )
        write_demo(home, size=args.size, seed=3, log=lambda text: None)
        python = reachable_python()
        (home.settings_file).write_text(yaml.safe_dump({"workspaces": {"python": python}}))
        subprocess.run(
            [DOSSIERHUB, "--home", str(home.root), "apply"], check=True, capture_output=True
        )
        template = load_template(home, args.template)
        params = PARAMETERS[args.template]
        papermill = str(Path(python).parent / "papermill")
        env = {
            **os.environ,
            "DOSSIER_CATALOG": str(home.extract_dir("armoede") / "catalog.duckdb"),
            "MPLBACKEND": "Agg",
        }
        plain_args = [a for k, v in params.items() for a in ("-p", k, str(v))]
        pool = KernelPool(home, per_dossier=1)
        base, ours, ours_cli, pooled = [], [], [], []
        for index in range(args.repeat):
            started = time.perf_counter()
            subprocess.run(
                [
                    papermill,
                    str(template.path),
                    str(root / f"plain-{index}.ipynb"),
                    "-k",
                    "dossier",
                    "--no-progress-bar",
                    *plain_args,
                ],
                env=env,
                check=True,
                capture_output=True,
            )
            base.append(time.perf_counter() - started)
            started = time.perf_counter()
            outcome = run_report(
                home, "armoede", args.template, "a.jansen", {k: str(v) for k, v in params.items()}
            )
            ours.append(time.perf_counter() - started)
            assert outcome.status == "succeeded", outcome.error
            started = time.perf_counter()
            subprocess.run(
                [
                    DOSSIERHUB,
                    "--home",
                    str(home.root),
                    "report",
                    "run",
                    "armoede",
                    args.template,
                    "--user",
                    "a.jansen",
                    *plain_args,
                ],
                check=True,
                capture_output=True,
            )
            ours_cli.append(time.perf_counter() - started)
            pool.fill("armoede")  # started ahead of time, outside the measured request
            started = time.perf_counter()
            outcome = run_report(
                home,
                "armoede",
                args.template,
                "a.jansen",
                {k: str(v) for k, v in params.items()},
                pool=pool,
            )
            pooled.append(time.perf_counter() - started)
            assert outcome.status == "succeeded", outcome.error
        b = statistics.median(base)
        pool.close()
        ok = True
        figures = (
            ("report_run", ours, 1.3),
            ("report_run_cli", ours_cli, 1.3),
            ("report_run_prestarted", pooled, 0.5),
        )
        for label, values, target in figures:
            ratio = statistics.median(values) / b
            ok &= ratio <= target
            print(
                f"{label:<22} ours {statistics.median(values):6.2f} s  papermill CLI "
                f"{b:6.2f} s  ratio {ratio:5.2f} (target <= {target})"
                f"{' ok' if ratio <= target else ' OVER TARGET'}",
                flush=True,
            )
    finally:
        release_identities(Home(root / "home"))  # the Unix users it made go with it
        shutil.rmtree(root, ignore_errors=True)
    print("all targets met" if ok else "some targets missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
