"""What leaves a dossier: the viewer's report is assembled from the checked artefacts only
(docs/reports.md, "What a viewer reads").

A report run's notebook holds whatever its kernel displayed. Viewers get:
- the narrative (markdown cells, as the template's author wrote them);
- each published table and chart, drawn by this process from the run's own checked copy of the
  table (never from the kernel's display), where the notebook displayed it;
- for every other output, a placeholder saying it was withheld, unless the releasing lead
  included that output with a written justification (recorded per output in release.json).

The releasing lead reviews the whole notebook (review.html), code included, with every output
marked checked or unchecked under the id (`c<cell>.o<output>`) the release form uses.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import html
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from pydantic import TypeAdapter, ValidationError

from dossier_kernel.published import (
    CHART_SUFFIX,
    DECLARATION_SUFFIX,
    PublishedError,
    names_with,
    read_chart,
    read_declaration,
    table_file,
)
from dossier_kernel.render import ARTEFACT_MIME, chart_html, check_spec, format_value, table_html
from dossierhub.reports.checks import run_rules
from dossierhub.reports.records import Release, RunRecord, check_entry, malformed, read_record
from dossierhub.reports.sanitize import clean_report_html
from dossierhub.state.atomic import write_atomic
from dossierhub.state.directory import read_directory
from dossierhub.state.home import Home, RunFolder
from dossierhub.state.templates import TemplateError, load_template

if TYPE_CHECKING:  # nbconvert loads on the first render
    from nbconvert import HTMLExporter

NBCONVERT_TEMPLATES = Path(__file__).parent / "nbconvert"
PREVIEW_CHARS = 300


@dataclass(frozen=True)
class OutputRef:
    """One output of the executed notebook, as the reviewer and the release form name it."""

    id: str  # c<cell number, from 1>.o<output number, from 0>
    cell: int
    kind: Literal["artefact", "unchecked"]  # a published table or chart, or anything else
    artefact: str | None  # the table's or chart's name
    sha256: str
    types: list[str]  # stream name or mime types
    preview: str  # the output's text, shortened, for the release form


def output_id(cell: int, index: int) -> str:
    return f"c{cell}.o{index}"


def _output_sha(output: dict[str, Any]) -> str:
    return hashlib.sha256(
        json.dumps(output, sort_keys=True, default=str).encode("utf-8")
    ).hexdigest()


def _reference(output: dict[str, Any]) -> dict[str, Any] | None:
    """The artefact a display_data / execute_result names, if any."""
    if output.get("output_type") not in ("display_data", "execute_result"):
        return None
    ref = output.get("data", {}).get(ARTEFACT_MIME)
    if isinstance(ref, str):  # nbformat keeps JSON mime data as parsed; be lenient
        try:
            ref = json.loads(ref)
        except ValueError:
            return None
    ok = isinstance(ref, dict) and ref.get("kind") in ("table", "chart")
    return ref if ok and isinstance(ref.get("name"), str) else None


def _preview(output: dict[str, Any]) -> tuple[list[str], str]:
    kind = output.get("output_type")
    if kind == "stream":
        return [f"stream:{output.get('name', 'stdout')}"], str(output.get("text", ""))
    if kind == "error":
        return ["error"], f"{output.get('ename')}: {output.get('evalue')}"
    data = output.get("data", {})
    text = data.get("text/plain", "")
    return sorted(data), "".join(text) if isinstance(text, list) else str(text)


def index_outputs(notebook: Any) -> list[OutputRef]:
    """Every code cell output, in notebook order."""
    refs = []
    for number, cell in enumerate(notebook.cells, start=1):
        if cell.cell_type != "code":
            continue
        for index, output in enumerate(cell.get("outputs", [])):
            ref = _reference(output)
            types, text = _preview(output)
            refs.append(
                OutputRef(
                    output_id(number, index),
                    number,
                    "artefact" if ref else "unchecked",
                    ref["name"] if ref else None,
                    _output_sha(output),
                    types,
                    text[:PREVIEW_CHARS],
                )
            )
    return refs


_OUTPUTS = TypeAdapter(list[OutputRef])


def write_outputs_index(run: RunFolder) -> list[OutputRef]:
    notebook = nbformat.read(run.notebook, as_version=4)
    refs = index_outputs(notebook)
    write_atomic(run.outputs_index, _OUTPUTS.dump_json(refs, indent=1).decode() + "\n")
    return refs


def read_output_refs(run: RunFolder) -> list[OutputRef]:
    """outputs.json (this module owns it): every output of the executed notebook, none before
    the notebook was indexed; ReportRefused (conflict), naming the file, when it is not what
    write_outputs_index wrote."""
    path = run.outputs_index
    if not path.exists():
        return []
    try:
        return _OUTPUTS.validate_json(path.read_bytes())
    except ValidationError as exc:
        raise malformed(exc, path, run) from None


def read_outputs_index(run: RunFolder) -> list[dict[str, Any]]:
    """read_output_refs as JSON objects (what the API and the release form show)."""
    return [asdict(ref) for ref in read_output_refs(run)]


def unchecked_outputs(run: RunFolder) -> list[dict[str, Any]]:
    return [asdict(ref) for ref in read_output_refs(run) if ref.kind == "unchecked"]


# ---------------------------------------------------------------- artefacts


@dataclass
class Artefacts:
    """The run's published tables (checked copies) and chart descriptions."""

    tables: dict[str, tuple[Any, dict[str, Any]]]  # name -> (polars frame, meta)
    charts: dict[str, dict[str, Any]]  # name -> spec (validated)
    chart_problems: dict[str, list[str]]  # name -> why it cannot be drawn
    caption_problems: dict[str, str]  # table -> why its title or descriptions are not shown


def load_artefacts(run: RunFolder) -> Artefacts:
    """Read what the run published (names as collect.collect_published admits them)."""
    import polars as pl

    published = run.published
    tables: dict[str, tuple[Any, dict[str, Any]]] = {}
    charts: dict[str, dict[str, Any]] = {}
    problems: dict[str, list[str]] = {}
    captions: dict[str, str] = {}
    if not published.exists():
        return Artefacts(tables, charts, problems, captions)
    files = {p.name for p in published.iterdir()}
    for name in sorted(names_with(files, DECLARATION_SUFFIX)):
        data = published / table_file(name)
        if not data.exists():
            continue
        try:
            meta = read_declaration(published, name).as_meta()
        except (OSError, PublishedError):
            continue  # the checks fail it (reports/checks.py), and it is not drawn
        table = pl.read_parquet(data)
        unknown = [c for c in meta.get("descriptions", {}) if c not in table.columns]
        if unknown:  # the kernel wrote it: what publish() refuses, fails here
            captions[name] = f"it describes a column '{unknown[0]}' it does not have"
            meta = {k: v for k, v in meta.items() if k not in ("title", "descriptions")}
        tables[name] = (table, meta)
    for name in sorted(names_with(files, CHART_SUFFIX)):
        try:
            spec = read_chart(published, name).as_spec()
        except (OSError, PublishedError) as exc:
            problems[name] = [f"its description cannot be read ({exc})"]
            continue
        if spec["table"] not in tables:
            problems[name] = [f"it draws the table '{spec['table']}', which was not published"]
            continue
        found = check_spec(spec, tables[spec["table"]][0])
        if found:
            problems[name] = found
            continue
        charts[name] = spec
    return Artefacts(tables, charts, problems, captions)


def chart_checks(artefacts: Artefacts, table_checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A chart passes exactly when its table does and it can be drawn from it; a table whose
    caption cannot be shown fails as well (publish() would have refused it)."""
    passed = {c["table"]: c["passed"] for c in table_checks}
    results = []
    for name, problem in sorted(artefacts.caption_problems.items()):
        message = f"{problem}: not written by publish(), its captions are not shown"
        results.append(check_entry(name, False, [_finding("published", message)]))
        passed[name] = False
    for name, problems in sorted(artefacts.chart_problems.items()):
        results.append(check_entry(name, False, [_finding("chart", "; ".join(problems))], "chart"))
    for name, spec in sorted(artefacts.charts.items()):
        ok = passed.get(spec["table"], False)
        message = f"it draws the table '{spec['table']}', which fails its checks"
        findings = [] if ok else [_finding("chart", message)]
        results.append(check_entry(name, ok, findings, "chart"))
    return results


def _finding(rule: str, message: str) -> dict[str, Any]:
    return {"rule": rule, "column": None, "rows": [], "message": message}


# ---------------------------------------------------------------- assembly


def _html_output(text: str) -> Any:
    return new_output("display_data", data={"text/html": text})


def _withheld(ids: list[str]) -> Any:
    what = "An output" if len(ids) == 1 else f"{len(ids)} outputs"
    return _html_output(
        f'<div class="dh-withheld" data-withheld="{" ".join(ids)}">{what} of this step '
        f"({', '.join(ids)}) withheld: not a published table or chart, so not checked.</div>"
    )


def _mark(kind: str, text: str, output: str | None = None) -> Any:
    data = f' data-output="{output}"' if output else ""
    return _html_output(f'<div class="dh-mark dh-mark-{kind}"{data}>{text}</div>')


@dataclass
class Context:
    """What the renderer needs besides the notebook."""

    artefacts: Artefacts
    checks: dict[str, dict[str, Any]]  # table or chart name -> checks.json entry
    catalog_descriptions: dict[str, str]
    max_rows: int | None
    drawn: dict[tuple[str, str], str | None] = field(default_factory=dict)  # viewer and review


def _draw(ref: dict[str, Any], ctx: Context) -> str | None:
    """The hub's HTML of a published table or chart (None: not a checked artefact), drawn
    once per run."""
    key = (ref["kind"], ref["name"])
    if key not in ctx.drawn:
        ctx.drawn[key] = _drawing(ref, ctx)
    return ctx.drawn[key]


def _drawing(ref: dict[str, Any], ctx: Context) -> str | None:
    name = ref["name"]
    if ref["kind"] == "table" and name in ctx.artefacts.tables:
        table, meta = ctx.artefacts.tables[name]
        return table_html(
            table,
            meta,
            name=name,
            catalog_descriptions=ctx.catalog_descriptions,
            max_rows=ctx.max_rows,
        )
    if ref["kind"] == "chart" and name in ctx.artefacts.charts:
        spec = ctx.artefacts.charts[name]
        return chart_html(spec, ctx.artefacts.tables[spec["table"]][0], name=name)
    return None


def _verdict_note(name: str, ctx: Context, justification: str | None) -> Any | None:
    check = ctx.checks.get(name)
    if check is None or check["passed"]:
        return None
    text = f"This {check.get('kind', 'table')} did not pass every output check"
    if justification:
        text += f"; it was released with the justification: “{html.escape(justification)}”"
    return _html_output(f'<p class="dh-note">{text}.</p>')


def viewer_notebook(
    notebook: Any,
    ctx: Context,
    included: dict[str, str],
    justification: str | None = None,
    title: str | None = None,
) -> Any:
    """The report a viewer reads (see the module's docstring). `included` maps output ids the
    releasing lead chose to show to their justification."""
    out = new_notebook(metadata={"language_info": {"name": "python"}})
    shown: set[tuple[str, str]] = set()  # (kind, name): a chart may share its table's name
    for number, cell in enumerate(notebook.cells, start=1):
        if cell.cell_type == "markdown":
            source = cell.source
            if not out.cells and title and source.lstrip().startswith(f"# {title}\n"):
                source = source.lstrip()[len(f"# {title}\n") :]  # the header has the title
            markdown = new_markdown_cell(source)
            if cell.get("attachments"):
                markdown.attachments = cell.attachments
            out.cells.append(markdown)
            continue
        if cell.cell_type != "code":
            continue  # raw cells leave nothing
        outputs = _viewer_outputs(cell, number, ctx, included, justification, shown)
        if outputs:
            out.cells.append(new_code_cell("", outputs=outputs))
    rest = [
        {"kind": kind, "name": name}
        for kind, names in (("table", ctx.artefacts.tables), ("chart", ctx.artefacts.charts))
        for name in sorted(names)
        if (kind, name) not in shown
    ]
    if rest:  # published, but never displayed by the notebook: still part of the release
        out.cells.append(new_markdown_cell("## Further published tables and charts"))
        outputs = []
        for ref in rest:
            outputs.append(_html_output(_draw(ref, ctx) or ""))
            note = _verdict_note(ref["name"], ctx, justification)
            if note is not None:
                outputs.append(note)
        out.cells.append(new_code_cell("", outputs=outputs))
    return out


def _viewer_outputs(
    cell: Any,
    number: int,
    ctx: Context,
    included: dict[str, str],
    justification: str | None,
    shown: set[tuple[str, str]],
) -> list[Any]:
    outputs: list[Any] = []
    withheld: list[str] = []  # consecutive withheld outputs share one placeholder

    def show(*items: Any) -> None:
        if withheld:
            outputs.append(_withheld(withheld[:]))
            withheld.clear()
        outputs.extend(item for item in items if item is not None)

    for index, output in enumerate(cell.get("outputs", [])):
        oid = output_id(number, index)
        ref = _reference(output)
        drawn = _draw(ref, ctx) if ref else None
        if ref and drawn is not None:
            if (ref["kind"], ref["name"]) not in shown:  # drawn once, where first shown
                shown.add((ref["kind"], ref["name"]))
                show(_html_output(drawn), _verdict_note(ref["name"], ctx, justification))
        elif oid in included:
            note = (
                "Shown although it was not checked: the releasing lead included it with "
                f"the justification “{html.escape(included[oid])}”"
            )
            show(_mark("included", note, oid), copy.deepcopy(output))
        else:
            withheld.append(oid)
    show()
    return outputs


def review_notebook(notebook: Any, ctx: Context) -> Any:
    """Every cell and output, each output marked with its id: artefacts as viewers will see
    them (drawn from the checked files), every other output as the kernel left it, flagged."""
    out = copy.deepcopy(notebook)
    for number, cell in enumerate(out.cells, start=1):
        if cell.cell_type != "code":
            continue
        outputs = []
        for index, output in enumerate(cell.get("outputs", [])):
            oid = output_id(number, index)
            ref = _reference(output)
            drawn = _draw(ref, ctx) if ref else None
            if ref and drawn is not None:
                check = ctx.checks.get(ref["name"], {"passed": False})
                verdict = "passes its checks" if check["passed"] else "FAILS its checks"
                outputs.append(
                    _mark(
                        "checked" if check["passed"] else "failed",
                        f"{oid}: published {ref['kind']} <b>{html.escape(ref['name'])}</b>, "
                        f"{verdict}. Viewers see it as drawn here from the checked file.",
                        oid,
                    )
                )
                outputs.append(_html_output(drawn))
                continue
            outputs.append(
                _mark(
                    "unchecked",
                    f"{oid}: unchecked output, withheld from viewers unless you include it "
                    "with a justification when you release.",
                    oid,
                )
            )
            outputs.append(output)
        cell.outputs = outputs
    return out


# ---------------------------------------------------------------- HTML


def render(notebook: Any, header: dict[str, Any], *, review: bool) -> str:
    """nbconvert, with the dossier_report template: outputs sanitised, no script can run (CSP),
    no CDN; code shown only in the review."""
    body, _ = _exporter(review).from_notebook_node(
        notebook, resources={"dossier_report": {**header, "view": "review" if review else ""}}
    )
    return body


@functools.cache
def _exporter(review: bool) -> HTMLExporter:
    """One configured exporter per kind and process: building its environment is slow."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(
        template_name="dossier_report", extra_template_basedirs=[str(NBCONVERT_TEMPLATES)]
    )
    exporter.exclude_input = not review
    exporter.exclude_input_prompt = not review
    exporter.exclude_output_prompt = True
    exporter.sanitize_html = True
    exporter.embed_images = True
    exporter.register_filter("clean_html", clean_report_html)
    return exporter


def parameters_in_words(
    values: dict[str, Any], labels: dict[str, str] | None = None
) -> list[tuple[str, str]]:
    """("Low income threshold", "26,000") for each parameter, in the template's order."""
    labels = labels or {}
    return [
        (labels.get(name) or name.replace("_", " ").capitalize(), format_value(value, 0))
        for name, value in values.items()
    ]


# ---------------------------------------------------------------- a run's two pages


def context_for(
    home: Home, dossier_id: str, run: RunFolder, checks: list[dict[str, Any]]
) -> Context:
    # the rules of the run's own extracts, however often apply ran since (checks.run_rules)
    rules = run_rules(home, dossier_id, read_record(run).extracts_generation)
    return Context(
        load_artefacts(run),
        {c["table"]: c for c in checks},
        _catalog_descriptions(home, dossier_id),
        int(rules["max_rows"]),
    )


def _catalog_descriptions(home: Home, dossier_id: str) -> dict[str, str]:
    """Column descriptions from the dossier's catalog, by column name (the first view that
    describes a name wins): a published `area` is described as the catalog describes it."""
    path = home.extract_catalog(dossier_id)
    try:
        state = path.stat()  # apply replaces the catalog: a new one is read again
    except OSError:
        return {}
    return dict(_descriptions(str(path.resolve()), state.st_mtime_ns, state.st_size))


@functools.lru_cache(maxsize=64)
def _descriptions(path: str, mtime_ns: int, size: int) -> tuple[tuple[str, str], ...]:
    import duckdb

    from dossier_kernel.catalog import describe_views

    con = duckdb.connect(path, read_only=True)
    try:
        views = describe_views(con)
    finally:
        con.close()
    found: dict[str, str] = {}
    for view in views:
        for column in view.get("columns", []):
            if column.get("description"):
                found.setdefault(column["name"], column["description"])
    return tuple(found.items())


def header_for(home: Home, record: RunRecord, release: Release | None) -> dict[str, Any]:
    dossier_id = record.dossier
    entry = next((e for e in read_directory(home) if e.id == dossier_id), None)
    title = record.template
    with contextlib.suppress(TemplateError):  # a template gone since the run: its name will do
        title = load_template(home, record.template).title or title
    return {
        "dossier": dossier_id,
        "dossier_title": entry.title if entry is not None else dossier_id,
        "title": title,
        "template": record.template,
        "template_sha": (record.template_sha256 or "")[:12],
        "run_id": record.run_id,
        "parameters": parameters_in_words(record.parameters),
        "run_date": _day(record.finished or record.queued),
        "run_by": record.user,
        "released_by": release.by if release is not None else None,
        "released_at": _day(release.at if release is not None else None),
        "justified": bool(release is not None and release.justification),
    }


def _day(stamp: str | None) -> str:
    """2026-12-01T06:11:48.538+00:00 -> 1 December 2026, 06:11 UTC"""
    if not stamp:
        return ""
    import datetime as dt

    moment = dt.datetime.fromisoformat(stamp)
    return f"{moment.day} {moment:%B %Y, %H:%M} UTC"


def render_review(home: Home, run: RunFolder, record: RunRecord, ctx: Context) -> None:
    notebook = nbformat.read(run.notebook, as_version=4)
    page = render(review_notebook(notebook, ctx), header_for(home, record, None), review=True)
    write_atomic(run.review_html, page)


def render_viewer(
    home: Home,
    run: RunFolder,
    record: RunRecord,
    ctx: Context,
    release: Release | None = None,
) -> None:
    """report.html: before release a preview of what viewers will read, at release the
    released report (with the outputs the lead included)."""
    notebook = nbformat.read(run.notebook, as_version=4)
    included = {i["output"]: i["justification"] for i in release.included} if release else {}
    justification = release.justification if release is not None else None
    header = header_for(home, record, release)
    viewer = viewer_notebook(notebook, ctx, included, justification, header["title"])
    page = render(viewer, header, review=False)
    write_atomic(run.report_html, page)


def warm_up() -> None:
    """Build the viewer's exporter and load matplotlib (a run does it while its kernel
    starts; the review's exporter is built when a review is first opened)."""
    import matplotlib.figure  # noqa: F401

    _exporter(False)
