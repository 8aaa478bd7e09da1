"""What may start: a run request checked (dossier, role, template, views, parameters) and, when
every check passes, queued with its folder and record. Every refusal happens here, before any
folder is made or kernel started."""

from __future__ import annotations

import datetime as dt
import os
import secrets
from dataclasses import dataclass
from typing import Any

from dossier_kernel.provenance import ExtractProvenance, ProvenanceError
from dossierhub.data.extracts import current_provenance
from dossierhub.reports.collect import make_run_folder
from dossierhub.reports.records import RunRecord, queued_record, write_record
from dossierhub.state.directory import read_directory
from dossierhub.state.home import Home, RunFolder
from dossierhub.state.models import read_dossier
from dossierhub.state.problems import RefusedError, ReportRefused
from dossierhub.state.roles import may_run
from dossierhub.state.templates import Template, TemplateError, coerce, load_template


@dataclass
class PendingRun:
    """A run that passed every check and is queued: its folder and record exist."""

    home: Home
    dossier_id: str
    run: RunFolder
    template: Template
    values: dict[str, Any]
    user: str
    record: RunRecord
    extracts: ExtractProvenance | None
    started: bool = False  # papermill writes the notebook in the run folder from then on

    @property
    def run_id(self) -> str:
        return self.run.run_id


@dataclass(frozen=True)
class Request:
    """A run request that passed every check: the template, the checked parameter values and
    the extract provenance they were checked against, read once (an apply meanwhile cannot
    make the run record a generation other than the one its views were checked with)."""

    template: Template
    values: dict[str, Any]
    extracts: ExtractProvenance


def prepare_run(
    home: Home, dossier_id: str, template_name: str, user: str, raw_params: dict[str, str]
) -> Request:
    """The checked request, or ReportRefused saying why not."""
    entry = next((e for e in read_directory(home) if e.id == dossier_id), None)
    if entry is None:
        raise ReportRefused(f"there is no applied dossier '{dossier_id}'", reason="not_found")
    denied = may_run(entry, user)
    if denied is not None:
        raise ReportRefused(denied.why, reason=denied.reason)
    try:
        allowed = read_dossier(home, dossier_id).templates
    except RefusedError as exc:
        raise ReportRefused(f"{exc} (ask the admin to fix it)", reason="conflict") from None
    if template_name not in allowed:
        message = (
            f"template '{template_name}' is not allowed for dossier "
            f"{dossier_id}; its manifest lists: {', '.join(allowed) or 'none'}"
        )
        raise ReportRefused(message, fields={"template": message})
    try:
        provenance = current_provenance(home.extract_dir(dossier_id))
    except ProvenanceError as exc:
        raise ReportRefused(f"{exc}", reason="conflict") from None
    if provenance is None:
        raise ReportRefused(
            f"dossier {dossier_id} has no extracts: run `dossierhub apply`", reason="conflict"
        )
    try:
        template = load_template(home, template_name)
        missing = [v for v in template.views if v not in provenance.views]
        if missing:
            raise TemplateError(
                f"template '{template_name}' needs the view(s) "
                f"{', '.join(missing)}, which dossier {dossier_id} lacks"
            )
        values = coerce(template, raw_params, sorted(provenance.views))
    except TemplateError as exc:
        raise ReportRefused(str(exc), fields=exc.fields) from None
    return Request(template, values, provenance)


def start_run(
    home: Home, dossier_id: str, template_name: str, user: str, raw_params: dict[str, str]
) -> PendingRun:
    """Refuse or queue: after this returns, the run has an id, a folder and a `queued`
    record. The caller records the decision (decisions.decide, as report.run)."""
    request = prepare_run(home, dossier_id, template_name, user, raw_params)
    template, values, extracts = request.template, request.values, request.extracts
    run_id = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S-") + secrets.token_hex(3)
    run = home.run_folder(dossier_id, run_id)
    make_run_folder(home, dossier_id, run)
    record = queued_record(
        run_id,
        dossier_id,
        template.name,
        user,
        template_origin=template.origin,
        template_sha256=template.sha256,
        parameters=values,
        extracts={v: e.sha256 for v, e in extracts.views.items()},
        extracts_generation=extracts.generation,
        runner_pid=os.getpid(),
    )
    write_record(run, record)
    return PendingRun(home, dossier_id, run, template, values, user, record, extracts)
