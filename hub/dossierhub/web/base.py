"""What every page and API handler shares: who is asking, security headers, the one audited
decision path (decisions.decide) and turning a refusal into the right status code."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from tornado import web
from tornado.ioloop import IOLoop

from dossierhub import portal
from dossierhub.portal import Person, person_for
from dossierhub.state import decisions
from dossierhub.state.home import Home
from dossierhub.state.problems import ReportRefused
from dossierhub.web.runner import Runner

T = TypeVar("T")

PAGE_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; frame-src 'self'; frame-ancestors 'self'; form-action 'self'; "
    "base-uri 'none'; object-src 'none'"
)


def status_of(refused: ReportRefused) -> int:
    return decisions.http_status(refused)


class DossierHandler(HubOAuthenticated, web.RequestHandler):
    def initialize(self) -> None:
        self.hub_auth = self.settings["hub_auth"]

    @property
    def home(self) -> Home:
        return self.settings["home"]

    @property
    def runner(self) -> Runner:
        return self.settings["runner"]

    @functools.cached_property
    def person(self) -> Person | None:
        """People only: services and workspace accounts have no dossier role to use here."""
        model = self.current_user
        if not model or model.get("kind", "user") != "user":
            return None
        return person_for(self.home, model["name"])

    def set_default_headers(self) -> None:
        self.set_header("Content-Security-Policy", PAGE_CSP)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "same-origin")
        self.set_header("Cache-Control", "no-store")

    async def blocking(self, function: Callable[..., T], *args: Any) -> T:
        """Portal calls read files (and verify the audit chain): off the event loop."""
        return await IOLoop.current().run_in_executor(None, functools.partial(function, *args))

    async def decided(
        self,
        action: str,
        dossier_id: str | None,
        rule: Callable[..., T],
        *args: Any,
        facts: Callable[[T], dict[str, Any]] | None = None,
        **asked: Any,
    ) -> T:
        """`rule(home, *args)` as one decision of this person, recorded once (allowed or
        refused) by decisions.decide; a refusal is raised on as ReportRefused."""
        assert self.person is not None  # prepare() turned away everyone else
        return await self.blocking(
            functools.partial(
                decisions.decide,
                self.home,
                action,
                self.person.name,
                dossier_id,
                functools.partial(rule, self.home, *args),
                facts,
                **asked,
            )
        )

    async def report_page(self, dossier_id: str, run_id: str, view: str) -> Path:
        """The run's report.html or review.html for this person: one report.read decision
        (the pages' frame and the API answer the same)."""
        assert self.person is not None
        return await self.decided(
            "report.read",
            dossier_id,
            portal.report_html,
            dossier_id,
            run_id,
            self.person,
            view,
            run=run_id,
            view=view,
        )

    async def table_csv(self, dossier_id: str, run_id: str, name: str) -> tuple[str, bytes]:
        """A published table of the run as CSV (file name, bytes): one report.read decision."""
        assert self.person is not None
        return await self.decided(
            "report.read",
            dossier_id,
            portal.table_csv,
            dossier_id,
            run_id,
            name,
            self.person,
            run=run_id,
            table=name,
        )

    async def activity(self, name: str, fmt: str) -> portal.ActivityExport:
        """One person's executions as a file, for the admin: one executions.export decision
        (the Admin page's form and the API answer the same)."""
        return await self.decided(
            "executions.export",
            None,
            portal.person_activity,
            self.person,
            name,
            fmt,
            facts=portal.export_facts,
            person=name,
            format=fmt,
        )

    async def refuse(
        self, action: str, dossier_id: str | None, refused: ReportRefused, **asked: Any
    ) -> ReportRefused:
        """Record a refusal made before any rule ran (a malformed request body)."""
        assert self.person is not None
        return await self.blocking(
            functools.partial(
                decisions.refuse, self.home, action, self.person.name, dossier_id, refused, **asked
            )
        )


class OAuthCallback(HubOAuthCallbackHandler):
    def initialize(self) -> None:
        self.hub_auth = self.settings["hub_auth"]


# what a dossier, a run and a published table are called in a URL (pages and API alike)
ID = r"([a-z][a-z0-9-]{1,22}[a-z0-9])"
RUN = r"([0-9A-Za-z-]{1,64})"
TABLE = r"([a-z][a-z0-9_]{0,62})"
PERSON = r"([a-z0-9][a-z0-9._-]{0,62})"  # a person, as models.Person spells them


REPORT_CSP = (
    "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:; "
    "frame-ancestors 'self'"
)


def send_report(handler: web.RequestHandler, path: Path) -> None:
    """A report opens with no script allowed and in a unique origin (CSP sandbox), whatever
    its outputs hold; the page's iframe is sandboxed as well."""
    handler.set_header("Content-Type", "text/html; charset=utf-8")
    handler.set_header("Content-Security-Policy", REPORT_CSP)
    handler.set_header("X-Frame-Options", "SAMEORIGIN")
    handler.finish(path.read_bytes())


def send_csv(handler: DossierHandler, filename: str, data: bytes) -> None:
    handler.set_header("Content-Type", "text/csv; charset=utf-8")
    handler.set_header("Content-Disposition", f'attachment; filename="{filename}"')
    handler.set_header("X-Content-Type-Options", "nosniff")
    handler.finish(data)


def send_export(handler: DossierHandler, export: portal.ActivityExport) -> None:
    """A person's activity as a download (it holds first lines of code: never cached)."""
    kind = "text/csv" if export.format == "csv" else "application/json"
    handler.set_header("Content-Type", f"{kind}; charset=utf-8")
    handler.set_header("Content-Disposition", f'attachment; filename="{export.filename}"')
    handler.finish(export.data)
