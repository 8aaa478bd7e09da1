"""What a person may see and do in the dossierhub pages and REST API, as plain functions.

Default deny: every function takes the person and the dossier, looks up the person's role in
that dossier (hub/directory.json, written by apply from the manifests) and refuses with
`ReportRefused(reason="forbidden")` unless the role allows it. Admins see the overview of all
dossiers (members, expiry, last apply, problems) but no dossier's data or reports unless a
manifest makes them a member: "without becoming a big brother". The web handlers and the CLI
call the same functions in reports/ underneath, each through decisions.decide, which records
the decision in the audit log; these functions decide and record nothing themselves.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, NoReturn
from zoneinfo import ZoneInfo

from dossier_kernel.expiry import expiry
from dossier_kernel.provenance import ExtractProvenance, ProvenanceError
from dossier_kernel.published import is_table_file, table_file
from dossierhub.data.extracts import current_provenance
from dossierhub.reports.listing import RunDetail, RunSummary, list_runs, show_run
from dossierhub.reports.records import needs_justification
from dossierhub.reports.release import release_checks, release_denied, release_run
from dossierhub.reports.render import review_page
from dossierhub.reports.requests import PendingRun
from dossierhub.reports.requests import start_run as queue_run
from dossierhub.state.audit import AuditLog, Verification
from dossierhub.state.auditindex import ExecutionIndex, Where
from dossierhub.state.directory import DossierEntry, read_directory
from dossierhub.state.executions import (
    Execution,
    KernelCall,
    executions_from,
    export_text,
    kernel_calls_from,
    refusals_from,
)
from dossierhub.state.home import Home, RunFolder
from dossierhub.state.models import read_dossier
from dossierhub.state.problems import Problem, ReportRefused
from dossierhub.state.roles import (
    Denied,
    is_told_why_not_released,
    may_be_released,
    may_export_activity,
    may_open_workspace,
    may_prepare_runs,
    may_read_run,
    may_run,
    may_see_executions,
    may_see_own_executions,
    may_see_unchecked,
)
from dossierhub.state.settings import load_settings
from dossierhub.state.templates import TemplateError, load_template
from dossierhub.workspaces.hubapi import HubAPI, HubUnavailable


@dataclass(frozen=True)
class Person:
    name: str
    admin: bool = False


def person_for(home: Home, name: str) -> Person:
    """Admins are those settings.yaml names (the same list the hub gets)."""
    return Person(name, name in load_settings(home).hub.admins)


def member_entry(home: Home, dossier_id: str, person: Person) -> tuple[DossierEntry, str]:
    """The dossier and the person's role in it, for a member; what the role allows is the
    rules' (roles.py). Strangers get the same answer for a dossier that does not exist as for
    one they are not in: no one learns which dossiers exist by guessing ids."""
    entry = next((e for e in read_directory(home) if e.id == dossier_id), None)
    role = entry.role_of(person.name) if entry is not None else None
    if entry is None or role is None:
        raise ReportRefused(
            f"{person.name} is not a member of a dossier '{dossier_id}'", reason="forbidden"
        )
    return entry, role


def _refuse(denied: Denied | None) -> None:
    """A rule's answer (roles.py) as the refusal the faces show: the rule's own sentence."""
    if denied is not None:
        raise ReportRefused(denied.why, reason=denied.reason)


def _provenance(home: Home, dossier_id: str) -> ExtractProvenance | None:
    """The dossier's extract provenance; a malformed one refuses (409, its message) rather
    than fail the page or the API with a 500."""
    try:
        return current_provenance(home.extract_dir(dossier_id))
    except ProvenanceError as exc:
        raise ReportRefused(str(exc), reason="conflict") from None  # it says what to do


def _runs_closed(entry: DossierEntry, person: str, today: dt.date) -> str | None:
    denied = may_run(entry, person, today)
    if denied is None or not entry.expired(today):
        return None
    # a lead asks an admin (who edits the manifest); the rest of the team asks its leads
    lead = person in entry.leads or not entry.leads
    leads = "an admin" if lead else ", ".join(entry.leads)
    sentence = denied.why[0].upper() + denied.why[1:]
    return f"{sentence}. To run reports again, ask {leads} to extend it."


def _summary(entry: DossierEntry, person: str, role: str, today: dt.date) -> dict[str, Any]:
    left = expiry(entry.expires, today)
    days_left = left.days_left
    return {
        "id": entry.id,
        "title": entry.title,
        "purpose": entry.purpose,
        "legal_basis": entry.legal_basis,
        "expires": entry.expires,
        "days_left": days_left,
        "expired": left.expired,
        "expires_soon": left.expires_soon,
        "role": role,
        "members": {
            "lead": list(entry.leads),
            "analyst": list(entry.analysts),
            "viewer": list(entry.viewers),
        },
        "can_open_workspace": may_open_workspace(entry, person, today) is None,
        "can_run": may_run(entry, person, today) is None,
        # an expired dossier's team sees why no report runs and who to ask, not a form
        "runs_closed": _runs_closed(entry, person, today),
        # every run, not only released ones (the list, the "no runs yet" line)
        "sees_unreleased": may_see_unchecked(person, role, entry.id) is None,
        "prepares_runs": may_prepare_runs(person, role, entry.id) is None,  # the run forms
        "workspace_user": entry.hub_user,
    }


def my_dossiers(home: Home, person: Person, today: dt.date | None = None) -> list[dict[str, Any]]:
    today = today or dt.date.today()
    return [
        {
            **_summary(entry, person.name, role, today),
            "awaiting_release": awaiting_release(home, entry, person.name),
        }
        for entry in read_directory(home)
        if (role := entry.role_of(person.name)) is not None
    ]


def awaiting_release(home: Home, entry: DossierEntry, person: str) -> int:
    """How many of the dossier's runs this person may release now: the inbox count a lead
    who did not start them is shown ("Awaiting your release (n)"); 0 for everyone else."""
    return sum(person in releasers(entry, run) for run in list_runs(home, entry.id))


def releasers(entry: DossierEntry, run: RunSummary | RunDetail) -> list[str]:
    """The leads who may release `run` now, by the four-eyes rule itself (roles.may_release,
    through release.release_denied): none for a run that failed, is released or unfinished."""
    return [
        lead
        for lead in entry.leads
        if release_denied(lead, entry.role_of(lead), entry.id, run) is None
    ]


def _releasable(run: RunSummary | RunDetail) -> bool:
    record = run.record
    return (
        may_be_released(
            run_id=record.run_id,
            succeeded=record.succeeded,
            status=record.status,
            released=run.release.words(),
        )
        is None
    )


def next_step(
    entry: DossierEntry, person: str, role: str, run: RunSummary | RunDetail
) -> dict[str, Any]:
    """What a run waits for, as this person is told: the release is theirs, or whose it is
    (the team only: viewers never see an unreleased run)."""
    who = releasers(entry, run)
    mine = person in who
    team = may_see_unchecked(person, role, entry.id) is None
    others = who if team and not mine else []
    words = None
    if mine:
        words = "Awaiting your release"
    elif others:
        words = f"Waiting for release by {' or '.join(others)}"
    elif team and not who and _releasable(run):
        words = "No other lead may release it: the dossier needs a second lead (ask the admin)"
    return {"awaiting_your_release": mine, "waiting_for_release_by": others, "next_step": words}


def dossier_detail(
    home: Home, dossier_id: str, person: Person, today: dt.date | None = None
) -> dict[str, Any]:
    """The dossier as its members see it: who, why, until when, and the approved views."""
    entry, role = member_entry(home, dossier_id, person)
    detail = _summary(entry, person.name, role, today or dt.date.today())
    detail["awaiting_release"] = awaiting_release(home, entry, person.name)
    detail["views"] = views_of(home, dossier_id)
    return detail


def views_of(home: Home, dossier_id: str) -> list[dict[str, Any]]:
    """Approved views with rows, build time and columns (type, kind, description), read
    from the dossier's own catalog.duckdb: exactly what its workspace sees."""
    provenance = _provenance(home, dossier_id)
    if provenance is None:
        return []
    import duckdb

    from dossier_kernel.catalog import describe_views

    con = duckdb.connect(str(home.extract_catalog(dossier_id)), read_only=True)
    try:
        described = describe_views(con)
    finally:
        con.close()
    for view in described:
        built = provenance.views.get(view["name"])
        view["rows"] = built.rows_out if built else None
        view["built_at"] = built.built_at if built else None
    return described


def open_workspace(home: Home, dossier_id: str, person: Person) -> str:
    """The hub URL that starts or opens the workspace, for a lead or analyst.

    The product's own buttons come here (through decisions.decide, as workspace.open), so
    the dossier's audit trail says who opened its workspace and when, and who was refused."""
    entry, _ = member_entry(home, dossier_id, person)
    _refuse(may_open_workspace(entry, person.name))
    return f"/hub/spawn/{entry.hub_user}"


def templates_for(home: Home, dossier_id: str, person: Person) -> list[dict[str, Any]]:
    """The templates the dossier may run, with parameter schemas ready for a form."""
    _, role = member_entry(home, dossier_id, person)
    _refuse(may_prepare_runs(person.name, role, dossier_id))
    manifest = read_dossier(home, dossier_id)
    provenance = _provenance(home, dossier_id)
    views = sorted(provenance.views) if provenance else []
    found: list[dict[str, Any]] = []
    for name in manifest.templates:
        try:
            template = load_template(home, name)
        except TemplateError as exc:
            found.append({"name": name, "title": name, "error": str(exc), "parameters": []})
            continue
        found.append(
            {
                "name": template.name,
                "title": template.title,
                "origin": template.origin,
                "views": list(template.views),
                "timeout_seconds": template.timeout_seconds,
                "parameters": [
                    {
                        "name": p.name,
                        "type": p.type,
                        "default": p.default,
                        "choices": views if p.choices == "views" else p.choices,
                        "min": p.min,
                        "max": p.max,
                        "step": p.step,
                        "description": p.description,
                    }
                    for p in template.parameters
                ],
                "error": None,
            }
        )
    return found


def start_run(
    home: Home, dossier_id: str, person: Person, template: str, raw_params: dict[str, str]
) -> PendingRun:
    """Checked and queued (requests.start_run does the checks `report run` does); the
    caller executes it. The rule (roles.may_run) is applied there, in its own words."""
    member_entry(home, dossier_id, person)
    return queue_run(home, dossier_id, template, person.name, raw_params)


def runs_for(home: Home, dossier_id: str, person: Person) -> list[dict[str, Any]]:
    """Newest first. Viewers see released runs only."""
    entry, role = member_entry(home, dossier_id, person)
    runs = [r for r in list_runs(home, dossier_id) if _readable(person, role, dossier_id, r)]
    return [{**r.row(), **next_step(entry, person.name, role, r)} for r in reversed(runs)]


def _readable(person: Person, role: str, dossier_id: str, run: RunSummary) -> bool:
    denied = may_read_run(
        person.name, role, dossier_id=dossier_id, run_id=run.record.run_id, released=run.released
    )
    return denied is None


def run_detail(home: Home, dossier_id: str, run_id: str, person: Person) -> dict[str, Any]:
    """One run: provenance, check results per table, release, and whether this person may
    release it (and if not, why not)."""
    entry, role = member_entry(home, dossier_id, person)
    run = show_run(home, dossier_id, run_id)
    _refuse(
        may_read_run(person.name, role, dossier_id=dossier_id, run_id=run_id, released=run.released)
    )
    record, folder = run.record, run.folder
    worker = may_see_unchecked(person.name, role, dossier_id) is None
    if not worker:  # the hashes of what viewers cannot read (a hash of a small file is a clue)
        outputs = record.outputs or {}
        public = {n: outputs[n] for n in outputs if _public(folder, n)}
        record = record.model_copy(update={"outputs": public})
    return {
        "run_id": run_id,
        "dossier": dossier_id,
        "provenance": record.as_json(),
        "checks": run.checks,
        "released": run.as_json()["released"],
        "released_words": run.release.words(),
        "status": record.status,
        "in_progress": record.in_progress,
        "succeeded": record.succeeded,
        "checks_failed": record.checks_failed,
        **next_step(entry, person.name, role, run),
        "has_html": folder.report_html.exists(),
        # the whole notebook, unchecked outputs included: the team's, never a viewer's
        "has_review": worker and folder.notebook.exists() and not record.in_progress,
        "unchecked": run.unchecked if worker else [],
        "tables": sorted(c["table"] for c in run.checks if c.get("kind", "table") == "table")
        if record.succeeded
        else [],
        "release": _release_verdict(home, entry, role, person, run),
    }


def _public(run: RunFolder, name: str) -> bool:
    """A run's file a viewer of the released run reads: the report and the published tables."""
    path = run.path / name
    if path == run.report_html:
        return True
    return path.parent == run.published and is_table_file(path.name)


def _release_verdict(
    home: Home, entry: DossierEntry, role: str, person: Person, run: RunDetail
) -> dict[str, Any]:
    """What the run's page says about releasing it: the rules release_run enforces, on the
    checks it will decide with (differencing re-computed now, as release_run does: a run
    released since this one finished can make a justification necessary)."""
    denied = release_denied(person.name, role, entry.id, run)
    why = denied.why if denied is not None else None
    checks = release_checks(home, entry.id, run) if why is None else run.checks
    viewers = list(entry.viewers)
    return {
        "allowed": why is None,
        # who newly reads the report once released (the team reads every run already)
        "shows_to": viewers,
        "shows_to_words": "Releasing shows this report to: "
        + (", ".join(viewers) + " (viewers)" if viewers else "no viewers yet (only the team)"),
        "why_not": why,
        "explain": why is not None and is_told_why_not_released(role),
        "needs_justification": needs_justification(checks),
    }


def report_html(
    home: Home, dossier_id: str, run_id: str, person: Person, view: str = "report"
) -> Path:
    """report.html (what viewers read) or, for the dossier's leads and analysts, review.html."""
    detail = run_detail(home, dossier_id, run_id, person)
    if view == "review":
        _, role = member_entry(home, dossier_id, person)
        _refuse(may_see_unchecked(person.name, role, dossier_id))
        page = review_page(home, dossier_id, run_id) if detail["has_review"] else None
        if page is None:
            raise ReportRefused(f"run {run_id} has no review page yet", reason="not_found")
        return page
    if not detail["has_html"]:
        raise ReportRefused(f"run {run_id} has no HTML report", reason="not_found")
    return home.run_folder(dossier_id, run_id).report_html


def table_csv(
    home: Home, dossier_id: str, run_id: str, name: str, person: Person
) -> tuple[str, bytes]:
    """A published table of the run as CSV (viewers: of a released run only)."""
    detail = run_detail(home, dossier_id, run_id, person)
    if name not in detail["tables"]:
        raise ReportRefused(f"run {run_id} published no table '{name}'", reason="not_found")
    import polars as pl

    published = home.run_folder(dossier_id, run_id).published
    table = pl.read_parquet(published / table_file(name))
    nested = [c for c, t in table.schema.items() if t.is_nested()]
    table = table.with_columns(  # CSV has no lists or structs: JSON text in the cell
        pl.col(c).map_elements(lambda v: json.dumps(v, default=str), return_dtype=pl.String)
        for c in nested
    )
    return f"{dossier_id}-{run_id}-{name}.csv", table.write_csv().encode("utf-8")


def release(
    home: Home,
    dossier_id: str,
    run_id: str,
    person: Person,
    justification: str | None,
    include: dict[str, str] | None = None,
) -> dict[str, Any]:
    member_entry(home, dossier_id, person)  # strangers learn nothing; roles.may_release decides
    return release_run(home, dossier_id, run_id, person.name, justification, include).as_json()


def audit_trail(
    home: Home,
    dossier_id: str,
    person: Person,
    who: str | None = None,
    action: str | None = None,
) -> dict[str, Any]:
    """The dossier's part of the audit log, newest first, and the state of the whole chain
    (a break anywhere makes every dossier's trail suspect). `who` and `action` narrow it to
    one person, one action (`release` is every action with that word: report.release and
    its refusals); a value the trail has no record of is refused as invalid, naming those it
    has. Each record says the actor's role and whether this person may open its run."""
    entry, role = member_entry(home, dossier_id, person)
    verification, records = AuditLog(home).verify_and_read()
    rows = [_trail_row(r, dossier_id) for r in records if _concerns(r, dossier_id)]
    if may_see_executions(person.name, role, dossier_id) is not None:  # who ran what: the team's
        rows = [r for r in rows if r["action"] != EXECUTIONS_ACTION]
    runs = {r.record.run_id: r for r in list_runs(home, dossier_id)}
    readable = {i for i, r in runs.items() if _readable(person, role, dossier_id, r)}
    if may_see_unchecked(person.name, role, dossier_id) is not None:
        rows = [row for r in rows if (row := _for_viewers(r, readable)) is not None]
    people = sorted({str(r["actor"]) for r in rows if r["actor"]})
    actions = sorted({str(r["action"]) for r in rows if r["action"]})
    rows = _filtered(rows, _checked_who(who, people), _checked_action(action, actions))
    for row in rows:
        row["actor_role"] = entry.role_of(row["actor"]) if row["actor"] else None
        run = row["details"].get("run")
        row["run_link"] = isinstance(run, str) and run in readable
        row["run_template"] = runs[run].record.template if row["run_link"] else None
    return {
        "chain": {
            "ok": verification.ok,
            "records": verification.records,
            "message": verification.message,
            "first_bad": verification.first_bad,
            "verified_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        },
        "filter": {"person": who or None, "action": action or None},
        "people": people,
        "actions": actions,
        "records": list(reversed(rows)),
    }


def _checked_who(who: str | None, people: list[str]) -> str | None:
    if not who:
        return None
    if who not in people:
        named = ", ".join(people) or "no one"
        raise ReportRefused(
            f"no one named '{_shown(who)}' is in this audit trail; it names {named}",
            reason="invalid",
            fields={"person": "not in this trail"},
        )
    return who


def _checked_action(action: str | None, actions: list[str]) -> str | None:
    if not action:
        return None
    words = {w for a in actions for w in (a, *a.split("."))}
    if action not in words:
        raise ReportRefused(
            f"this audit trail has no action '{_shown(action)}'; it has {', '.join(actions)}",
            reason="invalid",
            fields={"action": "not in this trail"},
        )
    return action


def _shown(text: str) -> str:
    """What someone typed, cut short for a message (a URL can carry kilobytes)."""
    return text if len(text) <= 60 else text[:59] + "…"


def _filtered(
    rows: list[dict[str, Any]], who: str | None, action: str | None
) -> list[dict[str, Any]]:
    def keep(row: dict[str, Any]) -> bool:
        name = str(row["action"] or "")
        if who is not None and row["actor"] != who:
            return False
        return action is None or action == name or action in name.split(".")

    return [r for r in rows if keep(r)]


# What a viewer's trail keeps of a record's details: who did what to which released run. Not
# what a team member typed (a refused template or parameter name), a run's error or parameters
# before its release: those are the team's working material, seen by no one outside it.
VIEWER_DETAILS = ("run", "template", "outcome", "table", "view")


def _for_viewers(row: dict[str, Any], released: set[str]) -> dict[str, Any] | None:
    details = row["details"]
    run = details.get("run")
    if run is not None and run not in released:
        return None  # an unreleased run: viewers do not learn it exists
    if str(row["action"]).endswith(".refused"):  # what was asked is text someone typed
        kept = {k: details[k] for k in ("run", "reason") if k in details}
        return {**row, "details": kept}
    kept = {k: details[k] for k in VIEWER_DETAILS if k in details}
    if run in released and "parameters" in details:
        kept["parameters"] = details["parameters"]  # in the released report's header too
    return {**row, "details": kept}


def _concerns(record: dict[str, Any], dossier_id: str) -> bool:
    details = record.get("details") or {}
    if details.get("dossier") == dossier_id:
        return True
    listed = details.get("dossiers")
    if isinstance(listed, list):
        return any(
            d == dossier_id or (isinstance(d, dict) and d.get("id") == dossier_id) for d in listed
        )
    return False


def _trail_row(record: dict[str, Any], dossier_id: str) -> dict[str, Any]:
    details = dict(record.get("details") or {})
    if isinstance(details.get("dossiers"), list):  # an apply, a token of several: this one
        mine = [
            d
            for d in details["dossiers"]
            if d == dossier_id or (isinstance(d, dict) and d.get("id") == dossier_id)
        ]
        details["dossiers"] = mine
        details.pop("hub", None)
    if record.get("action") == EXECUTIONS_ACTION:  # a batch in numbers, never its events
        details = _batch_summary(record)
    return {
        "seq": record.get("seq"),
        "time": record.get("time"),
        "actor": record.get("actor"),
        "channel": record.get("channel"),  # the pages and API (service), cli or the hub
        "action": record.get("action"),
        "details": details,
    }


EXECUTIONS_ACTION = "workspace.executions"  # one batch of a workspace's executions


def _batch_summary(record: dict[str, Any]) -> dict[str, Any]:
    """What the trail keeps of a batch: who ran how many cells in which notebook (the events
    themselves, first lines of code among them, are the Executions section's, for those who
    may see them)."""
    details = record.get("details") or {}
    ran = Counter((x.person, x.path) for x in executions_from([record]))
    return {
        "dossier": details.get("dossier"),
        "batch": details.get("batch"),
        "count": details.get("count"),
        "people": details.get("people"),
        "ran": [{"person": p, "path": path, "count": n} for (p, path), n in ran.most_common()],
        "refused": len(refusals_from([record])),
        "kernels": [
            {"person": p, "action": action, "count": n}
            for (p, action), n in Counter(kernel_calls_from([record])).most_common()
        ],
    }


def admin_overview(
    home: Home, person: Person, today: dt.date | None = None
) -> list[dict[str, Any]]:
    """Every manifest and applied dossier: members, expiry, last apply, its workspace (state,
    last activity), its runs and pending releases as counts, and its problems each with the fix.
    Counts and states only: an admin who is no member sees no run, template or report."""
    if not person.admin:
        raise ReportRefused(
            f"{person.name} is not an admin of this installation", reason="forbidden"
        )
    from dossierhub.data.policy import load_installation

    installation = load_installation(home, sample_values=False)
    applied = {e.id: e for e in read_directory(home)}
    last_apply: dict[str, str] = {}
    verification, records = AuditLog(home).verify_and_read()  # one pass over the log
    for record in records:
        if record.get("action") == "apply":
            for item in record.get("details", {}).get("dossiers", []):
                if isinstance(item, dict) and item.get("id"):
                    last_apply[item["id"]] = record["time"]
    servers = _hub_users(home)
    ids = sorted(set(applied) | set(installation.manifest_files))
    today = today or dt.date.today()
    rows = []
    for dossier_id in ids:
        entry = applied.get(dossier_id)
        prefix = f"dossiers/{dossier_id}."
        problems = [p for p in installation.problems.items if p.file.startswith(prefix)]
        manifest = installation.manifest_files.get(dossier_id)
        row: dict[str, Any] = {
            "id": dossier_id,
            "applied": entry is not None,
            "last_apply": last_apply.get(dossier_id),
            "problems": [_problem_row(p) for p in problems],
            "member": entry is not None and entry.role_of(person.name) is not None,
            "workspace": _workspace_state(entry, servers, today),
            "runs": _run_counts(home, entry),
        }
        if entry is not None:
            summary = _summary(entry, person.name, "admin", today)
            row.update(
                {
                    k: summary[k]
                    for k in ("title", "expires", "days_left", "expired", "expires_soon", "members")
                }
            )
        file = f"dossiers/{manifest.name}" if manifest else f"dossiers/{dossier_id}.yaml"
        row["problems"] += _dossier_problems(dossier_id, file, entry, today)
        rows.append(row)
    general = [
        _problem_row(p) for p in installation.problems.items if not p.file.startswith("dossiers/")
    ]
    general += _installation_problems(verification, servers)
    if general:
        rows.append(
            {
                "id": None,
                "applied": False,
                "last_apply": None,
                "problems": general,
                "member": False,
                "workspace": None,
                "runs": None,
            }
        )
    return rows


def _problem(severity: str, what: str, fix: str) -> dict[str, str]:
    """A problem as the admin page and API show it: what is wrong, and what to do."""
    return {"severity": severity, "text": f"{what} Fix: {fix}", "what": what, "fix": fix}


def _problem_row(problem: Problem) -> dict[str, str]:
    row = _problem(problem.severity, str(replace(problem, fix="")), problem.fix)
    row["text"] = str(problem)  # the validator's own sentence, as `dossierhub validate` says it
    return row


def _dossier_problems(
    dossier_id: str, file: str, entry: DossierEntry | None, today: dt.date
) -> list[dict[str, str]]:
    """What the validator does not flag but an admin must act on (the expired dossier it does)."""
    apply = f"run `dossierhub apply {dossier_id}`"
    if entry is None:
        return [
            _problem(
                "warning",
                f"{file} is not applied: its people cannot use it yet.",
                f"{apply}.",
            )
        ]
    found = []
    left = expiry(entry.expires, today)
    if left.expires_soon:
        days = "today" if left.days_left == 0 else f"in {left.days_left} days"
        found.append(
            _problem(
                "warning",
                f"expires {days} ({entry.expires}): then its workspace stops and its extracts "
                "are removed.",
                f"extend `expires` in {file} if the work legitimately goes on, then {apply}.",
            )
        )
    if len(entry.leads) < 2 and not left.expired:
        found.append(
            _problem(
                "warning",
                "only one lead: no report can be released (four eyes: a run is released by a "
                "lead who did not start it).",
                f"name a second lead under `members.lead` in {file}, then {apply}.",
            )
        )
    return found


def _installation_problems(
    verification: Verification, servers: dict[str, dict] | None
) -> list[dict[str, str]]:
    found = []
    if not verification.ok:
        at = f" at record {verification.first_bad}" if verification.first_bad else ""
        found.append(
            _problem(
                "error",
                f"audit chain broken{at}: {verification.message}.",
                "run `dossierhub audit verify` for which copy disagrees and investigate "
                "before trusting any trail (docs/audit.md); the log is never rewritten.",
            )
        )
    if servers is None:
        found.append(
            _problem(
                "warning",
                "the hub does not answer: workspace states and last activity are unknown.",
                "check that `dossierhub serve` runs and read its log.",
            )
        )
    return found


def _hub_users(home: Home) -> dict[str, dict] | None:
    """The hub's user models (servers and last activity), or None if the hub does not answer."""
    try:
        api = HubAPI.for_home(home)
    except HubUnavailable:
        return None
    try:
        return api.users()
    except HubUnavailable:
        return None
    finally:
        api.close()


def _workspace_state(
    entry: DossierEntry | None, servers: dict[str, dict] | None, today: dt.date
) -> dict[str, Any]:
    """running, starting, stopping, stopped, not applied, expired (or unknown: the hub does not
    answer), and the last activity the hub knows of the workspace."""
    if entry is None:
        return {"state": "not applied", "last_activity": None}
    model = (servers or {}).get(entry.hub_user) or {}
    server = (model.get("servers") or {}).get("")
    last = (server or {}).get("last_activity") or model.get("last_activity")
    if entry.expired(today):
        state = "expired"
    elif servers is None:
        state = "unknown"
    elif server is None:
        state = "stopped"
    elif server.get("pending") == "spawn":
        state = "starting"
    elif server.get("pending") == "stop":
        state = "stopping"
    else:
        state = "running" if server.get("ready") else "stopped"
    return {"state": state, "last_activity": last}


def _run_counts(home: Home, entry: DossierEntry | None) -> dict[str, int] | None:
    """How many runs, in progress, failed and waiting for a release: counts, never the runs."""
    if entry is None:
        return None
    runs = list_runs(home, entry.id)
    return {
        "total": len(runs),
        "in_progress": sum(r.record.in_progress for r in runs),
        "failed": sum(not r.record.in_progress and not r.record.succeeded for r in runs),
        "pending_release": sum(_releasable(r) for r in runs),
    }


# ---------------------------------------------------------------- executions (who ran what)
#
# The rows come from the audit log's workspace.executions records through
# state.executions (one reader for the API, the pages, the export and the panel); these
# functions decide who sees which rows and shape them. docs/audit.md, "Executions".

EXECUTIONS_LIMIT = 500  # rows of one answer unless `limit` says otherwise
EXECUTIONS_MAX = 10_000
ROW_KEYS = (
    "at",
    "person",
    "dossier",
    "kernel",
    "path",
    "cell_id",
    "kind",
    "channel",
    "first_line",
    "code_sha256",
    "outcome",
)
KERNEL_CALL_KEYS = ("at", "person", "dossier", "kernel", "action", "path")
EXPORT_FORMATS = ("csv", "json")


@dataclass(frozen=True)
class ExecutionFilter:
    """What a request narrows the executions to; `since` and `until` aware, `until` included."""

    person: str | None = None
    path: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    limit: int = EXECUTIONS_LIMIT

    def asked(self) -> dict[str, Any]:
        """The filter as the answer repeats it (times in ISO 8601, with their zone)."""
        return {
            "person": self.person,
            "path": self.path,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "limit": self.limit,
        }


# the query parameter each field comes from (the API's); the pages name them their own way
API_NAMES = {name: name for name in ("person", "path", "since", "until", "limit")}


def execution_filter(
    home: Home, values: dict[str, str], names: dict[str, str] | None = None
) -> ExecutionFilter:
    """The filter of a request's text values (`names`: field -> the parameter it came in as),
    or ReportRefused (malformed: 400) naming the parameter. A date alone means its whole day
    in the installation's time zone (settings.yaml hub.time_zone), as does a time without a
    zone."""
    names = names or API_NAMES
    raw = {field: (values.get(field) or "").strip() for field in API_NAMES}
    zone = load_settings(home).hub.time_zone
    since = _moment(raw["since"], names["since"], zone, end_of_day=False)
    until = _moment(raw["until"], names["until"], zone, end_of_day=True)
    if since and until and until < since:
        _malformed(names["until"], f"'{_shown(raw['until'])}' is before {names['since']}")
    return ExecutionFilter(
        person=_text(raw["person"], names["person"], 100),
        path=_text(raw["path"], names["path"], 1000),
        since=since,
        until=until,
        limit=_limit(raw["limit"], names["limit"]),
    )


def _malformed(name: str, what: str) -> NoReturn:
    raise ReportRefused(f"{name}: {what}", reason="malformed", fields={name: what})


def _text(value: str, name: str, longest: int) -> str | None:
    if len(value) > longest:
        _malformed(name, f"longer than {longest} characters")
    return value or None


def _limit(value: str, name: str) -> int:
    if not value:
        return EXECUTIONS_LIMIT
    if not value.isdigit() or not 1 <= int(value) <= EXECUTIONS_MAX:
        _malformed(name, f"'{_shown(value)}' is not a whole number from 1 to {EXECUTIONS_MAX}")
    return int(value)


def _moment(value: str, name: str, zone: str, *, end_of_day: bool) -> dt.datetime | None:
    if not value:
        return None
    try:
        if len(value) == 10:  # a day: all of it
            day = dt.date.fromisoformat(value)
            start = dt.datetime.combine(day, dt.time(), ZoneInfo(zone))
            return start + dt.timedelta(days=1, microseconds=-1) if end_of_day else start
        found = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        _malformed(name, f"'{_shown(value)}' is not a date (YYYY-MM-DD) or time (…THH:MM)")
    return found if found.tzinfo else found.replace(tzinfo=ZoneInfo(zone))


def _execution_row(execution: Execution) -> dict[str, Any]:
    """One execution as the API and the pages show it (the code only where it was recorded)."""
    row: dict[str, Any] = {key: getattr(execution, key) for key in ROW_KEYS}
    row["at"] = execution.at.isoformat()
    if execution.code is not None:
        row["code"] = execution.code
    return row


def _kernel_call_row(call: KernelCall) -> dict[str, Any]:
    """One kernel call as the API and the pages show it."""
    return {key: getattr(call, key) for key in KERNEL_CALL_KEYS} | {"at": call.at.isoformat()}


def _where(filt: ExecutionFilter, **fixed: str | None) -> Where:
    """The index's terms for a filter's time (both ends included: a day given as `until` is
    all of it) and `fixed` (dossier, person, path)."""
    before = filt.until + dt.timedelta(microseconds=1) if filt.until is not None else None
    return Where(since=filt.since, before=before, **fixed)


def _answer(index: ExecutionIndex, where: Where, filt: ExecutionFilter) -> dict[str, Any]:
    """The newest `limit` rows and the counts of all that `where` says, from the index: what
    the rows shown cost, not what the log holds. Beside the executions, the kernels people
    started, restarted, interrupted or shut down, narrowed alike (a colleague's kernel
    restarted mid-run is activity the team and an access request must see)."""
    newest = index.executions(where, newest_first=True, limit=filt.limit)
    calls = index.kernel_calls(where, newest_first=True, limit=filt.limit)
    return {
        "executions": [_execution_row(x) for x in newest],
        "total": index.count(where),
        "people": index.counted("person", where),
        "notebooks": index.counted("path", where),
        "kernel_calls": [_kernel_call_row(x) for x in calls],
        "kernel_call_total": index.kernel_call_count(where),
        "filter": filt.asked(),
    }


def executions_for(
    home: Home, dossier_id: str, person: Person, filt: ExecutionFilter
) -> dict[str, Any]:
    """The dossier's executions, newest first, with counts per person and per notebook:
    everyone's for its leads and analysts, their own for anyone else with access to its
    pages (roles.may_see_executions); `everyone` says which."""
    _, role = member_entry(home, dossier_id, person)
    everyone = may_see_executions(person.name, role, dossier_id) is None
    if not everyone:
        _refuse(may_see_own_executions(person.name, filt.person))
    who = filt.person if everyone else person.name
    index = ExecutionIndex.for_log(AuditLog(home))
    seen = Where(dossier=dossier_id, person=None if everyone else who)
    found = _where(filt, dossier=dossier_id, person=who, path=filt.path)
    return {
        **_answer(index, found, filt),
        "dossier": dossier_id,
        "everyone": everyone,
        # what the filter form offers: every person and notebook of the dossier's executions
        "choices": {
            "people": index.distinct("person", seen),
            "notebooks": index.distinct("path", seen),
        },
    }


def latest_executions(home: Home, dossier_id: str, person: Person, path: str) -> dict[str, Any]:
    """Who last ran each cell of one notebook (the Dossier panel's markers): for those who
    see everyone's executions, as the panel shows every collaborator's runs."""
    _, role = member_entry(home, dossier_id, person)
    _refuse(may_see_executions(person.name, role, dossier_id))
    if not path:
        _malformed("path", "the notebook's path is needed")
    cells = ExecutionIndex.for_log(AuditLog(home)).latest_by_cell(dossier_id, path)
    keys = ("person", "code_sha256", "first_line", "outcome")
    return {
        "path": path,
        "cells": {
            cell: {"at": x.at.isoformat(), **{k: getattr(x, k) for k in keys}}
            for cell, x in cells.items()
        },
    }


def my_executions(home: Home, person: Person, filt: ExecutionFilter) -> dict[str, Any]:
    """The person's own executions across every dossier (also one they have left), newest
    first, with counts per dossier and per notebook: the My activity page."""
    _refuse(may_see_own_executions(person.name, filt.person))
    index = ExecutionIndex.for_log(AuditLog(home))
    found = _where(filt, person=person.name, path=filt.path)
    return {
        **_answer(index, found, filt),
        "dossiers": index.counted("dossier", found),
        "choices": {"notebooks": index.distinct("path", Where(person=person.name))},
    }


@dataclass(frozen=True)
class ActivityExport:
    """One person's executions and kernel calls in every dossier, as a file: the answer to an
    access request."""

    person: str
    format: str
    data: bytes
    count: int  # executions
    dossiers: list[str]
    kernel_calls: int = 0

    @property
    def filename(self) -> str:
        return f"executions-{self.person}.{self.format}"


def export_facts(export: ActivityExport) -> dict[str, Any]:
    """executions.export: how much of whose activity left, and from which dossiers (whose
    trails then show it)."""
    return {
        "count": export.count,
        "kernel_calls": export.kernel_calls,
        "dossiers": export.dossiers,
    }


def person_activity(home: Home, person: Person, name: str, fmt: str) -> ActivityExport:
    """The admin's export of one person's activity (the pages and the API)."""
    _refuse(may_export_activity(person.name, person.admin))
    return activity_export(home, name, fmt)


def activity_export(home: Home, name: str, fmt: str) -> ActivityExport:
    """Exactly `name`'s executions and kernel calls, oldest first, as state.executions writes
    an export (CSV safe to open in a spreadsheet, or JSON; the `event` column says which a row
    is). The command line, run by HOME's owner, comes here directly."""
    if fmt not in EXPORT_FORMATS:
        _malformed("format", f"'{_shown(fmt)}' is not one of {', '.join(EXPORT_FORMATS)}")
    if not name.strip():
        _malformed("person", "a person's name is needed")
    index = ExecutionIndex.for_log(AuditLog(home))
    executions = index.executions(Where(person=name))
    calls = index.kernel_calls(Where(person=name))
    form: Literal["csv", "json"] = "json" if fmt == "json" else "csv"
    data = export_text(executions, form, calls).encode("utf-8")
    dossiers = sorted({x.dossier for x in executions} | {x.dossier for x in calls})
    return ActivityExport(name, fmt, data, len(executions), dossiers, len(calls))
