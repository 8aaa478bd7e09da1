"""Output checks for published tables: the rules of a dossier's `disclosure` (DESIGN.md).

Pure functions on Polars frames, used twice: by `publish()` in a notebook (so authors see the
verdict early) and by the hub on the run's copies (the verdict that counts).
"""

from __future__ import annotations

import io
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import polars as pl

PSEUDONYM = re.compile(r"^[0-9a-f]{32}$")
DEFAULT_RULES = {
    "min_count": 10,
    "dominance": {"n": 1, "k": 0.5},
    "max_rows": 5000,
    "max_bytes": 16_000_000,
}


@dataclass
class Finding:
    rule: str
    column: str | None
    message: str
    rows: list[int] = field(default_factory=list)


@dataclass
class CheckResult:
    table: str
    passed: bool
    findings: list[Finding]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def _repr_markdown_(self) -> str:
        if self.passed:
            return f"**{self.table}**: passes the output checks."
        items = "\n".join(f"- **{f.rule}**: {f.message}" for f in self.findings)
        return f"**{self.table}**: fails the output checks\n\n{items}"


def check_table(
    name: str,
    table: pl.DataFrame,
    meta: dict[str, Any],
    rules: dict[str, Any],
    identifier_columns: set[str],
    contributions: pl.DataFrame | None = None,
) -> CheckResult:
    """Every rule, every finding (not just the first)."""
    rules = {**DEFAULT_RULES, **(rules or {})}
    findings: list[Finding] = []
    if table.height > rules["max_rows"]:
        findings.append(
            Finding(
                "max_rows", None, f"{table.height} rows, more than the {rules['max_rows']} allowed"
            )
        )
    size = table_bytes(table)
    if size > rules["max_bytes"]:
        findings.append(
            Finding("max_bytes", None, f"{size} bytes, more than the {rules['max_bytes']} allowed")
        )
    for column in table.columns:
        if column in identifier_columns:
            findings.append(
                Finding(
                    "identifiers",
                    column,
                    f"column '{column}' is an identifier of the dossier's data",
                )
            )
        elif table.schema[column] == pl.String:
            values = table[column].drop_nulls()
            if values.len() and values.str.contains(PSEUDONYM.pattern).mean() >= 0.5:
                findings.append(
                    Finding("identifiers", column, f"column '{column}' holds pseudonyms")
                )
    minimum = rules["min_count"]
    for column in meta.get("counts", []):
        small = table.with_row_index("_row").filter(
            (pl.col(column) > 0) & (pl.col(column) < minimum)
        )
        if small.height:
            rows = small["_row"].to_list()
            findings.append(
                Finding(
                    "min_count",
                    column,
                    f"{len(rows)} cell(s) of '{column}' below {minimum} (rows {_rows(rows)})",
                    rows,
                )
            )
    if meta.get("magnitudes"):
        findings += _dominance(table, meta["magnitudes"], rules["dominance"], contributions)
    return CheckResult(name, not findings, findings)


def _dominance(
    table: pl.DataFrame,
    magnitudes: dict[str, str],
    rule: dict[str, Any],
    contributions: pl.DataFrame | None,
) -> list[Finding]:
    findings = []
    n, k = int(rule["n"]), float(rule["k"])
    for column, source in magnitudes.items():
        if contributions is None or source not in contributions.columns:
            findings.append(
                Finding(
                    "dominance",
                    column,
                    f"'{column}' is a magnitude without its largest contributions",
                )
            )
            continue
        top = contributions[source].list.head(n).list.sum()
        share = pl.DataFrame({"total": table[column], "top": top}).with_row_index("_row")
        bad = share.filter((pl.col("total") > 0) & (pl.col("top") / pl.col("total") > k))
        if bad.height:
            rows = bad["_row"].to_list()
            findings.append(
                Finding(
                    "dominance",
                    column,
                    f"{len(rows)} cell(s) of '{column}' "
                    f"where the {n} largest contributor(s) make up more than "
                    f"{k:.0%} (rows {_rows(rows)})",
                    rows,
                )
            )
    return findings


def table_bytes(table: pl.DataFrame) -> int:
    buffer = io.BytesIO()
    table.write_parquet(buffer)
    return buffer.tell()


def _rows(rows: list[int]) -> str:
    shown = ", ".join(str(r) for r in rows[:10])
    return shown + (f" and {len(rows) - 10} more" if len(rows) > 10 else "")


def suppress_small(table: pl.DataFrame, counts: list[str], min_count: int) -> pl.DataFrame:
    """Blank (NULL) count cells between 1 and min_count - 1, so the table passes."""
    return table.with_columns(
        pl.when((pl.col(c) > 0) & (pl.col(c) < min_count)).then(None).otherwise(pl.col(c)).alias(c)
        for c in counts
    )


def round_counts(table: pl.DataFrame, counts: list[str], base: int = 5) -> pl.DataFrame:
    """Round counts to a multiple of `base` (small cells still need suppress_small)."""
    return table.with_columns(
        ((pl.col(c) / base).round() * base).cast(pl.Int64).alias(c) for c in counts
    )
