"""`publish(df, name, ...)`: hand a table to the report's output check.

Inside a report run ($DOSSIERHUB_RUN_DIR set) the table is written with the run; in a notebook
it only shows what the check would say. Every numeric column must be declared as a count, a
magnitude (with the largest contributions per cell, for the dominance rule) or an attribute,
so an author cannot forget to say what a number is.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import polars as pl

from .disclosure import CheckResult, check_table

NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def dossier_rules() -> tuple[dict[str, Any], set[str]]:
    """The dossier's disclosure rules and identifier columns, from its extracts' provenance."""
    catalog = os.environ.get("DOSSIER_CATALOG")
    if not catalog:
        return {}, set()
    try:
        provenance = json.loads((Path(catalog).parent / "provenance.json").read_text())
    except (OSError, ValueError):
        return {}, set()
    identifiers = {
        c for view in provenance.get("views", {}).values() for c in view.get("pseudonymized", [])
    }
    return provenance.get("disclosure", {}), identifiers


def publish(
    df: pl.DataFrame,
    name: str,
    *,
    counts: list[str] | tuple[str, ...] = (),
    magnitudes: dict[str, pl.Series | list[list[float]]] | None = None,
    attributes: list[str] | tuple[str, ...] = (),
) -> CheckResult:
    """Publish `df` as table `name`.

    counts: columns holding numbers of people or units (minimum cell count applies).
    magnitudes: column -> the largest contributions to each of its cells, in descending order
        (a list per row), for the dominance rule; the contributions are checked, not published.
    attributes: numeric columns that are neither (a year, a percentage of already-safe counts).
    """
    if not isinstance(df, pl.DataFrame):
        raise TypeError("publish() takes a Polars DataFrame")
    if not NAME.match(name):
        raise ValueError(
            f"publish(): the name {name!r} must be lowercase letters, digits and "
            "'_', starting with a letter"
        )
    magnitudes = magnitudes or {}
    declared = set(counts) | set(magnitudes) | set(attributes)
    missing = [c for c in declared if c not in df.columns]
    if missing:
        raise ValueError(f"publish({name!r}): no such column(s): {', '.join(missing)}")
    numeric = [c for c, t in df.schema.items() if t.is_numeric()]
    undeclared = [c for c in numeric if c not in declared]
    if undeclared:
        raise ValueError(
            f"publish({name!r}): say what the numeric column(s) {', '.join(undeclared)} are: "
            "counts=[...], magnitudes={column: largest_contributions} or attributes=[...]"
        )
    contributions = (
        pl.DataFrame({f"{c}__top": pl.Series(v) for c, v in magnitudes.items()})
        if magnitudes
        else None
    )
    meta = {
        "counts": list(counts),
        "magnitudes": {c: f"{c}__top" for c in magnitudes},
        "attributes": list(attributes),
    }
    rules, identifiers = dossier_rules()
    result = check_table(name, df, meta, rules, identifiers, contributions)
    run_dir = os.environ.get("DOSSIERHUB_RUN_DIR")
    if run_dir:
        folder = Path(run_dir) / "published"
        folder.mkdir(exist_ok=True)
        df.write_parquet(folder / f"{name}.parquet")
        if contributions is not None:
            contributions.write_parquet(folder / f"{name}.contributions.parquet")
        (folder / f"{name}.meta.json").write_text(json.dumps(meta))
    return result
