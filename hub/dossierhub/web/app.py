"""The dossierhub service: pages and a REST API at /services/dossierhub/ (HubOAuth).

Run by `dossierhub serve` beside the proxy (python -m dossierhub.web --home HOME), so that a
hub restart after apply does not cut report runs short; JupyterHub knows it as the external
service "dossierhub" (its proxy route, its OAuth client). Every request is identified by the
hub (login cookie or API token) and every answer is decided by dossierhub.portal on the
person's role in that dossier.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import logging
import os
import signal
from pathlib import Path
from typing import Any

import jinja2
from jupyterhub._data import DATA_FILES_PATH
from jupyterhub.services.auth import HubOAuth
from tornado import web

from dossierhub.state.audit import AuditLog, set_channel
from dossierhub.state.auditindex import ExecutionIndex
from dossierhub.state.executions import Ingester
from dossierhub.state.home import Home
from dossierhub.state.settings import load_settings
from dossierhub.web import api, auditwords, dates, pages
from dossierhub.web.runner import Runner
from dossierhub.workspaces.hubconfig import SERVICE, ports
from dossierhub.workspaces.hubconfig import TEMPLATES as HUB_TEMPLATES
from dossierhub.workspaces.tokens import read_token

HERE = Path(__file__).parent
PREFIX = f"/services/{SERVICE}/"
HUB_PREFIX = "/hub/"


def make_hub_auth(home: Home, hub_api_url: str, token: str | None = None) -> HubOAuth:
    """`token`: the service's api token when it does not come from HOME (on Kubernetes, z2jh
    keeps it in a Secret: docs/operating-on-kubernetes.md)."""
    token = token or read_token(home, "service")
    return HubOAuth(
        api_token=token,
        api_url=hub_api_url,
        oauth_client_id=f"service-{SERVICE}",
        oauth_redirect_uri=f"{PREFIX}oauth_callback",
        base_url=PREFIX,
        hub_prefix=HUB_PREFIX,
        access_scopes={"access:services", f"access:services!service={SERVICE}"},
        cache_max_age=5,  # a removed member is out within seconds, as in the workspaces
    )


def make_app(home: Home, hub_auth: HubOAuth, runner: Runner) -> web.Application:
    hub_templates = str(Path(DATA_FILES_PATH) / "templates")
    # as JupyterHub loads its own (app.py, init_tornado_settings): dossierhub's page.html
    # and navigation bar (the hub's pages use the same), extending JupyterHub's original
    # under the "templates/" prefix
    loader = jinja2.ChoiceLoader(
        [
            jinja2.FileSystemLoader(str(HERE / "templates")),
            jinja2.FileSystemLoader(str(HUB_TEMPLATES)),
            jinja2.PrefixLoader({"templates": jinja2.FileSystemLoader(hub_templates)}, "/"),
            jinja2.FileSystemLoader(hub_templates),
        ]
    )
    environment = jinja2.Environment(loader=loader, autoescape=True)
    add_filters(environment)
    routes: list[Any] = [
        *api.routes(PREFIX),
        *pages.routes(PREFIX),
        (
            rf"{PREFIX}static/(.*)",
            web.StaticFileHandler,
            {"path": str(HERE / "static")},
        ),
    ]
    return web.Application(
        routes,
        home=home,
        prefix=PREFIX,
        hub_auth=hub_auth,
        runner=runner,
        jinja=environment,
        # signs the login cookie; derived, so the API token itself is never a cookie key
        cookie_secret=hmac.new(
            hub_auth.api_token.encode(), b"dossierhub service cookies", hashlib.sha256
        ).digest(),
        xsrf_cookies=False,  # HubOAuth brings JupyterHub's own xsrf checks for cookie requests
        static_url_prefix=f"{PREFIX}static/",
        default_handler_class=pages.NotFound,  # a mistyped address: a page, not a bare 404
    )


def add_filters(environment: jinja2.Environment) -> None:
    """The pages' one rule for dates (`when`, in the page's `time_zone`; `day`) and the audit
    trail's sentences (`audit_sentence`)."""

    @jinja2.pass_context
    def when(context: Any, value: Any, empty: str = "") -> Any:
        return dates.when(value, context.get("time_zone") or "UTC", empty)

    environment.filters["when"] = when
    environment.filters["day"] = dates.day
    environment.filters["audit_sentence"] = auditwords.sentence


async def _serve(
    home: Home, port: int, hub_api_url: str, ip: str = "127.0.0.1", token: str | None = None
) -> None:
    settings = load_settings(home)
    # a run as a Kubernetes Job starts its kernel in its own pod: no kernels ahead of time
    on_jobs = settings.reports.backend == "kubernetes"
    runner = Runner(home, 0 if on_jobs else settings.reports.prestart_kernels)
    if on_jobs:  # before the first request: runs whose Jobs outlived the last service
        taken = await asyncio.get_running_loop().run_in_executor(None, runner.take_up)
        logging.getLogger("dossierhub.web").info("report runs taken up: %d", taken)
    app = make_app(home, make_hub_auth(home, hub_api_url, token), runner)
    server = app.listen(port, address=ip, xheaders=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    prune = asyncio.create_task(_prune_every(runner, 60))
    ingest = asyncio.create_task(_ingest_every(home, INGEST_SECONDS))
    logging.getLogger("dossierhub.web").info("dossierhub pages on %s:%s%s", ip, port, PREFIX)
    await stop.wait()
    prune.cancel()
    ingest.cancel()
    server.stop()
    await asyncio.get_running_loop().run_in_executor(None, runner.close)


INGEST_SECONDS = 1.0


async def _ingest_every(home: Home, seconds: float) -> None:
    """Take the workspaces' bridges' batches of executions into the audit log
    (state/executions.py). A failure (the database away) leaves the batches spooled for the
    next round: nothing recorded is lost."""
    ingester: Ingester | None = None
    indexed = False
    while True:
        taken = 0
        try:
            if ingester is None:
                ingester = await asyncio.to_thread(Ingester, AuditLog(home))
            taken = await asyncio.to_thread(ingester.ingest, home)
        except Exception:
            logging.getLogger("dossierhub.web").exception("executions not taken in yet")
            ingester = None  # read the log again: a batch may have been appended
        if taken or not indexed:  # the pages' index in step here, not in a page's request
            try:
                await asyncio.to_thread(lambda: ExecutionIndex.for_log(AuditLog(home)).catch_up())
                indexed = True
            except Exception:
                logging.getLogger("dossierhub.web").exception("executions index not in step")
        await asyncio.sleep(seconds)


async def _prune_every(runner: Runner, seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        await asyncio.get_running_loop().run_in_executor(None, runner.prune)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dossierhub.web")
    parser.add_argument("--home", required=True)
    parser.add_argument("--hub-api", required=True, help="the hub's REST API URL")
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help="the port to answer on (serve passes the one the hub routes to: settings.yaml's "
        "hub.port + 3, or --port's)",
    )
    # in a pod (deploy/chart): every address, and the token z2jh registered for the service
    parser.add_argument("--ip", default="127.0.0.1", help="the address to answer on")
    parser.add_argument(
        "--token-from-env",
        action="store_true",
        help="the hub API token from $JUPYTERHUB_API_TOKEN instead of HOME's token file",
    )
    args = parser.parse_args(argv)
    token = None
    if args.token_from_env:
        token = os.environ.get("JUPYTERHUB_API_TOKEN")
        if not token:
            parser.error("--token-from-env: $JUPYTERHUB_API_TOKEN is not set")
    set_channel("service")
    logging.basicConfig(level=logging.INFO, format="[dossierhub-web %(levelname)s] %(message)s")
    home = Home.from_option(args.home)
    port = args.port if args.port is not None else ports(load_settings(home))[3]
    asyncio.run(_serve(home, port, args.hub_api, args.ip, token))
