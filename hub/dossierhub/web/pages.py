"""The pages: JupyterHub's own page template and styles (from the hub's /hub/static/), our
content. Forms post to the same portal functions the API and the CLI use; a refused form comes
back with the reason at the field."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tornado import web

from .. import portal
from ..reports import ReportRefused
from .api import ID, RUN, TABLE, send_csv
from .base import DossierHandler, OAuthCallback, status_of

HUB_PREFIX = "/hub/"
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


class Page(DossierHandler):
    def render_page(self, name: str, status: int = 200, **values: Any) -> None:
        person = self.person
        prefix = self.settings["prefix"]
        user = SimpleNamespace(name=person.name, json_escaped_name=json.dumps(person.name)[1:-1])
        template = self.settings["jinja"].get_template(name)
        html = template.render(
            static_url=lambda path, include_version=True: f"{HUB_PREFIX}static/{path}",
            base_url=HUB_PREFIX,
            prefix="/",
            logo_url=prefix,
            user=user,
            person=person,
            admin_access=False,
            no_spawner_check=True,
            parsed_scopes=set(),
            services=[],
            logout_url=f"{HUB_PREFIX}logout",
            login_url=f"{HUB_PREFIX}login",
            xsrf_token=self.xsrf_token.decode(),
            here=prefix,
            **values,
        )
        self.set_status(status)
        self.finish(html)

    def forbidden(self, exc: ReportRefused) -> None:
        self.render_page("dh_error.html", status_of(exc), message=str(exc))

    def prepare(self) -> None:
        # someone the hub knows but who is not a person (a service, a workspace account)
        if self.current_user and self.person is None:
            raise web.HTTPError(403)


class MyDossiers(Page):
    @web.authenticated
    async def get(self) -> None:
        dossiers = await self.blocking(portal.my_dossiers, self.home, self.person)
        self.render_page("dh_index.html", dossiers=dossiers)


class DossierPage(Page):
    @web.authenticated
    async def get(self, dossier_id: str) -> None:
        await self.show(dossier_id)

    async def show(
        self,
        dossier_id: str,
        status: int = 200,
        form: dict[str, Any] | None = None,
    ) -> None:
        try:
            detail = await self.blocking(portal.dossier_detail, self.home, dossier_id, self.person)
            runs = await self.blocking(portal.runs_for, self.home, dossier_id, self.person)
            templates = []
            if detail["role"] in portal.WORKER_ROLES:
                templates = await self.blocking(
                    portal.templates_for, self.home, dossier_id, self.person
                )
        except ReportRefused as exc:
            self.forbidden(exc)
            return
        self.render_page(
            "dh_dossier.html", status, d=detail, runs=runs, templates=templates, form=form or {}
        )


class RunForm(DossierPage):
    """POST of a template's form: start the run, or show the form again with the reasons."""

    @web.authenticated
    async def post(self, dossier_id: str) -> None:
        template = self.get_body_argument("template", "")
        raw = {
            name[2:]: self.get_body_argument(name)
            for name in self.request.body_arguments
            if name.startswith("p:")
        }
        try:
            pending = await self.blocking(
                portal.start_run, self.home, dossier_id, self.person, template, raw
            )
        except ReportRefused as exc:
            form = {"template": template, "values": raw, "error": str(exc), "fields": exc.fields}
            if exc.reason == "forbidden" and not exc.fields:
                self.forbidden(exc)
                return
            await self.show(dossier_id, status_of(exc), form)
            return
        self.runner.submit(pending)
        self.redirect(
            f"{self.settings['prefix']}dossiers/{dossier_id}/runs/{pending.run_id}", status=303
        )


class RunPage(Page):
    @web.authenticated
    async def get(self, dossier_id: str, run_id: str) -> None:
        await self.show(dossier_id, run_id)

    async def show(
        self, dossier_id: str, run_id: str, status: int = 200, error: dict[str, Any] | None = None
    ) -> None:
        try:
            detail = await self.blocking(
                portal.run_detail, self.home, dossier_id, run_id, self.person
            )
            dossier = await self.blocking(portal.dossier_detail, self.home, dossier_id, self.person)
        except ReportRefused as exc:
            self.forbidden(exc)
            return
        self.render_page(
            "dh_run.html",
            status,
            run=detail,
            d=dossier,
            progress=self.runner.progress(dossier_id, run_id),
            error=error or {},
            view=self.get_query_argument("view", "report"),
        )


class ReleaseForm(RunPage):
    @web.authenticated
    async def post(self, dossier_id: str, run_id: str) -> None:
        justification = self.get_body_argument("justification", "").strip() or None
        include = {
            name.removeprefix("include:"): self.get_body_argument(f"why:{name[8:]}", "")
            for name in self.request.body_arguments
            if name.startswith("include:")
        }
        try:
            await self.blocking(
                portal.release,
                self.home,
                dossier_id,
                run_id,
                self.person,
                justification,
                include,
            )
        except ReportRefused as exc:
            await self.show(
                dossier_id, run_id, status_of(exc), {"message": str(exc), "fields": exc.fields}
            )
            return
        self.redirect(f"{self.settings['prefix']}dossiers/{dossier_id}/runs/{run_id}", status=303)


class ReportFrame(Page):
    view = "report"

    @web.authenticated
    async def get(self, dossier_id: str, run_id: str) -> None:
        try:
            path = await self.blocking(
                portal.report_html, self.home, dossier_id, run_id, self.person, self.view
            )
        except ReportRefused as exc:
            raise web.HTTPError(status_of(exc)) from None
        send_report(self, path)


class ReviewFrame(ReportFrame):
    view = "review"


class TableDownload(Page):
    @web.authenticated
    async def get(self, dossier_id: str, run_id: str, name: str) -> None:
        try:
            filename, data = await self.blocking(
                portal.table_csv, self.home, dossier_id, run_id, name, self.person
            )
        except ReportRefused as exc:
            raise web.HTTPError(status_of(exc)) from None
        send_csv(self, filename, data)


class OpenWorkspace(Page):
    """The Open workspace button: audited, then on to the hub, which starts or opens it."""

    @web.authenticated
    async def get(self, dossier_id: str) -> None:
        try:
            target = await self.blocking(portal.open_workspace, self.home, dossier_id, self.person)
        except ReportRefused as exc:
            self.forbidden(exc)
            return
        self.redirect(target)


class AuditPage(Page):
    @web.authenticated
    async def get(self, dossier_id: str) -> None:
        try:
            trail = await self.blocking(portal.audit_trail, self.home, dossier_id, self.person)
            dossier = await self.blocking(portal.dossier_detail, self.home, dossier_id, self.person)
        except ReportRefused as exc:
            self.forbidden(exc)
            return
        self.render_page("dh_audit.html", trail=trail, d=dossier)


class AdminPage(Page):
    @web.authenticated
    async def get(self) -> None:
        try:
            rows = await self.blocking(portal.admin_overview, self.home, self.person)
        except ReportRefused as exc:
            self.forbidden(exc)
            return
        self.render_page("dh_admin.html", rows=rows)


def routes(prefix: str) -> list[tuple[str, type]]:
    return [
        (rf"{prefix}oauth_callback", OAuthCallback),
        (rf"{prefix}?", MyDossiers),
        (rf"{prefix}dossiers/{ID}", DossierPage),
        (rf"{prefix}dossiers/{ID}/runs", RunForm),
        (rf"{prefix}dossiers/{ID}/runs/{RUN}", RunPage),
        (rf"{prefix}dossiers/{ID}/runs/{RUN}/release", ReleaseForm),
        (rf"{prefix}dossiers/{ID}/runs/{RUN}/report\.html", ReportFrame),
        (rf"{prefix}dossiers/{ID}/runs/{RUN}/review\.html", ReviewFrame),
        (rf"{prefix}dossiers/{ID}/runs/{RUN}/tables/{TABLE}\.csv", TableDownload),
        (rf"{prefix}dossiers/{ID}/audit", AuditPage),
        (rf"{prefix}dossiers/{ID}/open", OpenWorkspace),
        (rf"{prefix}admin", AdminPage),
    ]
