"""What one identity can do with a HOME on Kubernetes, tried with dossierhub's own code: run as
`python control_probe.py HOME STEP...` inside a pod's sandbox (test_control_identity.py), it
prints one JSON object, each step's outcome: "ok: <what it saw>" or the exception's class and
message. The steps are what the hub and the service do with HOME's files."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

from dossierhub.isolation.podids import pod_ids
from dossierhub.state.home import Home
from dossierhub.state.models import read_dossier
from dossierhub.state.settings import load_settings

DOSSIER = "armoede"


def settings(home: Home) -> str:
    return f"ok: spawner {load_settings(home).hub.spawner}"


def manifest(home: Home) -> str:
    return f"ok: {read_dossier(home, DOSSIER).title}"


def numbers(home: Home) -> str:
    return f"ok: {pod_ids(home)[DOSSIER]}"


def catalog_seen(home: Home) -> str:
    # the hub's start checks ask whether a dossier has extracts: an exists() that must not
    # raise PermissionError
    return f"ok: {home.extract_catalog(DOSSIER).exists()}"


def catalog_read(home: Home) -> str:
    """The views a dossier's page lists, read from its catalog.duckdb as the service does."""
    from dossierhub.portal import views_of

    return "ok: " + ", ".join(view["name"] for view in views_of(home, DOSSIER))


def _hub_config(home: Home) -> object:
    from traitlets.config import Config

    from dossierhub.workspaces.k8svalues import z2jh_hub_config

    c = Config()
    # what z2jh's own config registered before ours runs (its token comes from its Secret)
    c.JupyterHub.services = [
        {"name": "dossierhub", "api_token": "z2jh-token", "url": "http://dossierhub:8003"}
    ]
    # z2jh names the hub's Service here (http://hub:8081); localhost resolves in the sandbox
    c.JupyterHub.hub_connect_url = "http://localhost:8081"
    z2jh_hub_config(c, str(home.root))
    return c


def hub_config(home: Home) -> str:
    config = _hub_config(home)
    return f"ok: {config.JupyterHub.spawner_class}"  # type: ignore[attr-defined]


def workspace_start(home: Home) -> str:
    """The spawner's decision and pod for the dossier's workspace, contacting no API server
    (its kubeconfig names an address nothing listens on), as tests/hub/test_kubespawner.py."""
    folder = Path(tempfile.mkdtemp())
    kubeconfig = folder / "config"
    cluster = {"name": "none", "cluster": {"server": "https://127.0.0.1:9"}}
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [cluster],
                "users": [{"name": "none", "user": {"token": "not-a-token"}}],
                "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}],
                "current-context": "none",
            }
        )
    )
    os.environ["KUBECONFIG"] = str(kubeconfig)
    config = _hub_config(home)
    from kubernetes_asyncio.client import ApiClient

    from dossierhub.workspaces.kubespawner import DossierKubeSpawner

    async def start() -> int:
        name = f"dossier-{DOSSIER}"
        user = SimpleNamespace(name=name, id=1, url=f"/user/{name}/", escaped_name=name)
        spawner = DossierKubeSpawner(config=config, user=user, _mock=True)
        spawner.api_token = "server-token"  # the hub mints one per start
        spawner.prepare_start()
        pod = await spawner.get_pod_manifest()
        async with ApiClient() as client:  # the API's JSON, camelCase keys
            sent = client.sanitize_for_serialization(pod)
        return int(sent["spec"]["securityContext"]["runAsUser"])

    return f"ok: pod runs as {asyncio.run(start())}"


def run_folder(home: Home) -> str:
    """A report run queued as the service queues one: its folder and `queued` record."""
    from dossierhub.reports.requests import start_run

    pending = start_run(home, DOSSIER, "data_quality", "b.devries", {"view": "residents"})
    return f"ok: {pending.run.record.exists()}"


def job_prepare(home: Home) -> str:
    """A run queued and made ready for its Job as the service does (reports/jobs.py):
    the scratch folder with the template and parameters in it, opened to the Job."""
    from dossierhub.reports.jobs import hand_over, prepare_job
    from dossierhub.reports.requests import start_run

    pending = start_run(home, DOSSIER, "data_quality", "b.devries", {"view": "residents"})
    job = prepare_job(home, DOSSIER)
    hand_over(job.scratch, pending.template.path, pending.values, job.numbers.report)
    return f"ok: {job.scratch.relative_to(home.root)} {pending.run.path.relative_to(home.root)}"


def job_collect(home: Home, folders: str) -> str:
    """What the service does once the Job's pod is gone: the notebook and the published
    tables into the run folder (through safefs), then the scratch folder removed (runs.py)."""
    from dossierhub.isolation.unixusers import remove_scratch
    from dossierhub.reports.collect import collect_published
    from dossierhub.reports.jobs import take_notebook
    from dossierhub.state.home import RunFolder

    scratch_name, run_name = folders.split(",")
    scratch, run = home.root / scratch_name, RunFolder(home.root / run_name)
    notebook = take_notebook(scratch, run)
    published = collect_published(scratch, run)
    remove_scratch(scratch)
    left = sorted(path.name for path in scratch.parent.iterdir())
    return f"ok: notebook {notebook}, published {published}, left {left}"


STEPS: dict[str, Callable[..., str]] = {
    step.__name__: step
    for step in (
        settings,
        manifest,
        numbers,
        catalog_seen,
        catalog_read,
        hub_config,
        workspace_start,
        run_folder,
        job_prepare,
        job_collect,
    )
}


def main() -> None:
    home = Home(Path(sys.argv[1]))
    seen: dict[str, str] = {}
    for step in sys.argv[2:]:
        name, _, argument = step.partition("=")  # a step's one argument, if it takes one
        try:
            seen[name] = STEPS[name](home, *([argument] if argument else []))
        except Exception as exc:  # each step's outcome is the result
            last = traceback.extract_tb(exc.__traceback__)[-1]
            seen[name] = f"{type(exc).__name__}: {exc} ({Path(last.filename).name}:{last.lineno})"
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
