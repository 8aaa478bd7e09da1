"""The output checks that count: the hub's verdict on a run's own copies of its published tables
(reports/<id>/<run>/published/), against the dossier's own extracts (docs/output-checks.md).

The kernel wrote those files, so nothing in them is trusted: a table without its declaration,
a declaration that is not what publish() writes, or a file that is not a table fails its check
rather than break the run or pass unseen. The rules themselves are dossier_kernel.disclosure
(the same code gives authors the early verdict in a notebook); what the hub adds is the
dossier's pseudonyms and quasi-identifier columns, read from the extracts the run used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dossier_kernel.disclosure import FAIL, CheckResult, Finding, check_table, text_findings
from dossier_kernel.identifiers import DossierFacts
from dossier_kernel.provenance import ExtractProvenance, disclosure_rules, read_provenance
from dossier_kernel.published import (
    CHART_CAPTIONS,
    CHART_SUFFIX,
    DECLARATION_SUFFIX,
    TABLE_SUFFIX,
    PublishedError,
    contributions_file,
    names_with,
    read_chart,
    read_declaration,
    table_file,
)
from dossierhub.data.extracts import current_provenance
from dossierhub.data.generations import current, kept_generation
from dossierhub.state.home import Home, RunFolder


def run_checks(
    home: Home, dossier_id: str, run: RunFolder, extracts: ExtractProvenance | None
) -> list[dict[str, Any]]:
    """One checks.json entry per published table: {table, passed, findings: [{rule, column,
    message, rows, severity}]}; a table passes when none of its findings has severity "fail".
    A chart's name, title and axis labels are checked with the table it draws (a chart passes
    exactly when its table does, airlock.chart_checks)."""
    published = run.published
    files = {p.name for p in published.iterdir()} if published.exists() else set()
    tables = names_with(files, TABLE_SUFFIX)
    declared = names_with(files, DECLARATION_SUFFIX)
    results = [
        _refused(
            name,
            "not written by publish() (a table or its declaration is missing): it "
            "could not be checked",
        ).to_json()
        for name in sorted(tables ^ declared)
    ]
    if not tables & declared:
        return results
    facts = dossier_facts(home, dossier_id, extracts)
    rules = extracts.rules() if extracts else disclosure_rules(None)
    chart_texts = _chart_texts(published, files)
    for name in sorted(tables & declared):
        result = _check_one(published, name, rules, facts)
        result.findings += text_findings(chart_texts.get(name, {}), facts)
        result.passed = not any(f.severity == FAIL for f in result.findings)
        results.append(result.to_json())
    return results


def _chart_texts(published: Path, files: set[str]) -> dict[str, dict[str, str]]:
    """{table: {where: text}}: what viewers read of each chart drawn from a table. A chart file
    that is not a chart is left to airlock.chart_checks, which fails it."""
    texts: dict[str, dict[str, str]] = {}
    for chart in sorted(names_with(files, CHART_SUFFIX)):
        try:
            spec = read_chart(published, chart)
        except (OSError, PublishedError):
            continue
        mine = texts.setdefault(spec.table, {})
        which = f"chart {len(mine) // (len(CHART_CAPTIONS) + 1) + 1} of this table"
        mine[f"the name of {which}"] = chart
        captions = spec.texts()
        for key in CHART_CAPTIONS:
            mine[f"the {key.replace('_', ' ')} of {which}"] = captions.get(key, "")
    return texts


def run_rules(home: Home, dossier_id: str, generation: str | None) -> dict[str, Any]:
    """The disclosure rules a run is judged by, wherever it is judged (its checks, its drawing's
    max_rows, differencing at release): those of the extracts generation it read
    (`extracts_generation` of its record), so an apply that changes the rules after the run
    never judges it by two rule sets. Apply keeps the one generation before the current; a run
    older than that (or with no recorded generation) is judged by the current rules.
    ProvenanceError when that provenance is malformed."""
    base = home.extract_dir(dossier_id)
    kept = kept_generation(base, generation) if generation else None
    provenance = read_provenance(kept) if kept is not None else current_provenance(base)
    return provenance.rules() if provenance is not None else disclosure_rules(None)


def dossier_facts(home: Home, dossier_id: str, extracts: ExtractProvenance | None) -> DossierFacts:
    """The dossier's identifier and quasi-identifier columns and pseudonym files, from the
    generation of extracts the run read (apply keeps the one before the current), else the
    current one: pseudonyms change only with the data or the key."""
    base = home.extract_dir(dossier_id)
    kept = kept_generation(base, extracts.generation) if extracts else None
    return DossierFacts.from_extracts(kept or current(base), extracts)


def _check_one(
    published: Path, name: str, rules: dict[str, Any], facts: DossierFacts
) -> CheckResult:
    import polars as pl

    try:
        declaration = read_declaration(published, name)
    except (OSError, PublishedError) as exc:
        # the file's name and the field, never its content: the kernel wrote it
        return _refused(
            name, f"its declaration is not what publish() writes ({exc}): it could not be checked"
        )
    try:
        table = pl.read_parquet(published / table_file(name))
    except Exception:  # any parquet or Polars error: the kernel wrote something else
        return _refused(name, "the file is not a readable table: it could not be checked")
    contributions = None
    if (published / contributions_file(name)).exists():
        try:
            contributions = pl.read_parquet(published / contributions_file(name))
        except Exception:  # unreadable contributions count as missing: dominance fails
            contributions = None
    meta = declaration.as_meta()
    return check_table(name, table, meta, rules, set(), contributions, facts=facts)


def _refused(name: str, message: str) -> CheckResult:
    return CheckResult(name, False, [Finding("published", None, message)])
