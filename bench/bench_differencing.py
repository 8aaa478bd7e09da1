"""Differencing benchmark (issue 11): a new run's tables against every released run of its
dossier, read where the runs keep them (no index), against the baseline of the output checks
on the same run's tables, in the same process.

Each released run holds district_profile's three tables (per area and type, per area, per
scheme), all of one district so every table is compared; the 5000-row case compares one
table of 5000 rows (the default max_rows) with released tables of the same size.
    .venv/bin/python bench/bench_differencing.py [--released 100 1000] [--repeat 3] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl

from dossier_kernel.publish import publish
from dossierhub.reports.checks import run_checks
from dossierhub.reports.differencing import differencing_checks
from dossierhub.state.home import Home, RunFolder

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import write_rules_only_extracts

DOSSIER = "armoede"
AREAS = [f"area-{i:02}" for i in range(30)]
TYPES = ["single", "couple", "family", "other"]
SCHEMES = [f"scheme-{i}" for i in range(8)]


def tables(threshold: int, rows: int) -> dict[str, tuple[pl.DataFrame, dict]]:
    if rows:
        big = pl.DataFrame(
            {
                "cell": [f"cell-{i:05}" for i in range(rows)],
                "people": [(i * 7 + threshold // 1000) % 90 + 10 for i in range(rows)],
            }
        )
        return {"cells": (big, {"counts": ["people"]})}
    shift = threshold // 1000
    per_type = pl.DataFrame(
        {
            "area": [a for a in AREAS for _ in TYPES],
            "type": TYPES * len(AREAS),
            "households": [20 + (i * 13) % 70 for i in range(len(AREAS) * len(TYPES))],
        }
    )
    reach = pl.DataFrame(
        {
            "area": AREAS,
            "low_income_households": [30 + i + shift for i in range(len(AREAS))],
            "reached": [15 + i + shift // 2 for i in range(len(AREAS))],
        }
    ).with_columns((100 * pl.col("reached") / pl.col("low_income_households")).alias("reach_pct"))
    schemes = pl.DataFrame(
        {"scheme": SCHEMES, "recipients": [40 + 9 * i for i in range(len(SCHEMES))]}
    )
    return {
        "households_per_area": (per_type, {"counts": ["households"]}),
        "reach_per_area": (
            reach,
            {"counts": ["low_income_households", "reached"], "attributes": ["reach_pct"]},
        ),
        "payments_per_scheme": (schemes, {"counts": ["recipients"]}),
    }


def write_run(home: Home, run_id: str, threshold: int, rows: int, released: bool) -> Path:
    folder = home.reports_dir / DOSSIER / run_id
    folder.mkdir(parents=True)
    os.environ["DOSSIERHUB_RUN_DIR"] = str(folder)
    for name, (frame, declared) in tables(threshold, rows).items():
        publish(frame, name, **declared)
    del os.environ["DOSSIERHUB_RUN_DIR"]
    parameters = {"district": "Zuidoost", "low_income_threshold": threshold}
    provenance = {
        "run_id": run_id,
        "dossier": DOSSIER,
        "user": "b.devries",
        "status": "succeeded",
        "template": "district_profile",
        "parameters": parameters,
    }
    (folder / "provenance.json").write_text(json.dumps(provenance))
    if released:
        (folder / "release.json").write_text(json.dumps({"by": "a.jansen"}))
    return folder


def write_home(root: Path, released: int, rows: int) -> tuple[Home, Path]:
    home = Home(root)
    write_rules_only_extracts(home, DOSSIER, {})
    for i in range(released):
        write_run(home, f"20260101T{i:06}-released", 10_000 + 1000 * i, rows, True)
    return home, write_run(home, "20270101T000000-new", 10_000, rows, False)


def timed(action: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def report(name: str, ours: float, base: float) -> None:
    print(
        f"{name:<22} ours {ours:8.3f} s  baseline {base:8.3f} s  ratio {ours / base:6.2f}",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--released", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--big", type=int, default=20, help="released 5000-row tables")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="10 releases, one repeat")
    args = parser.parse_args()
    counts, big, repeat = ([10], 2, 1) if args.smoke else (args.released, args.big, args.repeat)
    os.environ.pop("DOSSIER_CATALOG", None)
    print(f"polars {pl.__version__}, {os.cpu_count()} cores, repeat {repeat}", flush=True)
    with tempfile.TemporaryDirectory(prefix="dossierhub-bench-") as tmp:
        for index, released in enumerate([*counts, big]):
            rows = 5000 if index == len(counts) else 0
            home, new = write_home(Path(tmp) / f"home-{index}", released, rows)
            found = differencing_checks(home, DOSSIER, RunFolder(new))
            base = timed(lambda h=home, n=new: run_checks(h, DOSSIER, RunFolder(n), None), repeat)
            ours = timed(
                lambda h=home, n=new: differencing_checks(h, DOSSIER, RunFolder(n)), repeat
            )
            name = f"{released}_released" + (f"_{rows}_rows" if rows else "")
            report(name, ours, base)
            flagged = sum(len(f["findings"]) for f in found)
            print(f"{'':<22} {flagged} finding(s) on {len(found)} table(s)", flush=True)
    print("baseline: the output checks (run_checks) on the same run's tables; reported, no target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
