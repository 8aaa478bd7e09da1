"""The output checks that count: the hub's verdict on a run's own copies of its published tables
(reports/<id>/<run>/published/), against the dossier's own extracts (docs/output-checks.md).

The kernel wrote those files, so nothing in them is trusted: a table without its declaration,
a declaration that is not what publish() writes, or a file that is not a table fails its check
rather than break the run or pass unseen. The rules themselves are dossier_kernel.disclosure
(the same code gives authors the early verdict in a notebook); what the hub adds is the
dossier's pseudonyms and quasi-identifier columns, read from the extracts the run used.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dossier_kernel.disclosure import FAIL, CheckResult, Finding, check_table, text_findings
from dossier_kernel.identifiers import DossierFacts
from dossier_kernel.provenance import ExtractProvenance
from dossierhub.data.generations import current, kept_generation
from dossierhub.state.home import Home, RunFolder

TABLE = ".parquet"
CONTRIBUTIONS = ".contributions.parquet"
DECLARATION = ".meta.json"
CHART = ".chart.json"
CHART_TEXTS = ("title", "x_label", "y_label")


def run_checks(
    home: Home, dossier_id: str, run: RunFolder, extracts: ExtractProvenance | None
) -> list[dict[str, Any]]:
    """One checks.json entry per published table: {table, passed, findings: [{rule, column,
    message, rows, severity}]}; a table passes when none of its findings has severity "fail".
    A chart's name, title and axis labels are checked with the table it draws (a chart passes
    exactly when its table does, airlock.chart_checks)."""
    published = run.published
    files = {p.name for p in published.iterdir()} if published.exists() else set()
    tables = {
        n.removesuffix(TABLE) for n in files if n.endswith(TABLE) and not n.endswith(CONTRIBUTIONS)
    }
    declared = {n.removesuffix(DECLARATION) for n in files if n.endswith(DECLARATION)}
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
    rules = dict(extracts.disclosure) if extracts else {}
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
    for file in sorted(n for n in files if n.endswith(CHART)):
        chart = file.removesuffix(CHART)
        try:
            spec = json.loads((published / file).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(spec, dict) or not isinstance(spec.get("table"), str):
            continue
        mine = texts.setdefault(spec["table"], {})
        which = f"chart {len(mine) // (len(CHART_TEXTS) + 1) + 1} of this table"
        mine[f"the name of {which}"] = chart
        for key in CHART_TEXTS:
            mine[f"the {key.replace('_', ' ')} of {which}"] = str(spec.get(key) or "")
    return texts


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

    meta = _declaration(published / f"{name}{DECLARATION}")
    if meta is None:
        return _refused(
            name, "its declaration is not what publish() writes: it could not be checked"
        )
    try:
        table = pl.read_parquet(published / f"{name}{TABLE}")
    except Exception:  # any parquet or Polars error: the kernel wrote something else
        return _refused(name, "the file is not a readable table: it could not be checked")
    contributions = None
    if (published / f"{name}{CONTRIBUTIONS}").exists():
        try:
            contributions = pl.read_parquet(published / f"{name}{CONTRIBUTIONS}")
        except Exception:  # unreadable contributions count as missing: dominance fails
            contributions = None
    return check_table(name, table, meta, rules, set(), contributions, facts=facts)


def _declaration(path: Path) -> dict[str, Any] | None:
    """meta.json as publish() writes it: {counts: [str], magnitudes: {str: str},
    attributes: [str]}; anything else is None."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict):
        return None
    lists = [meta.get("counts", []), meta.get("attributes", [])]
    magnitudes = meta.get("magnitudes", {})
    if not all(isinstance(v, list) and all(isinstance(c, str) for c in v) for v in lists):
        return None
    if not isinstance(magnitudes, dict) or not all(isinstance(v, str) for v in magnitudes.values()):
        return None
    return meta


def _refused(name: str, message: str) -> CheckResult:
    return CheckResult(name, False, [Finding("published", None, message)])
