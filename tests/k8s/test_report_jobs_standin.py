"""Report runs as Kubernetes Jobs, end to end on the stand-in (standin.py): `report run`'s own
code (run_report) with `reports.backend: kubernetes` makes one Job per run; the stand-in's Job
controller makes its pod and the kubelet runs it for real, as the dossier's report number,
with the extracts folder read-only and the run's scratch folder from HOME's volume. A run
succeeds and its report is drawn; a cell error, the time limit and a deleted pod each end
failed with the reason and the partial notebook; from inside a run's notebook the workspace
folder, another dossier's extracts and HOME's secrets are out of reach and the extracts
cannot be changed; a kernel that rewrites the notebook in its pod after papermill's last save
changes nothing of the recorded notebook but its outputs, and adding a cell fails the run.

One stand-in and one applied HOME for the module; each run is independent.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import nbformat
import pytest
import yaml
from kubelet import running_processes_of, wait_until
from kubernetes_asyncio.config import kube_config
from standin import StandIn

from dossierhub.isolation.podids import pod_ids, report_pod_ids
from dossierhub.reports import jobs
from dossierhub.reports.render import review_page
from dossierhub.reports.runs import RunOutcome, run_report
from dossierhub.state.audit import AuditLog
from dossierhub.state.home import Home, RunFolder
from dossierhub.state.settings import KubernetesSettings

from e2e_hub import LEAD, reachable_python, release_identities
from e2e_runs import template
from helpers import run_cli

DOSSIER = "armoede"
NAMESPACE = "default"
TEMPLATES = ("fine", "crash", "slow", "wait", "walls", "planted", "forged", "forged_extra")
LIMIT = 15  # slow's time limit: its first cell runs alone in it, in ~4 s on a loaded machine
STARTED = "the slow run started"
WAITING = "waiting for its pod to be deleted"


@pytest.fixture(scope="module")
def job_home(
    k8s_standin_module: StandIn, demo_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Home]:
    """The demo HOME applied with hub.spawner and reports.backend kubernetes (so apply hands
    out both numbers), bound as the stand-in's home claim; $KUBECONFIG names the stand-in."""
    k8s = k8s_standin_module
    root = tmp_path_factory.mktemp("jobs") / "home"
    shutil.copytree(demo_data, root, symlinks=True)
    python = reachable_python()
    environment = str(Path(python).parents[1])
    if environment not in k8s.kubelet.image:
        k8s.kubelet.image.append(environment)
    settings = yaml.safe_load((root / "settings.yaml").read_text()) or {}
    settings.update(
        hub={"spawner": "kubernetes"},
        reports={"backend": "kubernetes", "parallel_per_dossier": len(TEMPLATES)},
        workspaces={"python": python},
        isolation={"prefix": os.environ.get("DOSSIERHUB_TEST_PREFIX", "dht")[:5] + "j"},
        kubernetes={
            "api_url": k8s.api_url,
            "namespace": NAMESPACE,
            "image": "standin/dossierhub-workspace:test",
            "runner_image": "standin/dossierhub-runner:test",
        },
    )
    (root / "settings.yaml").write_text(yaml.safe_dump(settings))
    home = Home(root)
    manifest = yaml.safe_load(home.manifest_file(DOSSIER).read_text())
    manifest["templates"] = [*manifest["templates"], *TEMPLATES]
    home.manifest_file(DOSSIER).write_text(yaml.safe_dump(manifest))
    folder = home.templates_dir
    folder.mkdir(exist_ok=True)
    template(
        folder / "fine.ipynb",
        "import polars as pl\n"
        "counts = db.sql('SELECT district, count(*) AS people FROM residents "
        "GROUP BY district').pl()\n"
        "publish(counts, 'people_per_district', counts=['people'])\n"
        "print('rows', counts.height)",
    )
    template(
        folder / "crash.ipynb",
        "x = 1",
        "raise RuntimeError('the data looks wrong')",
        "print('never')",
    )
    template(
        folder / "slow.ipynb",
        f"print('{STARTED}')",
        "import time\ntime.sleep(120)",
        meta={"parameters": [], "timeout_seconds": LIMIT},
    )
    template(folder / "wait.ipynb", f"print('{WAITING}')", "import time\ntime.sleep(120)")
    template(folder / "walls.ipynb", WALLS)
    template(folder / "planted.ipynb", PLANTED)
    forging_template(folder / "forged.ipynb", extra=False)
    forging_template(folder / "forged_extra.ipynb", extra=True)
    result = run_cli(root, "apply")
    assert result.exit_code == 0, result.stderr
    k8s.kubelet.claims[KubernetesSettings().home_claim] = root
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KUBECONFIG", str(k8s.kubeconfig))
        # the client read $KUBECONFIG when it was imported, before this fixture
        patch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(k8s.kubeconfig))
        patch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        try:
            yield home
        finally:
            release_identities(home)  # the local run's `<prefix>r-armoede` and `<prefix>-armoede`


@dataclass
class Runs:
    outcomes: dict[str, RunOutcome]
    deleted: str  # the pod the test deleted


@pytest.fixture(scope="module")
def runs(job_home: Home, k8s_standin_module: StandIn) -> Runs:
    """Every template run at once, each as its own Job (in seconds, not minutes), the pod of
    `wait` deleted once its first cell has run. `slow` sets out first, alone, so its first
    cell surely runs within its short time limit; the others run while it waits out that
    limit (the module then lasts about the limit, not the limit after the others' start)."""
    outcomes: dict[str, RunOutcome] = {}

    def run(name: str) -> None:
        outcomes[name] = run_report(job_home, DOSSIER, name, LEAD, {})

    # a service closed earlier in this process (its Jobs handed over) stops no other run
    # here: its stop is its own threads' (it once stopped every later run in the process)
    from dossierhub.web.runner import Runner

    Runner(job_home, 0).close()
    threads = [threading.Thread(target=run, args=(name,), name=name) for name in TEMPLATES]
    slow, others = threads[TEMPLATES.index("slow")], [t for t in threads if t.name != "slow"]
    slow.start()
    try:
        scratch_showing(job_home, STARTED, "the slow run's first cell")
        for thread in others:
            thread.start()
        deleted = delete_waiting_pod(job_home, k8s_standin_module)
    finally:
        for thread in threads:
            if thread.is_alive():
                thread.join(timeout=300)
    assert set(outcomes) == set(TEMPLATES)
    return Runs(outcomes, deleted)


def scratch_showing(home: Home, text: str, what: str) -> Path:
    """The scratch folder of the run whose notebook shows `text` (papermill saves it after
    each cell), waited for."""

    def showing() -> Path | None:
        parent = home.scratch_parent(DOSSIER)
        for scratch in parent.iterdir() if parent.exists() else []:
            with contextlib.suppress(OSError, ValueError):  # not yet written, or half
                book = json.loads((scratch / "output.ipynb").read_text())
                if text in json.dumps([c.get("outputs") for c in book["cells"]]):
                    return scratch
        return None

    wait_until(lambda: showing() is not None, timeout=120, what=what)
    found = showing()
    assert found is not None, what
    return found


def delete_waiting_pod(home: Home, k8s: StandIn) -> str:
    """Delete the pod whose run printed WAITING (papermill saved it after the first cell)."""
    scratch = str(scratch_showing(home, WAITING, "the waiting run's first cell"))
    pods = httpx.get(f"{k8s.api_url}/api/v1/namespaces/{NAMESPACE}/pods", timeout=10).json()
    (pod,) = [p for p in pods["items"] if p["spec"]["containers"][0]["args"] == [scratch]]
    k8s.delete_pod(NAMESPACE, pod["metadata"]["name"])
    return str(pod["metadata"]["name"])


def notebook_outputs(outcome: RunOutcome) -> str:
    book = nbformat.read(RunFolder(outcome.folder).notebook, as_version=4)
    return "".join(
        output.get("text", "")
        for cell in book.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    )


def processes_of(home: Home, uid: int) -> list[int]:
    """This HOME's processes running as `uid` (pod numbers start at the same value in every
    HOME, so another test session's pods on the machine may run as it too)."""
    mine = []
    for pid in running_processes_of(uid):
        with contextlib.suppress(OSError):
            if str(home.root).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                mine.append(pid)
    return mine


def no_jobs_left(k8s: StandIn) -> bool:
    listed = httpx.get(f"{k8s.api_url}/apis/batch/v1/jobs", timeout=10).json()["items"]
    return not listed and not any(key[1].startswith("report-") for key in k8s.kubelet.pods)


def test_a_run_succeeds_as_a_job_of_the_report_number_and_its_report_renders(
    job_home: Home, k8s_standin_module: StandIn, runs: Runs
) -> None:
    k8s = k8s_standin_module
    report = report_pod_ids(job_home)[DOSSIER]  # handed out by apply
    assert report != pod_ids(job_home)[DOSSIER]
    outcome = runs.outcomes["fine"]
    assert outcome.status == "succeeded", outcome.error
    assert "rows" in notebook_outputs(outcome)
    assert (outcome.folder / "published").is_dir()
    html = (outcome.folder / "report.html").read_text()
    assert "people_per_district" in html
    record = json.loads(RunFolder(outcome.folder).record.read_text())
    assert record["status"] == "succeeded"
    events = [e for e in AuditLog(job_home).read() if e["details"].get("run") == outcome.run_id]
    assert [e["action"] for e in events] == ["report.run", "report.finished"]
    assert events[-1]["details"]["status"] == "succeeded"
    assert not k8s.jobs.refused and not k8s.kubelet.refused  # validated strictly, both
    wait_until(lambda: no_jobs_left(k8s), what="the Job and its pod deleted after collection")
    assert not processes_of(job_home, report)
    assert not list(job_home.scratch_parent(DOSSIER).iterdir())  # its scratch removed


def test_a_cell_error_fails_the_run_with_the_error_and_the_partial_notebook(runs: Runs) -> None:
    outcome = runs.outcomes["crash"]
    assert outcome.status == "failed"
    assert outcome.error == "RuntimeError: the data looks wrong"
    book = nbformat.read(RunFolder(outcome.folder).notebook, as_version=4)
    errors = [o for c in book.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors and errors[0]["evalue"] == "the data looks wrong"
    assert "never" not in notebook_outputs(outcome)


def test_the_time_limit_ends_the_job_and_the_run_fails_for_it(job_home: Home, runs: Runs) -> None:
    outcome = runs.outcomes["slow"]
    assert outcome.status == "failed"
    assert outcome.error == f"time limit of {LIMIT} s exceeded"
    assert STARTED in notebook_outputs(outcome)  # the partial notebook
    assert not processes_of(job_home, report_pod_ids(job_home)[DOSSIER])


def test_a_deleted_pod_fails_the_run_saying_so(runs: Runs) -> None:
    outcome = runs.outcomes["wait"]
    assert outcome.status == "failed"
    assert outcome.error == f"the run's pod {runs.deleted} was deleted before the run ended"
    assert WAITING in notebook_outputs(outcome)  # the partial notebook


# the run's last act: its notebook, which root copies, made a link to the master key's path
PLANTED = """
import os, pathlib
run_dir = pathlib.Path(os.environ["DOSSIERHUB_RUN_DIR"])
(run_dir / "output.ipynb").unlink()
(run_dir / "output.ipynb").symlink_to(run_dir.parents[2] / "secrets" / "master.key")
"""


def test_a_link_planted_as_the_notebook_is_not_followed(job_home: Home, runs: Runs) -> None:
    outcome = runs.outcomes["planted"]
    assert outcome.status == "failed"
    key = job_home.master_key_file.read_bytes().strip()
    for path in [*outcome.folder.rglob("*"), job_home.audit_dir / "audit.jsonl"]:
        if path.is_file():
            leaked = key in path.read_bytes()  # a bool: the key never reaches the test's output
            assert not leaked, f"the master key leaked into {path}"


WALLS = """
import errno, os, pathlib
run_dir = pathlib.Path(os.environ["DOSSIERHUB_RUN_DIR"])
home = run_dir.parents[2]
extracts = pathlib.Path(os.environ["DOSSIER_CATALOG"]).parent
print("uid", os.getuid(), os.getgid(), sorted(os.getgroups()))
print("read-only", bool(os.statvfs(extracts).f_flag & os.ST_RDONLY))
print("residents", db.sql("SELECT count(*) FROM residents").fetchall()[0][0])
for name, attempt in (
    ("workspace", lambda: os.listdir(home / "workspaces" / os.environ["DOSSIER_ID"])),
    ("other", lambda: os.listdir(home / "extracts" / "mobiliteit")),
    ("secrets", lambda: os.listdir(home / "secrets")),
    ("change", lambda: open(next(extracts.rglob("*.parquet")), "r+b")),
    ("plant", lambda: (extracts / "planted.parquet").write_bytes(b"x")),
):
    try:
        attempt()
        print(name, "allowed")
    except OSError as exc:
        print(name, "refused", errno.errorcode[exc.errno])
"""


def test_the_job_reads_its_extracts_and_nothing_else_of_home(job_home: Home, runs: Runs) -> None:
    outcome = runs.outcomes["walls"]
    assert outcome.status == "succeeded", outcome.error
    seen = dict(line.split(" ", 1) for line in notebook_outputs(outcome).splitlines())
    report, workspace = report_pod_ids(job_home)[DOSSIER], pod_ids(job_home)[DOSSIER]
    uid, gid, groups = seen["uid"].split(" ", 2)
    assert (int(uid), int(gid)) == (report, report)
    assert str(workspace) in groups  # reads the extracts through their group
    assert int(seen["residents"]) > 0
    # not in the pod at all (not merely closed by file modes, which also hold), and the
    # extracts mounted read-only
    for attempt in ("workspace", "other", "secrets"):
        assert seen[attempt] == "refused ENOENT", (attempt, seen[attempt])
    assert seen["read-only"] == "True"
    for attempt in ("change", "plant"):  # the file modes answer first, the mount holds too
        assert seen[attempt] in ("refused EACCES", "refused EROFS"), (attempt, seen[attempt])
    assert not (job_home.extract_dir(DOSSIER) / "planted.parquet").exists()
    assert os.listdir(job_home.workspace_dir(DOSSIER)) is not None  # it exists, outside the pod


def test_the_local_backend_still_reads_extracts_owned_by_the_pod_number(
    job_home: Home, runs: Runs
) -> None:
    """`reports.backend: local` on a HOME applied for pods: the local report kernel reads
    the extracts through the pod number, an extra group no Unix group names (it ran without
    it before, and every run failed with `NameError: db`)."""
    settings = yaml.safe_load(job_home.settings_file.read_text())
    settings["reports"]["backend"] = "local"
    job_home.settings_file.write_text(yaml.safe_dump(settings))
    try:
        outcome = run_report(job_home, DOSSIER, "fine", LEAD, {})
    finally:
        settings["reports"]["backend"] = "kubernetes"
        job_home.settings_file.write_text(yaml.safe_dump(settings))
    assert outcome.status == "succeeded", outcome.error
    assert "people_per_district" in (outcome.folder / "report.html").read_text()


# The kernel's last act: a helper of the pod's number, in a session of its own (papermill's
# kernel shutdown does not reach it), takes a lease on the runner's verdict file. The runner
# opens that file for writing only after papermill's last save of the notebook, and the lease
# holds it there while the helper rewrites the notebook: the service collects the forgery on
# every run, not by luck. The markdown becomes an approval, the code that ran is shown as
# other code, an output and a notebook field are added and (forged_extra) a cell.
FORGER = '''
import subprocess, sys
HELPER = r"""
import codecs, fcntl, json, os, signal, time
from pathlib import Path
folder = Path(os.environ["DOSSIERHUB_RUN_DIR"])
verdict = folder / ".result.json.partial"
verdict.touch()
signal.signal(signal.SIGIO, signal.SIG_IGN)  # the lease's break is polled for instead
held = os.open(verdict, os.O_RDONLY)
fcntl.fcntl(held, fcntl.F_SETLEASE, fcntl.F_RDLCK)
print("ready", flush=True)
while fcntl.fcntl(held, fcntl.F_GETLEASE) == fcntl.F_RDLCK:
    time.sleep(0.01)
book = json.loads((folder / "output.ipynb").read_text())
for cell in book["cells"]:
    if cell["cell_type"] == "markdown":
        cell["source"] = APPROVAL
    elif "the real work" in "".join(cell["source"]):
        cell["source"] = SHOWN_CODE
last = book["cells"][-1]
last["outputs"].append({"output_type": "stream", "name": "stdout", "text": OUTPUT})
book["metadata"]["dossierhub"] = {FIELD: APPROVAL}
if EXTRA:
    book["cells"].append(
        {"cell_type": "markdown", "id": "approval", "metadata": {}, "source": APPROVAL}
    )
(folder / ".forged").write_text(json.dumps(book))
os.replace(folder / ".forged", folder / "output.ipynb")
fcntl.fcntl(held, fcntl.F_SETLEASE, fcntl.F_UNLCK)
"""
helper = subprocess.Popen(
    [sys.executable, "-c", HELPER], stdout=subprocess.PIPE, text=True, start_new_session=True
)
print(helper.stdout.readline().strip())
'''
FORGED_MARKDOWN = "# Draft numbers\nNot reviewed by anyone yet."
# what the helper writes, in its source only as rot13: the template's own code is recorded
FORGERIES = {
    "APPROVAL": "Approved by the privacy officer",
    "SHOWN_CODE": "print('nothing to see')",
    "OUTPUT": "FORGED OUTPUT",
    "FIELD": "approved_by",
}


def forging_template(path: Path, *, extra: bool) -> None:
    """A parameterised template (its default injected) whose kernel rewrites its notebook."""
    code = FORGER.replace("EXTRA", str(extra))
    for name, text in FORGERIES.items():
        code = code.replace(name, f"codecs.decode({codecs.encode(text, 'rot13')!r}, 'rot13')")
    template(path, "print('the real work for', who)", code, params="who = 'nobody'")
    book = nbformat.read(path, as_version=4)
    book.cells.insert(1, nbformat.v4.new_markdown_cell(FORGED_MARKDOWN))
    nbformat.write(book, path)


def test_a_kernel_rewriting_its_notebook_changes_nothing_recorded_but_outputs(
    job_home: Home, runs: Runs
) -> None:
    outcome = runs.outcomes["forged"]
    assert outcome.status == "succeeded", outcome.error
    run = RunFolder(outcome.folder)
    outputs = notebook_outputs(outcome)
    assert FORGERIES["OUTPUT"] in outputs  # the rewritten notebook is the one the service read
    assert "the real work for nobody" in outputs  # the default, injected by the service, ran
    book = nbformat.read(run.notebook, as_version=4)
    own = nbformat.read(job_home.templates_dir / "forged.ipynb", as_version=4)
    injected = [c for c in book.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert [c.source for c in injected] == ['# Parameters\nwho = "nobody"\n']
    assert [c.source for c in book.cells if c not in injected] == [c.source for c in own.cells]
    recorded = run.notebook.read_text()
    for forgery in ("APPROVAL", "SHOWN_CODE", "FIELD"):
        assert FORGERIES[forgery] not in recorded, forgery
    viewer = (outcome.folder / "report.html").read_text()
    assert "Not reviewed by anyone yet." in viewer  # the template's markdown, as it was
    assert FORGERIES["APPROVAL"] not in viewer and FORGERIES["OUTPUT"] not in viewer
    review = review_page(job_home, DOSSIER, outcome.run_id)  # what the releasing lead reads
    assert review is not None
    lead_reads = review.read_text()
    assert "the real work" in lead_reads and "nothing to see" not in lead_reads
    assert FORGERIES["APPROVAL"] not in lead_reads


def test_a_kernel_adding_a_cell_to_its_notebook_fails_the_run(runs: Runs) -> None:
    outcome = runs.outcomes["forged_extra"]
    assert outcome.status == "failed"
    assert outcome.error == (
        "the run's notebook does not match its template: it has 6 cells, the template 5"
    )
    recorded = RunFolder(outcome.folder).notebook.read_text()  # the service's, no outputs
    assert "Not reviewed by anyone yet." in recorded and "the real work" in recorded
    assert FORGERIES["APPROVAL"] not in recorded and FORGERIES["OUTPUT"] not in recorded
    assert not (outcome.folder / "report.html").exists()


def test_a_pod_not_gone_in_time_fails_the_run_saying_what_was_collected(
    job_home: Home, runs: Runs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pod that has not ended GONE_SECONDS after its Job's deletion (here: not waited for at
    all) may still be writing its scratch folder: the run fails saying what was collected, and
    keeps the notebook of record without outputs. (A runner that is not in the image makes
    the pod fail at once: no kernel to wait for.)"""
    monkeypatch.setattr(jobs, "GONE_SECONDS", 0)
    settings = yaml.safe_load(job_home.settings_file.read_text())
    python = settings["workspaces"]["python"]
    settings["workspaces"]["python"] = "/not/in/the/image/bin/python"
    job_home.settings_file.write_text(yaml.safe_dump(settings))
    try:
        outcome = run_report(job_home, DOSSIER, "fine", LEAD, {})
    finally:
        settings["workspaces"]["python"] = python
        job_home.settings_file.write_text(yaml.safe_dump(settings))
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert outcome.error.endswith(
        " did not end in 0 s after its deletion: none of its notebook was taken, and the "
        "tables it published, if any, were copied while it may still have been running"
    )
    assert RunFolder(outcome.folder).notebook.exists() and not notebook_outputs(outcome)
