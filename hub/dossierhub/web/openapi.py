"""The OpenAPI 3.1 document of the REST API. Request bodies come from the pydantic models
that validate them; a test checks that every API route is described here and nothing else."""

from __future__ import annotations

from typing import Any

from dossierhub.web.schemas import ReleaseRequest, RunRequest

ERROR = {"$ref": "#/components/schemas/Error"}
ANY_OBJECT = {"type": "object"}


def _op(summary: str, roles: str, ok: int = 200, body: str | None = None) -> dict[str, Any]:
    responses: dict[str, Any] = {
        str(ok): {"description": "OK", "content": {"application/json": {"schema": ANY_OBJECT}}},
        "403": {
            "description": "not identified, or no role in this dossier that allows it",
            "content": {"application/json": {"schema": ERROR}},
        },
    }
    operation: dict[str, Any] = {"summary": summary, "description": f"Who: {roles}."}
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}}},
        }
        for code, text in (
            ("400", "the body is not JSON"),
            ("404", "no such run"),
            ("409", "not possible in the run's or dossier's current state"),
            ("422", "invalid input; `fields` says what is wrong per field"),
        ):
            responses[code] = {
                "description": text,
                "content": {"application/json": {"schema": ERROR}},
            }
    operation["responses"] = responses
    return operation


def _param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


def _audit_op() -> dict[str, Any]:
    """The trail, narrowed by person and action (as the audit page's form)."""
    operation = _op(
        "The dossier's audit trail, newest first, and the state of the chain; each record "
        "with the actor's role and whether the caller may open its run (`run_link`)",
        MEMBERS,
    )
    operation["parameters"] = [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": text,
            "schema": {"type": "string"},
        }
        for name, text in (
            ("person", "only the records of this person (one of the trail's `people`)"),
            ("action", "only this action, or every action with this word (`release`)"),
        )
    ]
    operation["responses"]["422"] = {
        "description": "a person or action this trail has no record of; the message names "
        "those it has",
        "content": {"application/json": {"schema": ERROR}},
    }
    return operation


def _query(name: str, text: str, enum: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if enum:
        schema["enum"] = enum
    return {"name": name, "in": "query", "required": False, "description": text, "schema": schema}


EXECUTION_FILTERS = [
    _query("person", "only this person's executions"),
    _query("path", "only this notebook's (its path in the workspace)"),
    _query(
        "since",
        "from this moment: `YYYY-MM-DD` (the whole day) or `YYYY-MM-DDTHH:MM[:SS][+zone]`; "
        "without a zone in the installation's time zone",
    ),
    _query("until", "up to and including this moment, written as `since`"),
    _query("limit", "at most this many rows, newest first (1 to 10000; default 500)"),
]


def _executions_op(summary: str, roles: str, filters: list[dict[str, Any]]) -> dict[str, Any]:
    """Executions recorded in the workspaces, by the audit log's workspace.executions
    records; a filter that is not one answers 400 naming the parameter."""
    operation = _op(summary, roles)
    operation["parameters"] = filters
    operation["responses"]["400"] = {
        "description": "a filter that is not one; `fields` names the parameter",
        "content": {"application/json": {"schema": ERROR}},
    }
    return operation


def _export_op() -> dict[str, Any]:
    operation = _executions_op(
        "One person's executions and kernel calls in every dossier, oldest first, as a file "
        "(an access request): the columns of the export, CSV or JSON; `event` says what a "
        "row is (`execution`, `kernel restart`, ...)",
        "admins",
        [_query("format", "the file's format (default json)", ["csv", "json"])],
    )
    operation["responses"]["200"] = {
        "description": "the person's executions",
        "content": {"text/csv": {}, "application/json": {"schema": ANY_OBJECT}},
    }
    return operation


DOSSIER = _param("dossier", "dossier id, as in dossiers/<id>.yaml")
PERSON = _param("person", "a person's hub name")
RUN = _param("run", "run id, as `report list` prints it")
TABLE = _param("table", "a table the run published (its `tables`)")
MEMBERS = "any member of the dossier (lead, analyst, viewer)"
WORKERS = "leads and analysts of the dossier"


def openapi_document(prefix: str) -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/me": {"get": _op("Who is asking, admin or not, and their role per dossier", "anyone")},
        "/dossiers": {
            "get": _op(
                "The dossiers the person is a member of; `awaiting_release`: how many runs "
                "this person may release now",
                "anyone",
            )
        },
        "/dossiers/{dossier}": {
            "get": _op(
                "Purpose, legal basis, expiry, members, approved views and "
                "`awaiting_release` (runs this person may release now)",
                MEMBERS,
            )
        },
        "/dossiers/{dossier}/templates": {
            "get": _op("Templates the dossier may run, with parameter schemas", WORKERS)
        },
        "/dossiers/{dossier}/runs": {
            "get": _op(
                "Runs, newest first (viewers: released runs only); per run `checks_failed` "
                "(succeeded, an output check failed), `awaiting_your_release`, "
                "`waiting_for_release_by` (the leads who may release it, for the team) and "
                "`next_step` (that in words)",
                MEMBERS,
            ),
            "post": _op(
                "Start a report run; answers at once with its id", WORKERS, 202, "RunRequest"
            ),
        },
        "/dossiers/{dossier}/runs/{run}": {
            "get": _op(
                "Provenance, output checks per table, release (with `shows_to`: the viewers "
                "a release shows it to), progress, `checks_failed` and the next step as for "
                "the list",
                f"{WORKERS}; viewers once released",
            )
        },
        "/dossiers/{dossier}/runs/{run}/html": {
            "get": {
                **_op(
                    "The report as HTML (sandboxed: no script runs): what viewers read, drawn "
                    "from the checked tables and charts; `?view=review` gives the whole "
                    "notebook with every unchecked output marked (leads and analysts only)",
                    f"{WORKERS}; viewers once released",
                ),
                "parameters": [
                    {
                        "name": "view",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "enum": ["report", "review"]},
                    }
                ],
                "responses": {
                    "200": {"description": "the report", "content": {"text/html": {}}},
                    "403": {
                        "description": "not allowed",
                        "content": {"application/json": {"schema": ERROR}},
                    },
                },
            }
        },
        "/dossiers/{dossier}/runs/{run}/tables/{table}.csv": {
            "get": {
                **_op("A published table of the run as CSV", f"{WORKERS}; viewers once released"),
                "responses": {
                    "200": {"description": "the table", "content": {"text/csv": {}}},
                    "403": {
                        "description": "not allowed",
                        "content": {"application/json": {"schema": ERROR}},
                    },
                    "404": {
                        "description": "the run published no such table",
                        "content": {"application/json": {"schema": ERROR}},
                    },
                },
            }
        },
        "/dossiers/{dossier}/runs/{run}/release": {
            "post": _op(
                "Release a run (four eyes; justification when a check failed)",
                "leads of the dossier who did not start the run",
                body="ReleaseRequest",
            )
        },
        "/dossiers/{dossier}/audit": {"get": _audit_op()},
        "/dossiers/{dossier}/executions": {
            "get": _executions_op(
                "Code executions in the dossier's workspace, newest first: per row when, who, "
                "kernel, notebook, cell, first line, code hash, outcome; `people` and "
                "`notebooks`: counts of all that match; `kernel_calls`: the kernels people "
                "started, restarted, interrupted or shut down (when, who, action, kernel, "
                "notebook), newest first, `kernel_call_total` of them; `everyone`: whether the "
                "caller sees everyone's or their own",
                f"{WORKERS} (everyone's); other members their own only",
                EXECUTION_FILTERS,
            )
        },
        "/dossiers/{dossier}/executions/latest": {
            "get": _executions_op(
                "Who last ran each cell of one notebook: `cells` by cell id, each with person, "
                "time, code hash, first line and outcome",
                WORKERS,
                [{**_query("path", "the notebook's path in the workspace"), "required": True}],
            )
        },
        "/me/executions": {
            "get": _executions_op(
                "The caller's own executions in every dossier, newest first; counts per "
                "dossier and notebook; the caller's own `kernel_calls`, as for a dossier",
                "anyone",
                EXECUTION_FILTERS[1:],
            )
        },
        "/admin/people/{person}/executions": {"get": _export_op()},
        "/admin/dossiers": {
            "get": _op(
                "All dossiers: members, expiry, last apply, workspace state and last "
                "activity, counts of runs and pending releases, problems with their fix",
                "admins",
            )
        },
    }
    for path, item in paths.items():
        parameters = [p for p in (DOSSIER, RUN, TABLE, PERSON) if "{" + p["name"] + "}" in path]
        if parameters:
            item["parameters"] = parameters
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "dossierhub",
            "version": "1",
            "description": "Dossiers, report runs, releases, audit trails and who ran what in "
            "the workspaces. Every endpoint "
            "checks the caller's role in the dossier it names (default deny).",
        },
        "servers": [{"url": f"{prefix}api"}],
        "components": {
            "securitySchemes": {
                "hubToken": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "`token <JupyterHub API token>` (dossierhub token USER)",
                }
            },
            "schemas": {
                "RunRequest": RunRequest.model_json_schema(),
                "ReleaseRequest": ReleaseRequest.model_json_schema(),
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {"type": "string"},
                        "fields": {"type": "object", "additionalProperties": {"type": "string"}},
                    },
                },
            },
        },
        "security": [{"hubToken": []}],
        "paths": paths,
    }
