"""A dossier workspace as a pod, end to end: dossierhub's own hub (`dossierhub serve`,
hub.spawner kubernetes) on the Kubernetes stand-in (standin.py). A member opens the armoede
workspace through the real hub and proxy; its Dossier kernel, run through the proxy as a
browser would, reads its extracts as the dossier's pod number, cannot change them, and
cannot reach another dossier's; a viewer and a stranger are refused; the token the pod holds
opens nothing but its own activity, and no secret of the installation is in the pod (the red
team's attacks); a hub restart finds the running pod again; stop deletes the pod and its
network policy. A report run the service started as a Job (reports.backend kubernetes) goes
on through the hub's restart and through the service's own: the next service takes it up
and records it (reports/resume.py); what it cannot take up ends failed, saying why.

The tests share one hub and run in order (module scope): each leaves the workspace as the
next expects it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubelet import RunningPod, running_processes_of, wait_until
from standin import StandIn

from dossierhub.isolation.podids import pod_ids, recorder_pod_ids
from dossierhub.isolation.podspec import RECORDER_PORT, SERVER_PORT
from dossierhub.reports.jobs import RUN_LABEL, job_name
from dossierhub.reports.records import read_record, write_record
from dossierhub.reports.requests import start_run
from dossierhub.reports.resume import JOB_GONE, NOT_STARTED, take_up_runs
from dossierhub.state.audit import AuditLog
from dossierhub.state.executions import ACTION
from dossierhub.state.home import Home, RunFolder
from dossierhub.workspaces.kubespawner import policy_name
from dossierhub.workspaces.provision import request_hub_restart
from dossierhub.workspaces.servestate import read_serve_state

from e2e_hub import LEAD, STRANGER, VIEWER, Hub
from e2e_runs import template
from kernelclient import execute

DOSSIER, OTHER = "armoede", "mobiliteit"
SERVER = f"dossier-{DOSSIER}"
POD = ("default", f"jupyter-{SERVER}")


# the kernel's attempts with the token in its environment: (name, method, url)
ATTACK = """
import json, os, urllib.request, urllib.error
token = os.environ["JUPYTERHUB_API_TOKEN"]
hub = os.environ["JUPYTERHUB_API_URL"].rstrip("/")
public = {public!r}
attempts = {{
    "whoami": ("GET", f"{{hub}}/user"),
    "list people": ("GET", f"{{hub}}/users"),
    "list groups (memberships)": ("GET", f"{{hub}}/groups"),
    "read another dossier's user": ("GET", f"{{hub}}/users/dossier-{other}"),
    "start another dossier's workspace": ("POST", f"{{hub}}/users/dossier-{other}/server"),
    "mint a token": ("POST", f"{{hub}}/users/{server}/tokens"),
    "stop its own workspace": ("DELETE", f"{{hub}}/users/{server}/server"),
    "the proxy's routes": ("GET", f"{{hub}}/proxy"),
    "the service's dossiers": ("GET", f"{{public}}services/dossierhub/api/dossiers"),
    "the service's runs": ("GET", f"{{public}}services/dossierhub/api/dossiers/{other}/runs"),
    "the service as admin": ("GET", f"{{public}}services/dossierhub/api/admin/dossiers"),
    "another dossier's workspace": ("GET", f"{{public}}user/dossier-{other}/api/status"),
}}
seen = {{}}
for name, (method, url) in attempts.items():
    request = urllib.request.Request(url, method=method, data=b"{{}}" if method == "POST" else None,
                                     headers={{"Authorization": f"token {{token}}"}})
    opener = urllib.request.build_opener(urllib.request.HTTPRedirectHandler())
    try:
        with opener.open(request, timeout=20) as response:
            seen[name] = [response.status, response.read(4000).decode(errors="replace")]
    except urllib.error.HTTPError as exc:
        seen[name] = [exc.code, ""]
print(json.dumps(seen))
"""

# everything in the pod a secret could hide in: the kernel's environment and every process's
ENVIRONMENTS = """
import json, os
found = [json.dumps(dict(os.environ))]
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            found.append(open(f"/proc/{pid}/environ", "rb").read().decode(errors="replace"))
        except OSError:
            pass
print(json.dumps(found))
"""


# what users:activity!user expands to: reading the dossier user's own name, groups, activity
READ_OWN = {"read:users:activity", "read:users:groups", "read:users:name"}


def status(hub: Hub, token: str) -> int:
    return httpx.get(
        f"{hub.url}user/{SERVER}/api/status",
        headers={"Authorization": f"token {token}"},
        timeout=30,
    ).status_code


def policy(k8s: StandIn, name: str) -> int:
    url = f"{k8s.api_url}/apis/networking.k8s.io/v1/namespaces/default/networkpolicies/{name}"
    return httpx.get(url, timeout=10).status_code


def run(hub: Hub, token: str, code: str) -> str:
    result = execute(hub.url, SERVER, token, code, timeout=90)
    assert result.error is None, "\n".join(result.error.get("traceback", []))
    return result.stdout


@pytest.fixture(scope="module")
def lead(hub_on_standin: Hub) -> str:
    return hub_on_standin.token(LEAD)


def test_a_member_opens_the_workspace_as_a_pod_of_the_dossier_s_number(
    hub_on_standin: Hub, k8s_standin_module: StandIn, lead: str
) -> None:
    hub, k8s = hub_on_standin, k8s_standin_module
    started = time.monotonic()
    response = hub.start(SERVER, lead)
    assert response.status_code in (201, 202), response.text
    wait_until(lambda: status(hub, lead) == 200, timeout=60, what="the workspace via the proxy")
    print(f"stand-in: dossier workspace ready in {time.monotonic() - started:.2f} s")
    number = pod_ids(hub.home)[DOSSIER]  # handed out by apply, before the first start
    running = k8s.kubelet.pods[POD]
    assert running.uid == number and running.process.poll() is None
    assert running_processes_of(number), "the workspace does not run as the dossier's number"
    assert policy(k8s, policy_name(DOSSIER)) == 200  # its walls on a cluster's network
    assert not k8s.kubelet.refused


KERNEL = """
import os, pathlib
print("uid", os.getuid(), os.getgid())
print("residents", db.sql("SELECT count(*) FROM residents").fetchall()[0][0])
extracts = pathlib.Path(os.environ["DOSSIER_CATALOG"]).parent
for name, attempt in (
    ("change", lambda: open(next(p for p in extracts.rglob("*.parquet")), "r+b")),
    ("plant", lambda: (extracts / "planted.parquet").write_bytes(b"x")),
    ("other", lambda: os.listdir(extracts.parent / "mobiliteit")),
    ("home", lambda: os.listdir(extracts.parent.parent / "secrets")),
):
    try:
        attempt()
        print(name, "allowed")
    except OSError as exc:
        print(name, "refused", type(exc).__name__)
(pathlib.Path.cwd() / "notes.txt").write_text("mine")
print("wrote", pathlib.Path.cwd())
"""


def test_the_kernel_reads_its_extracts_and_nothing_else_of_home(
    hub_on_standin: Hub, lead: str, held_run: HeldRun
) -> None:
    # held_run: a report run the service started, its pod starting while this and the next
    # tests run (the restarts below keep it going)
    hub = hub_on_standin
    number = pod_ids(hub.home)[DOSSIER]
    seen = dict(line.split(" ", 1) for line in run(hub, lead, KERNEL).splitlines())
    assert seen["uid"] == f"{number} {number}"
    assert int(seen["residents"]) > 0
    assert seen["change"].startswith("refused") and seen["plant"].startswith("refused"), seen
    assert seen["other"].startswith("refused") and seen["home"].startswith("refused"), seen
    assert seen["wrote"] == str(hub.home.workspace_dir(DOSSIER))
    written = hub.home.workspace_dir(DOSSIER) / "notes.txt"
    assert written.read_text() == "mine" and written.stat().st_uid == number
    assert not (hub.home.extract_dir(DOSSIER) / "planted.parquet").exists()


def test_a_viewer_and_a_stranger_are_refused(hub_on_standin: Hub) -> None:
    hub = hub_on_standin
    for person in (VIEWER, STRANGER):
        token = hub.token(person)
        assert status(hub, token) == 403, person  # the running workspace, through the proxy
        start = httpx.post(
            f"{hub.url}hub/api/users/{SERVER}/server",
            headers={"Authorization": f"token {token}"},
            timeout=30,
        )
        assert start.status_code in (403, 404), (person, start.text)


def test_the_server_s_token_opens_nothing_but_its_own_activity(
    hub_on_standin: Hub, lead: str
) -> None:
    """Red team: the kernel uses the token its pod holds. The stand-in enforces no
    NetworkPolicy, so it reaches the hub's API and the proxy's public port as on a cluster
    (the dossier's policy lets it out to the hub's API): the token must open nothing there
    but its own activity and server."""
    hub = hub_on_standin
    hub.ensure_running(SERVER, lead)
    code = ATTACK.format(public=hub.url, other=OTHER, server=SERVER)
    seen = json.loads(run(hub, lead, code))
    whoami_status, whoami = seen.pop("whoami")
    assert whoami_status == 200
    model = json.loads(whoami)
    assert model["name"] == SERVER
    # users:activity and access:servers, as the hub expands them: on this dossier alone
    kinds = {scope.split("!")[0] for scope in model["scopes"]}
    assert kinds <= {"access:servers", "users:activity", *READ_OWN}, model["scopes"]
    filters = {scope.split("!")[1] for scope in model["scopes"]}
    assert filters <= {f"user={SERVER}", f"server={SERVER}/"}, model["scopes"]
    print(json.dumps({name: status for name, (status, _) in seen.items()}, indent=1))
    opened = {name: status for name, (status, _) in seen.items() if status < 400}
    assert not opened, f"the workspace's token opened: {opened}"
    # the pod is still there: it could not stop (or restart) itself through the hub either
    status = f"{hub.url}user/{SERVER}/api/status"
    assert httpx.get(status, headers={"Authorization": f"token {lead}"}, timeout=30).is_success


def _secrets(home: Home) -> dict[str, str]:
    """Every secret value of the installation that is a file under HOME."""
    files = [*(home.root / "secrets").iterdir(), home.proxy_token_file, home.service_token_file]
    files += [p for p in home.hub_dir.iterdir() if "secret" in p.name]
    values = {str(p.relative_to(home.root)): p.read_text(errors="replace").strip() for p in files}
    assert len(values) >= 3 and all(len(v) >= 16 for v in values.values()), values.keys()
    return values


def test_no_secret_of_the_installation_is_in_the_pod(hub_on_standin: Hub, lead: str) -> None:
    hub = hub_on_standin
    hub.ensure_running(SERVER, lead)
    environments = json.loads(run(hub, lead, ENVIRONMENTS))
    assert len(environments) >= 2, "the kernel saw no process of its pod"
    for name, value in _secrets(hub.home).items():
        for environment in environments:
            assert value not in environment, f"{name} is in the pod's environment"


def _recorded(hub: Hub, first_line: str) -> dict[str, Any] | None:
    """The execute event with `first_line` once the service took it into the audit log."""
    for record in AuditLog(hub.home).read():
        if record.get("action") == ACTION:
            for event in record["details"]["events"]:
                if event.get("first_line") == first_line:
                    return {**event, "record": record}
    return None


def test_a_member_s_execution_in_the_pod_is_recorded_under_her_name(
    hub_on_standin: Hub, k8s_standin_module: StandIn, lead: str
) -> None:
    """Issue 16 on a pod: the lead's execution goes through the hub's proxy to the pod's
    recorder (its own container and number), which records it under her name, never the
    name the message claims; the service takes the batch from the recorder's spool into the
    audit log. The pod's two containers run as two numbers."""
    hub, k8s = hub_on_standin, k8s_standin_module
    hub.ensure_running(SERVER, lead)
    line = f"marker = {uuid.uuid4().hex!r}"
    run(hub, lead, line)  # kernelclient's message claims the name "test"
    wait_until(lambda: _recorded(hub, line) is not None, timeout=20, what="the record")
    event = _recorded(hub, line)
    assert event is not None
    assert (event["person"], event["record"]["details"]["dossier"]) == (LEAD, DOSSIER)
    assert event["code_sha256"] == hashlib.sha256(line.encode()).hexdigest()
    numbers = {c.uid for c in k8s.kubelet.pods[POD].containers}
    assert numbers == {pod_ids(hub.home)[DOSSIER], recorder_pod_ids(hub.home)[DOSSIER]}


POD_ATTACKS = """
import json, os, pathlib, socket
found = {{}}
listener = socket.socket()
try:
    listener.bind(("0.0.0.0", {port}))
    found["bind"] = "allowed"
except OSError as exc:
    found["bind"] = type(exc).__name__
spool = pathlib.Path({spool!r})
for name, attempt in (
    ("list", lambda: os.listdir(spool)),
    ("write", lambda: (spool / "planted.json").write_text("{{}}")),
):
    try:
        attempt()
        found[name] = "allowed"
    except OSError as exc:
        found[name] = type(exc).__name__
seen = []
for proc in pathlib.Path("/proc").iterdir():
    try:
        seen.append((proc / "cmdline").read_bytes())
    except OSError:
        pass
found["recorder seen"] = any(b"netbridge" in line for line in seen)
server = pathlib.Path(f"/proc/{{os.getppid()}}")  # the kernel's parent: its server
config = pathlib.Path(os.environ["JUPYTER_CONFIG_DIR"])
for name, attempt in (
    ("server environ", lambda: (server / "environ").read_bytes()),
    ("plant config", lambda: (config.mkdir(parents=True, exist_ok=True),
                              (config / "jupyter_server_config.json").write_text("{{}}"))),
):
    try:
        attempt()
        found[name] = "allowed"
    except OSError as exc:
        found[name] = "refused"
print(json.dumps(found))
"""


def test_the_kernel_cannot_take_the_recorder_s_port_reach_its_spool_or_see_it(
    hub_on_standin: Hub, k8s_standin_module: StandIn, lead: str
) -> None:
    """Attacks from the kernel on its pod's recorder: bind the pod's port (the sysctl keeps
    every port below 1024 from a container without NET_BIND_SERVICE), list or plant in the
    spool (not mounted in the workspace's container), see its process (a PID namespace of
    its own); on its server: read its environment (undumpable), plant Jupyter config. And
    from outside the pod, the server past the recorder: refused (only the recorder's port is
    declared)."""
    hub, k8s = hub_on_standin, k8s_standin_module
    hub.ensure_running(SERVER, lead)
    spool = hub.home.execution_spool_dir(DOSSIER)
    code = POD_ATTACKS.format(port=RECORDER_PORT, spool=str(spool))
    found = json.loads(run(hub, lead, code))
    assert found == {
        "bind": "PermissionError",
        "list": "FileNotFoundError",
        "write": "FileNotFoundError",
        "recorder seen": False,
        # as on one machine: the visitors' tokens in the server are out of the kernel's
        # reach, and nothing it writes configures the next server
        "server environ": "refused",
        "plant config": "refused",
    }, found
    assert not (spool / "planted.json").exists()
    ip = k8s.kubelet.pods[POD].ip
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((ip, SERVER_PORT), timeout=5).close()
    socket.create_connection((ip, RECORDER_PORT), timeout=5).close()  # the one way in


def test_a_hub_restart_finds_the_running_pod_again(
    hub_on_standin: Hub, k8s_standin_module: StandIn, lead: str, held_run: HeldRun
) -> None:
    """The hub stopped and started again (as a rolled hub Deployment is): the workspace's pod
    is found again, and the service's report run, its Job and its pod go on untouched; the
    lead reads the run through the new hub's login."""
    hub, k8s = hub_on_standin, k8s_standin_module
    running = k8s.kubelet.pods[POD]
    report_pod = holding(k8s, held_run)
    state = read_serve_state(hub.home)
    assert state is not None
    started = time.monotonic()
    request_hub_restart(hub.home, set(state.role_ids))
    print(f"stand-in: dossierhub's hub restarted in {time.monotonic() - started:.2f} s")
    wait_until(lambda: status(hub, lead) == 200, timeout=30, what="the workspace after restart")
    assert k8s.kubelet.pods[POD] is running and running.process.poll() is None
    assert run(hub, lead, "print(db.sql('SELECT 1').fetchall()[0][0])").strip() == "1"
    assert run_detail(hub, held_run.run_id)["status"] == "running"
    (job,) = jobs_of_run(k8s, held_run.run_id)
    assert job["metadata"]["uid"] == held_run.job_uid  # the same Job, its pod still running
    assert report_pod.process.poll() is None


def test_stop_deletes_the_pod_and_its_network_policy(
    hub_on_standin: Hub, k8s_standin_module: StandIn
) -> None:
    hub, k8s = hub_on_standin, k8s_standin_module
    running = k8s.kubelet.pods[POD]
    api = hub.api()
    try:
        api.stop_server(SERVER)
    finally:
        api.close()
    wait_until(lambda: k8s.get_pod(*POD) is None, timeout=30, what="the pod deleted")
    assert running.process.poll() is not None
    assert not running_processes_of(pod_ids(hub.home)[DOSSIER])
    wait_until(
        lambda: policy(k8s, policy_name(DOSSIER)) == 404, timeout=30, what="the policy deleted"
    )


# --- the service's report runs as Jobs across hub and service restarts (issue 15, point 4) ---

HOLD = """
import os, pathlib, time
go = pathlib.Path(os.environ["DOSSIERHUB_RUN_DIR"]) / "go"
while not go.exists():  # until the test lets it go, or the template's time limit ends it
    time.sleep(0.1)
print("went", go.exists())
"""
FINE = """
counts = db.sql('SELECT district, count(*) AS people FROM residents GROUP BY district').pl()
publish(counts, 'people_per_district', counts=['people'])
"""


@dataclass
class HeldRun:
    """A run the lead started through the service's REST API, its Job's kernel holding at
    its second cell until the test writes `go` into its scratch folder."""

    run_id: str
    job_uid: str = ""  # its Job's, once `holding` found it
    scratch: Path = Path()


def jobs_of_run(k8s: StandIn, run_id: str) -> list[dict]:
    listed = httpx.get(f"{k8s.api_url}/apis/batch/v1/namespaces/default/jobs", timeout=10)
    return [
        job
        for job in listed.json()["items"]
        if job["metadata"]["labels"].get(RUN_LABEL) == run_id.lower()
    ]


def processes(*parts: bytes) -> list[int]:
    """The processes whose command line holds every one of `parts`."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            line = cmdline.read_bytes()
            if all(part in line for part in parts):
                found.append(int(cmdline.parent.name))
    return found


def service_pid(hub: Hub) -> int:
    (pid,) = processes(b"dossierhub.web", str(hub.home.root).encode())
    return pid


def run_detail(hub: Hub, run_id: str) -> dict:
    with hub.service_api(LEAD) as api:
        answer = api.get(f"dossiers/{DOSSIER}/runs/{run_id}")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


@pytest.fixture(scope="module")
def held_run(hub_on_standin: Hub) -> HeldRun:
    """Started through the REST API as a lead starts it; its Job and pod come while other
    tests run (`holding` waits for them)."""
    hub = hub_on_standin
    # templates are read from the manifest at each request (requests.prepare_run)
    template(hub.home.templates_dir / "hold.ipynb", "print('holding')", HOLD, FINE)
    manifest = hub.manifest(DOSSIER)
    hub.write_manifest(DOSSIER, {**manifest, "templates": [*manifest["templates"], "hold"]})
    with hub.service_api(LEAD) as api:
        answer = api.post(f"dossiers/{DOSSIER}/runs", json={"template": "hold"})
    assert answer.status_code == 202, answer.text
    return HeldRun(answer.json()["run_id"])


def holding(k8s: StandIn, held: HeldRun) -> RunningPod:
    """The held run's pod, once its kernel has run the first cell; notes its Job."""
    wait_until(lambda: len(jobs_of_run(k8s, held.run_id)) == 1, timeout=120, what="its Job")
    (job,) = jobs_of_run(k8s, held.run_id)
    if not held.job_uid:  # the first look; later ones must find the same Job
        held.job_uid = job["metadata"]["uid"]
        held.scratch = Path(job["spec"]["template"]["spec"]["containers"][0]["args"][0])
    assert job["metadata"]["uid"] == held.job_uid

    def first_cell_ran() -> bool:
        with contextlib.suppress(OSError, ValueError):
            book = json.loads((held.scratch / "output.ipynb").read_text())
            return "holding" in json.dumps([c.get("outputs") for c in book["cells"]])
        return False

    wait_until(first_cell_ran, timeout=120, what="the run's kernel at its first cell, in its pod")
    prefix = job_name(DOSSIER, held.run_id)
    (pod,) = [p for key, p in k8s.kubelet.pods.items() if key[1].startswith(prefix)]
    return pod


def test_a_service_restart_takes_the_run_up_and_it_ends_recorded(
    hub_on_standin: Hub, k8s_standin_module: StandIn, held_run: HeldRun
) -> None:
    """The service stopped as a rolled or evicted pod is (SIGTERM) while the Job runs: it
    leaves the Job running and records nothing; the service started again takes the run up,
    and the run ends succeeded, collected, checked, drawn and audited once."""
    hub, k8s = hub_on_standin, k8s_standin_module
    pod = holding(k8s, held_run)
    old = service_pid(hub)
    os.kill(old, signal.SIGTERM)
    wait_until(lambda: not Path(f"/proc/{old}").exists(), timeout=20, what="the service gone")
    (job,) = jobs_of_run(k8s, held_run.run_id)
    assert job["metadata"]["uid"] == held_run.job_uid  # handed over, not deleted
    assert pod.process.poll() is None
    wait_until(lambda: len(processes(b"dossierhub.web", str(hub.home.root).encode())) == 1,
               timeout=30, what="serve starting the service again")  # fmt: skip
    new = service_pid(hub)
    wait_until(lambda: run_detail_or_none(hub, held_run.run_id) is not None, timeout=60,
               what="the new service answering")  # fmt: skip
    run = hub.home.run_folder(DOSSIER, held_run.run_id)
    assert json.loads(run.record.read_text())["runner_pid"] == new  # taken up, before any read
    (held_run.scratch / "go").write_text("")
    wait_until(lambda: not run_detail(hub, held_run.run_id)["in_progress"], timeout=120,
               what="the run's end")  # fmt: skip
    detail = run_detail(hub, held_run.run_id)
    assert detail["status"] == "succeeded", detail.get("error")
    assert "went True" in RunFolder(run.path).notebook.read_text()
    assert "people_per_district" in run.report_html.read_text()
    events = [e for e in AuditLog(hub.home).read() if e["details"].get("run") == held_run.run_id]
    assert [e["action"] for e in events if e["action"].startswith("report.")] == [
        "report.run",
        "report.finished",
    ]
    wait_until(lambda: not jobs_of_run(k8s, held_run.run_id), what="the Job deleted")
    assert pod.process.poll() is not None
    assert not held_run.scratch.exists()


def run_detail_or_none(hub: Hub, run_id: str) -> dict | None:
    with contextlib.suppress(httpx.HTTPError, AssertionError):
        return run_detail(hub, run_id)
    return None


def left_in_progress(hub: Hub, status: str) -> RunFolder:
    """A run as a service that was killed leaves it: recorded `status`, its runner gone."""
    pending = start_run(hub.home, DOSSIER, "hold", LEAD, {})
    with subprocess.Popen(["true"]) as ended:  # its number is free once it has ended
        ended.wait()
    record = pending.record.start() if status == "running" else pending.record
    write_record(pending.run, record.model_copy(update={"runner_pid": ended.pid}))
    return pending.run


def test_runs_the_next_service_cannot_take_up_end_failed_saying_why(hub_on_standin: Hub) -> None:
    """A run whose Job is gone, and one that never got a slot, are recorded failed with why
    (audited once), not left `running` for ever nor passed off as the process's death."""
    hub = hub_on_standin
    without_job = left_in_progress(hub, "running")
    queued = left_in_progress(hub, "queued")
    assert take_up_runs(hub.home) == []
    for run, why in ((without_job, JOB_GONE), (queued, NOT_STARTED)):
        record = read_record(run)
        assert (record.status, record.error) == ("failed", why)
        finished = [
            e
            for e in AuditLog(hub.home).read()
            if e["action"] == "report.finished" and e["details"].get("run") == run.run_id
        ]
        assert [e["details"]["error"] for e in finished] == [why]
