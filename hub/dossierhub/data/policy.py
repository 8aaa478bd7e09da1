"""Load catalog and manifests, check them against each other and against the data.

`load_installation` never raises on bad input: it returns every problem found, so `validate`
shows them all and `apply` refuses before touching anything.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from dossierhub.data.personal_data import name_hint, value_hint
from dossierhub.data.rowfilter import RowFilterError, normalize_filter
from dossierhub.data.sources import SourceFiles, SourceUnavailable, locate, read_schema
from dossierhub.state.directory import WORKSPACE_PREFIX
from dossierhub.state.home import Home
from dossierhub.state.models import DOSSIER_ID, Catalog, Dossier, SourceSpec, ViewSpec
from dossierhub.state.problems import Problem, Problems, RefusedError
from dossierhub.state.templates import NUMERIC, TemplateError, available, clashes, load_template
from dossierhub.state.yamlfile import LocatedYaml, load_yaml, parse_into

SAMPLE_ROWS = 2000


@dataclass(frozen=True)
class ViewPlan:
    """One approved view, fully checked: what apply builds."""

    dossier_id: str
    view: str
    source_name: str
    source: SourceSpec
    columns: tuple[str, ...]
    pseudonymize: tuple[str, ...]
    where_sql: str | None


@dataclass
class Installation:
    home: Home
    catalog: Catalog | None = None
    dossiers: dict[str, Dossier] = field(default_factory=dict)
    plans: dict[str, list[ViewPlan]] = field(default_factory=dict)
    sources: dict[str, SourceFiles] = field(default_factory=dict)
    problems: Problems = field(default_factory=Problems)
    manifest_files: dict[str, Path] = field(default_factory=dict)
    sample_values: bool = True


def load_installation(
    home: Home, *, today: dt.date | None = None, sample_values: bool = True
) -> Installation:
    """`sample_values` also looks at data values for undeclared personal data (validate)."""
    inst = Installation(home, sample_values=sample_values)
    catalog_doc = _load_catalog(home, inst)
    for name in clashes(home):
        inst.problems.add(
            Problem(
                f"templates/{name}.ipynb",
                "",
                "has the name of a built-in template.",
                f"rename it, such as our_{name}.ipynb.",
            )
        )
    con = duckdb.connect()
    try:
        for path in sorted(home.dossiers_dir.glob("*")) if home.dossiers_dir.exists() else []:
            if path.name.startswith(".") or path.is_dir():
                continue
            if path.suffix != ".yaml":
                inst.problems.add(
                    Problem(
                        f"dossiers/{path.name}",
                        "",
                        "is ignored: manifests end in .yaml.",
                        f"rename it to {path.stem}.yaml.",
                        severity="warning",
                    )
                )
                continue
            _load_dossier(path, inst, con, catalog_doc, today)
    finally:
        con.close()
    return inst


def _load_catalog(home: Home, inst: Installation) -> LocatedYaml | None:
    if not home.catalog_file.exists():
        inst.problems.add(
            Problem(
                "catalog.yaml",
                "",
                f"is missing in {home.root}.",
                "run `dossierhub init`, or pass --home for another folder.",
            )
        )
        return None
    try:
        doc = load_yaml(home.catalog_file, "catalog.yaml")
    except RefusedError as exc:
        inst.problems.extend(exc.problems)
        return None
    data = doc.data if doc.data is not None else {}
    catalog = parse_into(Catalog, data, doc, inst.problems)
    inst.catalog = catalog
    return doc


def _load_dossier(
    path: Path,
    inst: Installation,
    con: duckdb.DuckDBPyConnection,
    catalog_doc: LocatedYaml | None,
    today: dt.date | None,
) -> None:
    display = f"dossiers/{path.name}"
    try:
        doc = load_yaml(path, display)
    except RefusedError as exc:
        inst.problems.extend(exc.problems)
        return
    data = doc.data
    if not isinstance(data, dict):
        inst.problems.add(
            Problem(
                display,
                "",
                "must be a mapping of keys (id, title, ...).",
                "see docs/reference.md, dossiers/<id>.yaml.",
                1,
            )
        )
        return
    problems_before = len(inst.problems.errors)
    raw_id = data.get("id")
    if not isinstance(raw_id, str) or not DOSSIER_ID.fullmatch(raw_id):
        inst.problems.add(
            doc.problem(
                ("id",),
                f"the id {raw_id!r} is not valid.",
                "use 3 to 24 characters: lowercase letters, digits and '-', starting with a letter "
                "and not ending with '-' (such as armoede).",
            )
        )
    elif raw_id != path.stem:
        inst.problems.add(
            doc.problem(
                ("id",),
                f"the id '{raw_id}' differs from the file name.",
                f"rename the file to {raw_id}.yaml or set id: {path.stem}.",
            )
        )
    elif raw_id in inst.dossiers or raw_id in inst.manifest_files:
        inst.problems.add(
            doc.problem(
                ("id",), f"the id '{raw_id}' is used twice.", "give each dossier its own id."
            )
        )
    dossier = parse_into(Dossier, data, doc, inst.problems)
    if dossier is None or len(inst.problems.errors) > problems_before:
        return
    inst.manifest_files[dossier.id] = path
    _check_members(dossier, doc, inst.problems)
    _check_templates(dossier, doc, inst)
    if dossier.is_expired(today):
        inst.problems.add(
            doc.problem(
                ("expires",),
                f"the dossier expired on {dossier.expires.isoformat()}.",
                "apply removes its extracts; extend `expires` if the work legitimately goes on.",
                severity="warning",
            )
        )
    plans: list[ViewPlan] = []
    for view_name, view in dossier.sources.items():
        plan = _check_view(dossier, view_name, view, doc, inst, con)
        if plan is not None:
            plans.append(plan)
    if len(inst.problems.errors) == problems_before:
        inst.dossiers[dossier.id] = dossier
        inst.plans[dossier.id] = plans


def _check_templates(dossier: Dossier, doc: LocatedYaml, inst: Installation) -> None:

    known = available(inst.home)
    for index, name in enumerate(dossier.templates):
        if name not in known:
            inst.problems.add(
                doc.problem(
                    ("templates", index),
                    f"there is no report template '{name}'.",
                    f"use one of: {', '.join(sorted(known)) or 'none'}, or add {name}.ipynb to "
                    "HOME/templates.",
                )
            )
            continue
        _check_parameters(name, ("templates", index), doc, inst)


def _check_parameters(
    name: str, where: tuple[str, int], doc: LocatedYaml, inst: Installation
) -> None:
    """A template whose parameters cannot be read is refused here rather than at its first
    run; a number without a step is pointed out (docs/differencing.md says why it matters)."""
    try:
        template = load_template(inst.home, name)
    except TemplateError as exc:
        inst.problems.add(
            doc.problem(where, f"{exc}.", "fix the template's dossierhub.parameters metadata.")
        )
        return
    for parameter in template.parameters:
        if parameter.type in NUMERIC and parameter.step is None:
            inst.problems.add(
                doc.problem(
                    where,
                    f"template '{name}': parameter '{parameter.name}' ({parameter.type}) has "
                    "no step, so runs may use neighbouring values whose difference can "
                    "single out a few people.",
                    'declare a step in its dossierhub.parameters (such as "step": 1000), '
                    "or step 1 where the number defines no group.",
                    severity="warning",
                )
            )


def _check_members(dossier: Dossier, doc: LocatedYaml, problems: Problems) -> None:
    if not dossier.members.lead:
        problems.add(
            doc.problem(
                ("members", "lead"),
                "the dossier has no lead.",
                "name at least one lead: leads approve what leaves the workspace.",
            )
        )
    seen: dict[str, str] = {}
    for role in ("lead", "analyst", "viewer"):
        for index, person in enumerate(getattr(dossier.members, role)):
            if person.startswith(WORKSPACE_PREFIX):
                # as a member, a workspace's hub account would give the code running in that
                # workspace (it holds the account's token) this dossier's role: another team's
                # workspace, data and reports, even a lead's release
                problems.add(
                    doc.problem(
                        ("members", role, index),
                        f"'{person}' is a workspace account (the hub account of a dossier "
                        "workspace), not a person.",
                        "name people by their own login; names starting with "
                        f"'{WORKSPACE_PREFIX}' belong to workspaces.",
                    )
                )
            elif person in seen:
                problems.add(
                    doc.problem(
                        ("members", role, index),
                        f"'{person}' is listed as {seen[person]} and as {role}.",
                        "give each person one role.",
                    )
                )
            seen.setdefault(person, role)


def _check_view(
    dossier: Dossier,
    view_name: str,
    view: ViewSpec,
    doc: LocatedYaml,
    inst: Installation,
    con: duckdb.DuckDBPyConnection,
) -> ViewPlan | None:
    loc = ("sources", view_name)
    catalog = inst.catalog
    if catalog is None:
        return None
    spec = catalog.sources.get(view.from_)
    if spec is None:
        known = ", ".join(sorted(catalog.sources)) or "(the catalog has no sources)"
        inst.problems.add(
            doc.problem(
                (*loc, "from"),
                f"unknown source '{view.from_}'.",
                f"use a source of catalog.yaml: {known}.",
            )
        )
        return None
    schema = _schema(view.from_, spec, inst, con, doc, (*loc, "from"))
    available = list(schema) if schema is not None else list(spec.columns)
    column_problems = _column_problems(view_name, view, spec, available, doc)
    inst.problems.extend(column_problems)
    ok = not column_problems
    where_sql = None
    if view.where is not None:
        try:
            where_sql = normalize_filter(view.where, available)
        except RowFilterError as exc:
            ok = False
            inst.problems.add(doc.problem((*loc, "where"), str(exc), exc.fix))
        else:
            if schema is not None and not _filter_is_boolean(
                con, inst.sources[view.from_], where_sql, doc, loc, inst
            ):
                ok = False
    if schema is not None and ok:
        _warn_personal_data(view_name, view, spec, inst.sources[view.from_], con, doc, inst)
    if not ok:
        return None
    return ViewPlan(
        dossier.id,
        view_name,
        view.from_,
        spec,
        tuple(view.columns),
        tuple(view.pseudonymize),
        where_sql,
    )


def _column_problems(
    view_name: str, view: ViewSpec, spec: SourceSpec, available: list[str], doc: LocatedYaml
) -> list[Problem]:
    """Unknown columns, identifiers kept raw, pseudonymised columns not kept.

    Names must match the source exactly (case included), so a kept 'BSN' can never slip past
    the catalog's declaration of 'bsn' as an identifier.
    """
    loc = ("sources", view_name)
    problems = []
    for index, column in enumerate(view.columns):
        if column not in available:
            problems.append(
                doc.problem(
                    (*loc, "columns", index),
                    f"unknown column '{column}' in source '{view.from_}'.",
                    f"use one of: {', '.join(available)}.",
                )
            )
        elif spec.kind_of(column) == "identifier" and column not in view.pseudonymize:
            problems.append(
                doc.problem(
                    (*loc, "columns", index),
                    f"'{column}' is an identifier (catalog.yaml) and is kept without "
                    "pseudonymisation.",
                    f"add '{column}' to {view_name}.pseudonymize, or drop it from columns.",
                )
            )
    for index, column in enumerate(view.pseudonymize):
        if column not in view.columns:
            problems.append(
                doc.problem(
                    (*loc, "pseudonymize", index),
                    f"'{column}' is listed under pseudonymize but is not kept.",
                    f"add '{column}' to columns, or remove it from pseudonymize.",
                )
            )
    return problems


def _schema(
    name: str,
    spec: SourceSpec,
    inst: Installation,
    con: duckdb.DuckDBPyConnection,
    doc: LocatedYaml,
    loc: tuple[str, ...],
) -> dict[str, str] | None:
    try:
        if name not in inst.sources:
            inst.sources[name] = locate(inst.home, name, spec)
        return read_schema(con, inst.sources[name])
    except SourceUnavailable as exc:
        inst.problems.add(
            doc.problem(
                loc,
                f"{exc}.",
                f"fix the location of '{name}' in catalog.yaml, or make its files readable.",
            )
        )
        inst.sources.pop(name, None)
        return None


def _filter_is_boolean(
    con: duckdb.DuckDBPyConnection,
    source: SourceFiles,
    where_sql: str,
    doc: LocatedYaml,
    loc: tuple[str, ...],
    inst: Installation,
) -> bool:
    try:
        rows = con.execute(
            f"DESCRIBE SELECT ({where_sql}) AS f FROM {source.scan_sql()}"
        ).fetchall()
    except duckdb.Error as exc:
        first = str(exc).splitlines()[0]
        inst.problems.add(
            doc.problem(
                (*loc, "where"),
                f"the row filter does not work on the source's data ({first}).",
                "compare columns with values of their own type.",
            )
        )
        return False
    if rows[0][1] != "BOOLEAN":
        inst.problems.add(
            doc.problem(
                (*loc, "where"),
                f"the row filter gives a {rows[0][1]}, not true or false.",
                "write a comparison.",
            )
        )
        return False
    return True


def _warn_personal_data(
    view_name: str,
    view: ViewSpec,
    spec: SourceSpec,
    source: SourceFiles,
    con: duckdb.DuckDBPyConnection,
    doc: LocatedYaml,
    inst: Installation,
) -> None:
    undeclared = [c for c in view.columns if c not in spec.columns]
    if not undeclared:
        return
    quoted = ", ".join(f'"{c}"' for c in undeclared)
    sample: list[tuple[Any, ...]] = []
    if inst.sample_values:
        try:
            sample = con.execute(
                f"SELECT {quoted} FROM {source.scan_sql()} "
                f"USING SAMPLE reservoir({SAMPLE_ROWS} ROWS) REPEATABLE (7)"
            ).fetchall()
        except duckdb.Error:
            sample = []
    for index, column in enumerate(undeclared):
        by_values = value_hint(row[index] for row in sample)
        by_name = name_hint(column)
        if not (by_values or by_name):
            continue
        reason = (
            f"its values look like {by_values}"
            if by_values
            else f"its name suggests personal data ('{by_name}')"
        )
        inst.problems.add(
            doc.problem(
                ("sources", view_name, "columns", view.columns.index(column)),
                f"'{column}' of source '{view.from_}' is not described in catalog.yaml "
                f"and {reason}.",
                f"ask the steward of '{view.from_}' to declare it in catalog.yaml (kind identifier "
                "or quasi-identifier), or drop it from columns.",
                severity="warning",
            )
        )


# ---------------------------------------------------------------- pydantic -> Problem
