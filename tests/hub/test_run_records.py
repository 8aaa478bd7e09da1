"""A report run's record (reports/records.py) on real files: its states move one way only, what
is written reads back equal, records written by earlier versions still read, a run whose
process died is settled as failed once, and no module but state/home.py spells a run file."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import dossierhub
from dossierhub.reports.records import (
    ImpossibleTransition,
    Release,
    RunRecord,
    check_entry,
    queued_record,
    read_check_entries,
    read_checks,
    read_record,
    read_release,
    write_checks,
    write_record,
    write_release,
)
from dossierhub.reports.recovery import current_record
from dossierhub.state.audit import AuditLog
from dossierhub.state.home import Home, RunFolder
from dossierhub.state.init import init_home

RUN = "20260101T000000-abcdef"

# provenance.json as `report run` wrote it before records.py: a finished run
OLD_RECORD = {
    "run_id": RUN,
    "dossier": "armoede",
    "template": "district_profile",
    "template_origin": "builtin",
    "template_sha256": "ab" * 32,
    "parameters": {"district": "Zuidoost", "low_income_threshold": 1500},
    "user": "b.devries",
    "queued": "2026-01-01T00:00:00.000+00:00",
    "started": "2026-01-01T00:00:01.000+00:00",
    "finished": "2026-01-01T00:00:09.000+00:00",
    "status": "succeeded",
    "error": None,
    "extracts": {"residents": "cd" * 32},
    "extracts_generation": "20260101T000000-000001",
    "runner_pid": 4242,
    "executed": "2026-01-01T00:00:08.000+00:00",
    "outputs": {"report.ipynb": "ef" * 32},
    "checks_passed": True,
}


def new_record(pid: int = 4242) -> RunRecord:
    return queued_record(
        RUN,
        "armoede",
        "district_profile",
        "b.devries",
        template_origin="builtin",
        template_sha256="ab" * 32,
        parameters={"district": "Zuidoost"},
        extracts={"residents": "cd" * 32},
        extracts_generation="20260101T000000-000001",
        runner_pid=pid,
    )


@pytest.fixture
def run(tmp_path: Path) -> RunFolder:
    home = Home(tmp_path / "home")
    init_home(home)
    folder = home.run_folder("armoede", RUN)
    folder.path.mkdir(parents=True)
    return folder


def test_a_run_moves_queued_running_finished_and_never_back() -> None:
    queued = new_record()
    running = queued.start()
    done = running.kernel_done().finish("succeeded", None, {"report.ipynb": "ef" * 32}, True)
    assert (queued.status, running.status, done.status) == ("queued", "running", "succeeded")
    assert running.started and done.executed and done.finished and done.checks_passed
    assert queued.finish("failed", "kernel would not start", {}, False).status == "failed"
    refused = [
        lambda: queued.finish("succeeded", None, {}, True),  # nothing ran
        lambda: queued.kernel_done(),
        lambda: running.start(),
        lambda: done.start(),  # a finished run does not run again
        lambda: done.finish("failed", "late", {}, False),
        lambda: done.abandon(1),  # recovery never rewrites a finished run
        lambda: running.finish("failed", None, {}, False).finish("succeeded", None, {}, True),
    ]
    for move in refused:
        with pytest.raises(ImpossibleTransition, match=f"run {RUN} of dossier armoede is"):
            move()
    assert queued.status == "queued" and done.status == "succeeded"  # frozen: left as they were


def test_a_record_written_reads_back_equal(run: RunFolder) -> None:
    record = new_record().start()
    write_record(run, record)
    assert read_record(run) == record
    on_disk = json.loads(run.record.read_text())
    assert on_disk["status"] == "running" and on_disk["parameters"] == {"district": "Zuidoost"}
    assert set(OLD_RECORD) <= set(on_disk)  # the fields earlier versions wrote, same names


def test_records_of_earlier_versions_still_read(run: RunFolder) -> None:
    run.record.write_text(json.dumps(OLD_RECORD))
    record = read_record(run)
    assert record.status == "succeeded" and record.parameters["low_income_threshold"] == 1500
    assert record.as_json() == OLD_RECORD
    # the first runs wrote neither `executed`, `runner_pid` nor `outputs`; a key this version
    # does not know survives a rewrite
    older = {k: v for k, v in OLD_RECORD.items() if k not in ("executed", "runner_pid")}
    run.record.write_text(json.dumps({**older, "status": "running", "note": "kept"}))
    record = read_record(run)
    assert record.runner_pid is None and record.executed is None
    write_record(run, record.finish("failed", "stopped", {}, False))
    assert json.loads(run.record.read_text())["note"] == "kept"
    # a release from before releases carried an audit head: just who released it
    run.release.write_text(json.dumps({"by": "e.mulder"}))
    release = read_release(run)
    assert release is not None and release.by == "e.mulder" and release.audit_head is None
    write_release(run, release)
    assert json.loads(run.release.read_text()) == {"by": "e.mulder"}


def test_a_record_that_is_not_one_is_refused_naming_the_file(run: RunFolder) -> None:
    from dossierhub.state.problems import ReportRefused

    run.record.write_text(json.dumps({**OLD_RECORD, "status": "done"}))
    with pytest.raises(ReportRefused, match=rf"reports/armoede/{RUN}/provenance\.json .*status"):
        read_record(run)
    run.release.write_text("[]")
    with pytest.raises(ReportRefused, match=r"release\.json is not a record"):
        read_release(run)
    assert Release(by="x").as_json() == {"by": "x"}


def test_a_run_whose_process_died_is_settled_as_failed_once(run: RunFolder) -> None:
    home = Home(run.path.parents[2])
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a real process that ran the run and ended: its pid is free
    write_record(run, new_record(pid=gone.pid).start())
    first = current_record(home, run)
    assert first.status == "failed" and f"pid {gone.pid}" in (first.error or "")
    assert read_record(run) == first  # written, so every reader sees it
    assert current_record(home, run) == first  # and settled once: failed is final
    finished = [r for r in AuditLog(home).read() if r["action"] == "report.finished"]
    assert [(r["details"]["run"], r["details"]["status"]) for r in finished] == [(RUN, "failed")]
    alive = new_record(pid=os.getpid()).start()
    write_record(run, alive)
    assert current_record(home, run).status == "running"  # its process still runs it


RUN_FILES = (
    "report.ipynb",
    "report.html",
    "review.html",
    "outputs.json",
    "checks.json",
    "release.json",
)


def test_only_home_spells_the_run_folders_files() -> None:
    """RunFolder names each file of a run once; a second spelling would drift from it."""
    package = Path(dossierhub.__file__).parent
    spelled = []
    for path in sorted(package.rglob("*.py")):
        if path == package / "state" / "home.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            text = node.value if isinstance(node, ast.Constant) else None
            if isinstance(text, str) and text.endswith(RUN_FILES):
                spelled.append(f"{path.relative_to(package)}:{node.lineno} {text!r}")
    assert not spelled, "run files named outside state/home.py:\n" + "\n".join(spelled)


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        json.dumps({"table": "per_area", "passed": True}),  # an entry, not a list of them
        json.dumps([{"table": "per_area", "findings": []}]),  # no verdict
        json.dumps([{"table": "per_area", "passed": "yes please", "findings": []}]),
        json.dumps([{"table": "per_area", "passed": False, "findings": [{"rule": 1}]}]),
    ],
)
def test_malformed_checks_are_refused_naming_the_file(run: RunFolder, text: str) -> None:
    """checks.json is the verdict a release rests on: one that is not what the checks wrote is
    a conflict (409 through the API), never a server error nor read as "no findings"."""
    from dossierhub.state.problems import ReportRefused

    run.checks.write_text(text)
    with pytest.raises(ReportRefused, match=rf"reports/armoede/{RUN}/checks\.json ") as refused:
        read_checks(run)
    assert refused.value.reason == "conflict"


def test_checks_keep_their_shape(run: RunFolder) -> None:
    """Entries read back as written: the kernel's findings with a severity, the hub's own
    (differencing, charts) without one, a chart's entry with its kind."""
    checks = [
        {
            "table": "per_area",
            "passed": True,
            "findings": [
                {
                    "rule": "captions",
                    "column": None,
                    "message": "m",
                    "rows": [],
                    "severity": "review",
                }
            ],
        },
        {"table": "per_area_chart", "kind": "chart", "passed": True, "findings": []},
        check_entry(
            "per_area",
            False,
            [{"rule": "differencing", "column": "n", "rows": [1], "message": "m"}],
        ),
    ]
    write_checks(run, checks)
    assert read_checks(run) == checks == json.loads(run.checks.read_text())
    assert [e.findings[0].severity for e in read_check_entries(run) if e.findings] == [
        "review",
        "fail",
    ]


@pytest.mark.parametrize(
    "text",
    [
        "[{",
        json.dumps([{"id": "c1.o0", "cell": 1, "kind": "artefact"}]),  # fields missing
        json.dumps(
            [
                {
                    "id": "c1.o0",
                    "cell": "one",
                    "kind": "unchecked",
                    "artefact": None,
                    "sha256": "ab",
                    "types": [],
                    "preview": "",
                }
            ]
        ),
    ],
)
def test_a_malformed_outputs_index_is_refused_naming_the_file(run: RunFolder, text: str) -> None:
    from dossierhub.reports import airlock
    from dossierhub.state.problems import ReportRefused

    run.outputs_index.write_text(text)
    with pytest.raises(ReportRefused, match=rf"reports/armoede/{RUN}/outputs\.json ") as refused:
        airlock.unchecked_outputs(run)
    assert refused.value.reason == "conflict"
