"""Typed models of catalog.yaml and dossiers/<id>.yaml (docs/reference.md has every field).

Only shape and single-field rules live here; rules that need the catalog or the data
(unknown source or column, identifiers kept raw, the row filter) live in policy.py.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from dossier_kernel.expiry import expiry
from dossier_kernel.provenance import (
    DEFAULT_DOMINANCE_K,
    DEFAULT_DOMINANCE_N,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_ROWS,
    DEFAULT_MIN_COUNT,
)
from dossierhub.state.home import Home
from dossierhub.state.yamlfile import load_yaml, parse_or_refuse

# Python's `$` also matches before a final newline: checked with fullmatch, and anchored with
# \A and \Z so that a `.match` elsewhere cannot take a prefix either. (The pydantic patterns
# below run on pydantic-core's Rust regex, where `$` is the end of the text.)
DOSSIER_ID = re.compile(r"\A[a-z][a-z0-9-]{1,22}[a-z0-9]\Z")

Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")]
"""A source, view or column name: a plain SQL identifier, so it is quoted the same everywhere."""

Person = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]
"""A login name as the hub knows it (lowercase)."""

Kind = Literal["identifier", "quasi-identifier", "attribute"]
Classification = Literal["open", "internal", "confidential", "special"]


class Strict(BaseModel):
    """Unknown keys are refused: a misspelt key would otherwise be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _as_date(value: object) -> object:
    if isinstance(value, dt.datetime):
        raise ValueError("expires must be a date without a time, such as 2027-06-30")
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError("expires must be a date written as YYYY-MM-DD, such as 2027-06-30")


IsoDate = Annotated[dt.date, BeforeValidator(_as_date)]


# ---------------------------------------------------------------- catalog.yaml


class ColumnSpec(Strict):
    kind: Kind = "attribute"
    description: str = ""


class SourceSpec(Strict):
    title: str
    description: str = ""
    steward: str = ""
    classification: Classification = "internal"
    location: str = Field(min_length=1)
    format: Literal["parquet", "csv", "json"] | None = None
    columns: dict[Name, ColumnSpec] = Field(default_factory=dict)

    @property
    def file_format(self) -> str:
        """Declared format, else taken from the location's extension."""
        if self.format:
            return self.format
        lowered = self.location.lower()
        for ext, fmt in (
            (".parquet", "parquet"),
            (".csv", "csv"),
            (".tsv", "csv"),
            (".json", "json"),
            (".jsonl", "json"),
            (".ndjson", "json"),
        ):
            if lowered.endswith(ext) or lowered.endswith(ext + ".gz"):
                return fmt
        return "parquet"

    def kind_of(self, column: str) -> Kind:
        """A column the catalog does not describe counts as an attribute (docs/reference.md)."""
        spec = self.columns.get(column)
        if spec is None:  # the data's spelling may differ in case from the steward's
            spec = next((c for n, c in self.columns.items() if n.lower() == column.lower()), None)
        return spec.kind if spec else "attribute"


class Catalog(Strict):
    sources: dict[Name, SourceSpec] = Field(default_factory=dict)


# ---------------------------------------------------------------- dossiers/<id>.yaml


class ViewSpec(Strict):
    from_: Name = Field(alias="from")
    columns: list[Name] = Field(min_length=1)
    pseudonymize: list[Name] = Field(default_factory=list)
    where: str | None = None

    @model_validator(mode="after")
    def _no_repeats(self) -> ViewSpec:
        for field_name in ("columns", "pseudonymize"):
            values = getattr(self, field_name)
            repeated = sorted({v for v in values if values.count(v) > 1})
            if repeated:
                raise ValueError(f"{field_name} lists {', '.join(repeated)} more than once")
        return self


class Members(Strict):
    lead: list[Person] = Field(default_factory=list)
    analyst: list[Person] = Field(default_factory=list)
    viewer: list[Person] = Field(default_factory=list)
    # who has which role, and the workspace's hub user, are the directory's
    # (directory.DossierEntry.role_of, .hub_user): one answer, from what apply wrote


class Dominance(Strict):
    n: int = Field(default=DEFAULT_DOMINANCE_N, ge=1, le=10)
    k: float = Field(default=DEFAULT_DOMINANCE_K, gt=0, le=1)


class Disclosure(Strict):
    """A dossier's output-check rules; the defaults are the kernel's
    (dossier_kernel.provenance.DEFAULT_RULES), which the output checks apply."""

    min_count: int = Field(default=DEFAULT_MIN_COUNT, ge=1)
    dominance: Dominance = Field(default_factory=Dominance)
    max_rows: int = Field(default=DEFAULT_MAX_ROWS, ge=1)
    max_bytes: int = Field(default=DEFAULT_MAX_BYTES, ge=1)


MemorySize = Annotated[
    str, StringConstraints(pattern=r"^\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$")
]


class Limits(Strict):
    """What the workspace's Dossier kernel may use; defaults come from settings.yaml."""

    memory: MemorySize | None = None
    threads: int | None = Field(default=None, ge=1, le=256)


class Dossier(Strict):
    id: str
    title: str = Field(min_length=1)
    purpose: str = Field(min_length=1)
    legal_basis: str = Field(min_length=1)
    expires: IsoDate
    members: Members
    sources: dict[Name, ViewSpec] = Field(min_length=1)
    templates: list[Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")]] = Field(
        default_factory=list
    )
    disclosure: Disclosure = Field(default_factory=Disclosure)
    limits: Limits = Field(default_factory=Limits)

    def is_expired(self, today: dt.date | None = None) -> bool:
        return expiry(self.expires, today).expired


def read_dossier(home: Home, dossier_id: str) -> Dossier:
    """dossiers/<id>.yaml as the dossier model (its shape only, not checked against the
    catalog or the data: apply did that), or RefusedError saying what is wrong where."""
    display = f"dossiers/{dossier_id}.yaml"
    return parse_or_refuse(Dossier, load_yaml(home.manifest_file(dossier_id), display))
