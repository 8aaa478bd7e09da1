"""REST API under /services/dossierhub/api/ (OpenAPI document at api/openapi.json).

Authenticated by the hub: an API token (`Authorization: token ...`) or the login cookie (then
with JupyterHub's xsrf token on POST). Errors are JSON: {"error": sentence, "fields": {...}}.
Every answer about a dossier is a decision recorded by decisions.decide (docs/decisions.md),
a malformed request body included.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ValidationError
from tornado.web import HTTPError

from dossierhub import portal
from dossierhub.portal import Person
from dossierhub.state import decisions
from dossierhub.state.home import Home
from dossierhub.state.problems import ReportRefused
from dossierhub.web.base import (
    ID,
    PERSON,
    RUN,
    TABLE,
    DossierHandler,
    send_csv,
    send_export,
    send_report,
    status_of,
)
from dossierhub.web.openapi import openapi_document
from dossierhub.web.schemas import ReleaseRequest, RunRequest, Scalar


def raw_parameters(values: dict[str, Scalar]) -> dict[str, str]:
    """The text form the CLI's `-p NAME VALUE` gives, so both take the same checks."""
    raw = {}
    for name, value in values.items():
        if value is None:
            continue
        raw[name] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return raw


class ApiHandler(DossierHandler):
    def prepare(self) -> None:
        if self.person is None:
            self.fail(403, "identify with a hub API token or log in to the hub first")

    def get_login_url(self) -> str:  # an API never redirects to a login page
        raise HTTPError(403)

    def fail(self, status: int, message: str, fields: dict[str, str] | None = None) -> None:
        self.set_status(status)
        self.finish({"error": message, "fields": fields or {}})

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.finish({"error": self._reason, "fields": {}})

    def refused(self, exc: ReportRefused) -> None:
        self.fail(status_of(exc), str(exc), exc.fields)

    async def body(self, model: type[BaseModel], action: str, dossier_id: str, **asked: Any) -> Any:
        """The request body as `model`; None when it is not, after recording the refusal
        (a decision like any other) and answering 400 or 422."""
        try:
            return parse_body(model, self.request.body)
        except ReportRefused as exc:
            self.refused(await self.refuse(action, dossier_id, exc, **asked))
            return None

    async def answer(
        self, action: str, dossier_id: str | None, function: Any, *args: Any, **asked: Any
    ) -> None:
        """One decision, answered as JSON (or as the refusal)."""
        try:
            result = await self.decided(action, dossier_id, function, *args, **asked)
        except ReportRefused as exc:
            self.refused(exc)
            return
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(result, default=str))


class Me(ApiHandler):
    async def get(self) -> None:
        assert self.person is not None  # prepare() turned away everyone else
        dossiers = await self.blocking(portal.my_dossiers, self.home, self.person)
        self.finish(
            {
                "name": self.person.name,
                "admin": self.person.admin,
                "dossiers": {d["id"]: d["role"] for d in dossiers},
            }
        )


class Dossiers(ApiHandler):
    async def get(self) -> None:
        """The person's own dossiers: no dossier is named, nothing to refuse or record."""
        dossiers = await self.blocking(portal.my_dossiers, self.home, self.person)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(dossiers, default=str))


class Dossier(ApiHandler):
    async def get(self, dossier_id: str) -> None:
        await self.answer(
            "dossier.show", dossier_id, portal.dossier_detail, dossier_id, self.person
        )


class Templates(ApiHandler):
    async def get(self, dossier_id: str) -> None:
        await self.answer(
            "dossier.show",
            dossier_id,
            portal.templates_for,
            dossier_id,
            self.person,
            part="templates",
        )


class Runs(ApiHandler):
    async def get(self, dossier_id: str) -> None:
        await self.answer(
            "dossier.show", dossier_id, portal.runs_for, dossier_id, self.person, part="runs"
        )

    async def post(self, dossier_id: str) -> None:
        request = await self.body(RunRequest, "report.run", dossier_id)
        if request is None:
            return
        try:
            pending = await self.decided(
                "report.run",
                dossier_id,
                portal.start_run,
                dossier_id,
                self.person,
                request.template,
                raw_parameters(request.parameters),
                facts=decisions.run_facts,
                template=request.template,
            )
        except ReportRefused as exc:
            self.refused(exc)
            return
        queued = pending.record  # as start_run wrote it: the runner moves it on from here
        self.runner.submit(pending)
        self.set_status(202)
        self.finish(
            {
                "run_id": pending.run_id,
                "status": queued.status,
                "in_progress": queued.in_progress,
                "url": f"{self.settings['prefix']}api/dossiers/{dossier_id}/runs/{pending.run_id}",
            }
        )


class Run(ApiHandler):
    async def get(self, dossier_id: str, run_id: str) -> None:
        try:  # polled by the run page and the panel: recorded when refused only
            detail = await self.decided(
                "report.show",
                dossier_id,
                portal.run_detail,
                dossier_id,
                run_id,
                self.person,
                run=run_id,
            )
        except ReportRefused as exc:
            self.refused(exc)
            return
        detail["progress"] = self.runner.progress(dossier_id, run_id)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(detail, default=str))


class RunHtml(ApiHandler):
    async def get(self, dossier_id: str, run_id: str) -> None:
        view = self.get_query_argument("view", "report")
        try:
            path = await self.report_page(dossier_id, run_id, view)
        except ReportRefused as exc:
            self.refused(exc)
            return
        send_report(self, path)


class RunTable(ApiHandler):
    async def get(self, dossier_id: str, run_id: str, name: str) -> None:
        try:
            filename, data = await self.table_csv(dossier_id, run_id, name)
        except ReportRefused as exc:
            self.refused(exc)
            return
        send_csv(self, filename, data)


class Release(ApiHandler):
    async def post(self, dossier_id: str, run_id: str) -> None:
        request = await self.body(ReleaseRequest, "report.release", dossier_id, run=run_id)
        if request is None:
            return
        await self.answer(
            "report.release",
            dossier_id,
            portal.release,
            dossier_id,
            run_id,
            self.person,
            request.justification,
            request.include,
            facts=decisions.release_facts,
            run=run_id,
        )


class Audit(ApiHandler):
    async def get(self, dossier_id: str) -> None:
        await self.answer(
            "audit.show",
            dossier_id,
            portal.audit_trail,
            dossier_id,
            self.person,
            self.get_query_argument("person", "").strip() or None,
            self.get_query_argument("action", "").strip() or None,
        )


class ExecutionsHandler(ApiHandler):
    def filter_values(self) -> dict[str, str]:
        """The filter's query parameters as typed (portal.execution_filter checks them inside
        the decision, so a malformed one is a recorded refusal like any other)."""
        return {name: self.get_query_argument(name, "") for name in portal.API_NAMES}

    def asked(self) -> dict[str, str]:
        return {k: v for k, v in self.filter_values().items() if v}


class Executions(ExecutionsHandler):
    async def get(self, dossier_id: str) -> None:
        await self.answer(
            "executions.show",
            dossier_id,
            dossier_executions,
            dossier_id,
            self.person,
            self.filter_values(),
            **self.asked(),
        )


class LatestExecutions(ApiHandler):
    async def get(self, dossier_id: str) -> None:
        path = self.get_query_argument("path", "")
        await self.answer(
            "executions.latest",
            dossier_id,
            portal.latest_executions,
            dossier_id,
            self.person,
            path,
            path=path,
        )


class MyExecutions(ExecutionsHandler):
    async def get(self) -> None:
        await self.answer(
            "executions.mine",
            None,
            own_executions,
            self.person,
            self.filter_values(),
            **self.asked(),
        )


class PersonExecutions(ApiHandler):
    async def get(self, name: str) -> None:
        fmt = self.get_query_argument("format", "json")
        try:
            export = await self.activity(name, fmt)
        except ReportRefused as exc:
            self.refused(exc)
            return
        send_export(self, export)


class AdminDossiers(ApiHandler):
    async def get(self) -> None:
        await self.answer("admin.overview", None, portal.admin_overview, self.person)


class OpenAPI(DossierHandler):
    """The API's description; public, like any API documentation (it holds no data)."""

    def get(self) -> None:
        self.finish(openapi_document(self.settings["prefix"]))


def dossier_executions(
    home: Home, dossier_id: str, person: Person, values: dict[str, str]
) -> dict[str, Any]:
    return portal.executions_for(home, dossier_id, person, portal.execution_filter(home, values))


def own_executions(home: Home, person: Person, values: dict[str, str]) -> dict[str, Any]:
    return portal.my_executions(home, person, portal.execution_filter(home, values))


def parse_body(model: type[BaseModel], body: bytes | None) -> Any:
    """JSON that fits `model`, or ReportRefused: malformed (400) when it is not JSON,
    invalid (422, per field) when it does not fit."""
    try:
        data = json.loads(body or b"{}")
    except ValueError as exc:
        raise ReportRefused(f"the request body is not JSON: {exc}", reason="malformed") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        fields = {".".join(map(str, e["loc"])) or "body": e["msg"] for e in exc.errors()}
        raise ReportRefused(
            "; ".join(f"{k}: {v}" for k, v in fields.items()), fields=fields
        ) from None


def routes(prefix: str) -> list[tuple[str, type]]:
    api = f"{prefix}api/"
    return [
        (rf"{api}openapi\.json", OpenAPI),
        (rf"{api}me", Me),
        (rf"{api}dossiers", Dossiers),
        (rf"{api}dossiers/{ID}", Dossier),
        (rf"{api}dossiers/{ID}/templates", Templates),
        (rf"{api}dossiers/{ID}/runs", Runs),
        (rf"{api}dossiers/{ID}/runs/{RUN}", Run),
        (rf"{api}dossiers/{ID}/runs/{RUN}/html", RunHtml),
        (rf"{api}dossiers/{ID}/runs/{RUN}/tables/{TABLE}\.csv", RunTable),
        (rf"{api}dossiers/{ID}/runs/{RUN}/release", Release),
        (rf"{api}dossiers/{ID}/audit", Audit),
        (rf"{api}dossiers/{ID}/executions", Executions),
        (rf"{api}dossiers/{ID}/executions/latest", LatestExecutions),
        (rf"{api}me/executions", MyExecutions),
        (rf"{api}admin/dossiers", AdminDossiers),
        (rf"{api}admin/people/{PERSON}/executions", PersonExecutions),
    ]
