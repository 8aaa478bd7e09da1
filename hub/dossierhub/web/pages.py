"""The pages: JupyterHub's own page template and styles (from the hub's /hub/static/), our
content. Forms post to the same portal functions the API and the CLI use; a refused form comes
back with the reason at the field. Each request is one decision, recorded by decisions.decide
(docs/decisions.md); a form shown again after a refusal is not a second one."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from tornado import web

from dossierhub import portal
from dossierhub.state import decisions
from dossierhub.state.home import Home
from dossierhub.state.problems import ReportRefused
from dossierhub.state.settings import load_settings
from dossierhub.web.base import (
    ID,
    RUN,
    TABLE,
    DossierHandler,
    OAuthCallback,
    send_csv,
    send_export,
    send_report,
    status_of,
)
from dossierhub.workspaces.hubconfig import SERVICE

HUB_PREFIX = "/hub/"


class Page(DossierHandler):
    def render_page(self, name: str, status: int = 200, **values: Any) -> None:
        person = self.person
        assert person is not None  # after prepare() and web.authenticated: a person
        prefix = self.settings["prefix"]
        user = SimpleNamespace(
            name=person.name, admin=person.admin, json_escaped_name=json.dumps(person.name)[1:-1]
        )
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
            # the bar's Services menu (admins): the one service the hub displays
            # (hubconfig.services), as the hub's own pages list it
            services=[SimpleNamespace(name=SERVICE, href=prefix)],
            logout_url=f"{HUB_PREFIX}logout",
            login_url=f"{HUB_PREFIX}login",
            xsrf_token=self.xsrf_token.decode(),
            here=prefix,
            time_zone=load_settings(self.home).hub.time_zone,  # dates.when, before the script
            **values,
        )
        self.set_status(status)
        self.finish(html)

    def forbidden(self, exc: ReportRefused) -> None:
        self.render_page("dh_error.html", status_of(exc), message=str(exc))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Tornado's own errors (no such page, a failure) in the pages' chrome for a person:
        what happened in words, never an exception's text (that is in the service's log)."""
        try:
            person = self.person
        except Exception:  # the hub's login itself failed: tornado's plain page
            person = None
        if person is None:
            super().write_error(status_code, **kwargs)
            return
        heading, message = ERRORS.get(status_code, ERRORS[500])
        self.render_page("dh_error.html", status_code, heading=heading, message=message)

    def prepare(self) -> None:
        # someone the hub knows but who is not a person (a service, a workspace account)
        if self.current_user and self.person is None:
            raise web.HTTPError(403)


ERRORS = {
    404: ("No such page", "There is no dossierhub page at this address."),
    405: ("No such page", "This address does not answer that kind of request."),
    500: (
        "Something went wrong",
        "The dossierhub service could not answer; its log says why. Try again, or tell an admin.",
    ),
}


class NotFound(Page):
    """Any address of the service no route answers: the 404 page, after the login."""

    @web.authenticated
    async def get(self, *args: Any) -> None:
        raise web.HTTPError(404)


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
        audit: bool = True,
    ) -> None:
        """The page; `audit` False when it comes back with a refused form (that request's
        decision is recorded already)."""
        try:
            if audit:
                found = await self.decided(
                    "dossier.show", dossier_id, dossier_page, dossier_id, self.person
                )
            else:
                found = await self.blocking(dossier_page, self.home, dossier_id, self.person)
        except ReportRefused as exc:
            self.forbidden(exc)
            return
        detail, runs, templates = found
        self.render_page(
            "dh_dossier.html", status, d=detail, runs=runs, templates=templates, form=form or {}
        )


def dossier_page(
    home: Home, dossier_id: str, person: portal.Person
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """What the dossier page shows: its detail, its runs and, for the team, its templates."""
    detail = portal.dossier_detail(home, dossier_id, person)
    runs = portal.runs_for(home, dossier_id, person)
    templates = []
    if detail["prepares_runs"]:
        templates = portal.templates_for(home, dossier_id, person)
    return detail, runs, templates


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
            pending = await self.decided(
                "report.run",
                dossier_id,
                portal.start_run,
                dossier_id,
                self.person,
                template,
                raw,
                facts=decisions.run_facts,
                template=template,
            )
        except ReportRefused as exc:
            form = {"template": template, "values": raw, "error": str(exc), "fields": exc.fields}
            if exc.reason == "forbidden" and not exc.fields:
                self.forbidden(exc)
                return
            await self.show(dossier_id, status_of(exc), form, audit=False)
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
        self,
        dossier_id: str,
        run_id: str,
        status: int = 200,
        error: dict[str, Any] | None = None,
        audit: bool = True,
    ) -> None:
        """The run page (its report comes in a frame: report.read records that); `audit`
        False when it comes back with a refused release."""
        try:
            if audit:
                found = await self.decided(
                    "report.show", dossier_id, run_page, dossier_id, run_id, self.person, run=run_id
                )
            else:
                found = await self.blocking(run_page, self.home, dossier_id, run_id, self.person)
        except ReportRefused as exc:
            self.forbidden(exc)
            return
        detail, dossier = found
        self.render_page(
            "dh_run.html",
            status,
            run=detail,
            d=dossier,
            progress=self.runner.progress(dossier_id, run_id),
            error=error or {},
            view=self.get_query_argument("view", "report"),
        )


def run_page(
    home: Home, dossier_id: str, run_id: str, person: portal.Person
) -> tuple[dict[str, Any], dict[str, Any]]:
    return (
        portal.run_detail(home, dossier_id, run_id, person),
        portal.dossier_detail(home, dossier_id, person),
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
            await self.decided(
                "report.release",
                dossier_id,
                portal.release,
                dossier_id,
                run_id,
                self.person,
                justification,
                include,
                facts=decisions.release_facts,
                run=run_id,
            )
        except ReportRefused as exc:
            error = {"message": str(exc), "fields": exc.fields}
            await self.show(dossier_id, run_id, status_of(exc), error, audit=False)
            return
        self.redirect(f"{self.settings['prefix']}dossiers/{dossier_id}/runs/{run_id}", status=303)


class ReportFrame(Page):
    view = "report"

    @web.authenticated
    async def get(self, dossier_id: str, run_id: str) -> None:
        try:  # the run page's frame: one record per report opened
            path = await self.report_page(dossier_id, run_id, self.view)
        except ReportRefused as exc:
            raise web.HTTPError(status_of(exc)) from None
        send_report(self, path)


class ReviewFrame(ReportFrame):
    view = "review"


class TableDownload(Page):
    @web.authenticated
    async def get(self, dossier_id: str, run_id: str, name: str) -> None:
        try:
            filename, data = await self.table_csv(dossier_id, run_id, name)
        except ReportRefused as exc:
            raise web.HTTPError(status_of(exc)) from None
        send_csv(self, filename, data)


class OpenWorkspace(Page):
    """The Open workspace button: audited, then on to the hub, which starts or opens it."""

    @web.authenticated
    async def get(self, dossier_id: str) -> None:
        try:
            target = await self.decided(
                "workspace.open", dossier_id, portal.open_workspace, dossier_id, self.person
            )
        except ReportRefused as exc:
            self.forbidden(exc)
            return
        self.redirect(target)


# the audit page's Executions form names its fields apart from the trail's `person`
EXECUTION_FIELDS = {
    "person": "ran_by",
    "path": "notebook",
    "since": "from",
    "until": "to",
    "limit": "limit",
}
PAGE_ROWS = "200"  # rows a page shows; the API gives more


class AuditPage(Page):
    """The trail in sentences, narrowed by ?person= and ?action= (a URL to share), and the
    Executions section, narrowed by ?ran_by=, ?notebook=, ?from=, ?to=; a filter the page
    cannot answer comes back unfiltered with the reason at its form. One audit.show
    decision, with what each filter asked."""

    @web.authenticated
    async def get(self, dossier_id: str) -> None:
        who = self.get_query_argument("person", "").strip()
        action = self.get_query_argument("action", "").strip()
        ran = {f: self.get_query_argument(n, "").strip() for f, n in EXECUTION_FIELDS.items()}
        ran["limit"] = PAGE_ROWS
        asked: dict[str, Any] = {
            n: ran[f] for f, n in EXECUTION_FIELDS.items() if ran[f] and f != "limit"
        }
        errors: dict[str, str] = {}
        try:
            found = await self.decided(
                "audit.show",
                dossier_id,
                audit_page,
                dossier_id,
                self.person,
                who,
                action,
                ran,
                **asked,
            )
        except ReportRefused as exc:
            if exc.reason not in ("invalid", "malformed"):
                self.forbidden(exc)
                return
            # recorded as refused already: the page unfiltered, unrecorded
            form = "executions" if set(exc.fields) & set(EXECUTION_FIELDS.values()) else "trail"
            errors[form] = str(exc)
            found = await self.blocking(
                audit_page, self.home, dossier_id, self.person, "", "", {"limit": PAGE_ROWS}
            )
        trail, dossier, executions = found
        self.render_page(
            "dh_audit.html",
            400 if errors.get("executions") else 422 if errors else 200,
            trail=trail,
            d=dossier,
            executions=executions,
            asked={"person": who, "action": action} if not errors.get("trail") else {},
            ran=asked if not errors.get("executions") else {},
            error=errors.get("trail"),
            executions_error=errors.get("executions"),
        )


def audit_page(
    home: Home,
    dossier_id: str,
    person: portal.Person,
    who: str = "",
    action: str = "",
    ran: dict[str, str] | None = None,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The trail, the dossier and its executions (everyone's or the person's own)."""
    filt = portal.execution_filter(home, ran or {}, EXECUTION_FIELDS)
    return (
        portal.audit_trail(home, dossier_id, person, who or None, action or None),
        portal.dossier_detail(home, dossier_id, person),
        portal.executions_for(home, dossier_id, person, filt),
    )


# My activity's filter: the person is always the one looking
ACTIVITY_FIELDS = {**EXECUTION_FIELDS, "person": "person"}


class ActivityPage(Page):
    """My activity: the person's own executions in every dossier (executions.mine)."""

    @web.authenticated
    async def get(self) -> None:
        ran = {f: self.get_query_argument(n, "").strip() for f, n in ACTIVITY_FIELDS.items()}
        ran.update(person="", limit=PAGE_ROWS)
        asked: dict[str, Any] = {
            n: ran[f] for f, n in ACTIVITY_FIELDS.items() if ran[f] and f != "limit"
        }
        error = None
        try:
            found = await self.decided(
                "executions.mine", None, activity_page, self.person, ran, **asked
            )
        except ReportRefused as exc:
            if exc.reason not in ("invalid", "malformed"):
                self.forbidden(exc)
                return
            error = str(exc)
            found = await self.blocking(activity_page, self.home, self.person, {"limit": PAGE_ROWS})
        self.render_page(
            "dh_activity.html",
            400 if error else 200,
            mine=found,
            ran=asked if not error else {},
            error=error,
        )


def activity_page(home: Home, person: portal.Person, ran: dict[str, str]) -> dict[str, Any]:
    return portal.my_executions(home, person, portal.execution_filter(home, ran, ACTIVITY_FIELDS))


class AdminPage(Page):
    @web.authenticated
    async def get(self) -> None:
        try:
            rows = await self.decided("admin.overview", None, portal.admin_overview, self.person)
        except ReportRefused as exc:
            self.forbidden(exc)
            return
        self.render_page("dh_admin.html", rows=rows, people=everyone_in(rows))


def everyone_in(rows: list[dict[str, Any]]) -> list[str]:
    """The people the admin overview names, offered by the export's person field."""
    return sorted({p for r in rows for people in (r.get("members") or {}).values() for p in people})


class AdminExport(Page):
    """The Admin page's export of one person's activity: the file, or the reason."""

    @web.authenticated
    async def get(self) -> None:
        name = self.get_query_argument("person", "").strip()
        fmt = self.get_query_argument("format", "csv")
        try:
            export = await self.activity(name, fmt)
        except ReportRefused as exc:
            self.forbidden(exc)
            return
        send_export(self, export)


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
        (rf"{prefix}activity", ActivityPage),
        (rf"{prefix}admin", AdminPage),
        (rf"{prefix}admin/export", AdminExport),
    ]
