"""Pages that show executions: read from the index (state/auditindex.py) vs parsing the whole
audit log as they did before, in one process on one HOME (issue 16, part I).

A HOME (`dossierhub init`, the demo applied at a small size) gets `--executions` executions by
one analyst of armoede in batches of `--batch` (the bridge flushes every 2 s or 200 events),
then each reader is timed both ways, median of `--repeat`:

- audit page: the dossier's Executions section (newest 100, counts, the filter's choices);
- panel: who last ran each cell of one notebook;
- my activity: the analyst's own, newest 100 and counts;
- export: all of the analyst's executions as CSV (the answer to an access request).

Also the index's own costs (its first build from the log, catching up after one more batch),
the audit trail's one pass over the log (verify and read together) against two, and an
append (each page's decision), which now reads the log's last line only.

    .venv/bin/python bench/bench_execution_index.py [--executions 60000] [--batch 50] [--smoke]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dossierhub import portal
from dossierhub.cli import main as cli_main
from dossierhub.demo import write_demo
from dossierhub.state import executions
from dossierhub.state.audit import AuditLog
from dossierhub.state.auditindex import ExecutionIndex, Where
from dossierhub.state.executions import (
    executions_from,
    export_text,
    kernel_events_from,
    latest_by_cell,
)
from dossierhub.state.home import Home

ANALYST, LEAD, DOSSIER = "b.devries", "a.jansen", "armoede"
NOTEBOOKS = ("poverty.ipynb", "benefits.ipynb", "map.ipynb")
T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)


def cli(home: Path, *args: str) -> None:
    try:
        cli_main(["--home", str(home), *args], standalone_mode=False)
    except SystemExit as exc:
        assert not exc.code, f"dossierhub {' '.join(args)} failed"


def event(n: int) -> dict[str, Any]:
    code = f"x{n % 500} = households.filter(income < {n})"
    return {
        "event": "execute",
        "at": (T0 + dt.timedelta(seconds=n)).isoformat(timespec="microseconds"),
        "person": ANALYST if n % 10 else LEAD,
        "kernel": f"k-{n // 5000}",
        "channel": "shell",
        "kind": "execute",
        "msg_id": f"m-{n}",
        "cell_id": f"c-{n % 40}",
        "path": NOTEBOOKS[n % len(NOTEBOOKS)],
        "code_sha256": hashlib.sha256(code.encode()).hexdigest(),
        "first_line": code,
        "outcome": "ok",
    }


def fill(home: Home, count: int, batch: int, start: int = 0) -> None:
    log = AuditLog(home)
    for first in range(start, start + count, batch):
        events = [event(n) for n in range(first, min(first + batch, start + count))]
        executions.append_batch(log, executions.batch_of(DOSSIER, f"bench-{first:09d}", events))


# the readers as they were: the whole log parsed per request ---------------------------------


def counted(rows: list[executions.Execution], key: str) -> dict[str, int]:
    return dict(Counter(v for x in rows if (v := getattr(x, key)) is not None).most_common())


def page_before(home: Home) -> Any:
    records = AuditLog(home).read()
    seen = executions_from(records, dossier=DOSSIER)
    found = executions_from(records, dossier=DOSSIER)
    return (
        list(reversed(found))[:100],
        counted(found, "person"),
        counted(found, "path"),
        sorted({x.person for x in seen}),
        sorted({x.path for x in seen if x.path}),
    )


def panel_before(home: Home) -> Any:
    rows = executions_from(AuditLog(home).read(), dossier=DOSSIER, path=NOTEBOOKS[0])
    return latest_by_cell(rows)


def mine_before(home: Home) -> Any:
    records = AuditLog(home).read()
    found = executions_from(records, person=ANALYST)
    seen = executions_from(records, person=ANALYST)
    return list(reversed(found))[:100], counted(found, "dossier"), {x.path for x in seen}


def export_before(home: Home) -> bytes:
    records = AuditLog(home).read()
    calls = kernel_events_from(records, person=ANALYST)
    return export_text(executions_from(records, person=ANALYST), "csv", calls).encode()


# and through the index, as portal.py reads them now ----------------------------------------


def page_after(home: Home) -> Any:
    person = portal.Person(LEAD)
    return portal.executions_for(home, DOSSIER, person, portal.ExecutionFilter())


def panel_after(home: Home) -> Any:
    return portal.latest_executions(home, DOSSIER, portal.Person(LEAD), NOTEBOOKS[0])


def mine_after(home: Home) -> Any:
    return portal.my_executions(home, portal.Person(ANALYST), portal.ExecutionFilter())


def export_after(home: Home) -> bytes:
    return portal.activity_export(home, ANALYST, "csv").data


def timed(call: Callable[[], Any], repeat: int) -> float:
    took = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        took.append(time.perf_counter() - started)
    return statistics.median(took)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--executions", type=int, default=60_000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="2,000 executions, 2 repeats")
    args = parser.parse_args()
    count, repeat = (2_000, 2) if args.smoke else (args.executions, args.repeat)
    with tempfile.TemporaryDirectory(prefix="bench-index-") as tmp:
        root = Path(tmp) / "home"
        cli(root, "init")
        write_demo(Home(root), size=500, seed=3, log=lambda text: None)
        cli(root, "apply")
        home = Home(root)
        started = time.perf_counter()
        fill(home, count, args.batch)
        size = home.audit_log_file.stat().st_size
        print(
            f"{count:,} executions in batches of {args.batch}: log {size / 1e6:.1f} MB, "
            f"filled in {time.perf_counter() - started:.1f}s"
        )
        started = time.perf_counter()
        ExecutionIndex.for_log(AuditLog(home)).executions(Where(person="nobody"))
        print(f"index built from the log: {time.perf_counter() - started:.2f}s")
        fill(home, args.batch, args.batch, start=count)
        started = time.perf_counter()
        ExecutionIndex.for_log(AuditLog(home)).count(Where())
        took = 1000 * (time.perf_counter() - started)
        print(f"index caught up after one more batch: {took:.1f} ms")
        assert export_before(home) == export_after(home), "the index disagrees with the log"
        print(f"{'reader':<14}{'whole log':>12}{'index':>12}{'ratio':>9}")
        pairs = {
            "audit page": (page_before, page_after),
            "panel": (panel_before, panel_after),
            "my activity": (mine_before, mine_after),
            "export": (export_before, export_after),
        }
        for name, (before, after) in pairs.items():
            old = timed(lambda read=before: read(home), repeat)
            new = timed(lambda read=after: read(home), repeat)
            print(f"{name:<14}{1000 * old:>10.1f}ms{1000 * new:>10.1f}ms{old / new:>8.1f}x")
        log = AuditLog(home)
        print("the audit trail and the admin's overview, which verify the whole chain:")
        apart = timed(lambda: (log.verify(), log.read()), repeat)
        together = timed(log.verify_and_read, repeat)
        print(f"  verify() then read(): {1000 * apart:.0f} ms; verify_and_read(): ", end="")
        print(f"{1000 * together:.0f} ms ({apart / together:.1f}x)")
        append = timed(lambda: log.append("bench.decision", dossier=DOSSIER), repeat)
        print(f"one append (each page's decision), the last line read: {1000 * append:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
