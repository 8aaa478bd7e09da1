"""The extract provenance contract: what `provenance.json` in a dossier's extracts says, and the
names of the files beside it.

apply (dossierhub.data.extracts) writes one generation of HOME/extracts/<id>/ at a time:
`<view>.parquet` per approved view, `catalog.duckdb` and `provenance.json`. Both sides of the
hub/workspace wall read the provenance: the hub (portal, report runs, output checks, kernel pool)
and the workspace (publish(), the pseudonym check, the lab extension's panel). They all read it
here, through one typed model, so a field means the same thing everywhere and a malformed file
is refused with its name and the field, never half-read as "no rules" or "no identifiers".

Frozen dataclasses and a small strict reader rather than pydantic: this module loads in report
kernels and the workspace's server, where pydantic would add about 0.1 s to the first publish().

Older files still read: PROVENANCE_VERSION 1 had no `quasi_identifiers` per view, and files
from before the output checks had no `disclosure`; both read as empty. Unknown keys are
ignored, so a newer writer's additions do not break a reader of this version.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

CATALOG_FILE = "catalog.duckdb"
"""The DuckDB catalog: one view per approved source, reading its parquet file relatively."""
PROVENANCE_FILE = "provenance.json"
PARQUET_SUFFIX = ".parquet"
FORMAT_VERSION = 1
"""The extract files' format (parquet layout, pseudonym encoding): a change rebuilds every view."""
PROVENANCE_VERSION = 2
"""Raised when provenance.json gains a field (2: quasi_identifiers per view): the next apply
writes a new generation, its unchanged view files linked, not rebuilt."""

_T = TypeVar("_T")

DEFAULT_MIN_COUNT = 10
DEFAULT_DOMINANCE_N = 1
DEFAULT_DOMINANCE_K = 0.5
DEFAULT_MAX_ROWS = 1000
"""Aggregate tables (docs/output-checks.md)."""
DEFAULT_MAX_BYTES = 16_000_000
DEFAULT_RULES: Mapping[str, Any] = MappingProxyType(
    {
        "min_count": DEFAULT_MIN_COUNT,
        "dominance": MappingProxyType({"n": DEFAULT_DOMINANCE_N, "k": DEFAULT_DOMINANCE_K}),
        "max_rows": DEFAULT_MAX_ROWS,
        "max_bytes": DEFAULT_MAX_BYTES,
    }
)
"""The rules of a dossier whose manifest says nothing: the one source of the defaults
(dossierhub's Disclosure model takes its field defaults from the constants above;
dossier_kernel.disclosure applies them)."""


def disclosure_rules(rules: Mapping[str, Any] | None) -> dict[str, Any]:
    """A dossier's rules (provenance `disclosure`, as the manifest gives them) with the gaps
    filled from DEFAULT_RULES: the one merge, used by every judge of a table."""
    given = dict(rules or {})
    dominance = {**DEFAULT_RULES["dominance"], **(given.get("dominance") or {})}
    return {**DEFAULT_RULES, **given, "dominance": dominance}


def view_file(view: str) -> str:
    """The parquet file of `view` inside a generation."""
    return f"{view}{PARQUET_SUFFIX}"


class ProvenanceError(ValueError):
    """A provenance.json that is not what apply writes: names the file and the field."""

    def __init__(self, path: Path | str, where: str, problem: str) -> None:
        self.path, self.where, self.problem = str(path), where, problem
        super().__init__(
            f"{path}: {where} {problem}; the dossier's extracts cannot be trusted as they are "
            "(ask the admin to run `dossierhub apply`, which rebuilds them)"
        )


@dataclass(frozen=True)
class ViewProvenance:
    """One approved view as built: from which source, under which policy, how many rows."""

    source: str
    source_fingerprint: str
    policy_hash: str
    rows_in: int
    rows_out: int
    columns: tuple[str, ...]
    pseudonymized: tuple[str, ...]
    where: str | None
    file: str
    built_at: str
    sha256: str
    bytes: int
    quasi_identifiers: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExtractProvenance:
    """One generation of a dossier's extracts: the dossier as applied, and its views by name.

    `disclosure` is the dossier's output-check rules as the manifest gives them (dossierhub's
    Disclosure model); `rules()` fills its gaps from DEFAULT_RULES."""

    dossier: str
    title: str
    purpose: str
    expires: str
    generation: str
    built_at: str
    tool_version: str
    format: int
    policy_hash: str
    key_id: str
    views: Mapping[str, ViewProvenance]
    disclosure: Mapping[str, Any] = field(default_factory=dict)

    def rules(self) -> dict[str, Any]:
        """The output-check rules every judge of a run on this generation applies."""
        return disclosure_rules(self.disclosure)

    def identifier_columns(self) -> set[str]:
        """The pseudonymised columns of all views."""
        return {c for view in self.views.values() for c in view.pseudonymized}

    def to_json(self) -> str:
        """The file as apply writes it (indented, one trailing newline)."""
        return json.dumps(asdict(self), indent=2) + "\n"  # asdict recurses into the views

    @classmethod
    def from_json(cls, text: str, path: Path | str = PROVENANCE_FILE) -> ExtractProvenance:
        """Parse and check `text` (read from `path`, named in errors); ProvenanceError if it
        is not JSON or any field is missing or of the wrong type."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ProvenanceError(path, "the file", f"is not JSON ({exc})") from None
        reader = _Reader(path, data, "the file")
        views = reader.get("views", dict)
        if not all(isinstance(name, str) and name for name in views):
            raise ProvenanceError(path, "field views", "has a view without a name")
        return cls(
            dossier=reader.get("dossier", str),
            title=reader.get("title", str),
            purpose=reader.get("purpose", str),
            expires=_iso_date(reader, "expires"),
            generation=reader.get("generation", str),
            built_at=reader.get("built_at", str),
            tool_version=reader.get("tool_version", str),
            format=reader.get("format", int),
            policy_hash=reader.get("policy_hash", str),
            key_id=reader.get("key_id", str),
            views={name: _view(path, name, views[name]) for name in views},
            disclosure=reader.get("disclosure", dict, default={}),
        )


def read_provenance(folder: Path) -> ExtractProvenance:
    """The provenance.json of an extracts folder (one generation, or extracts/<id> through
    its stable link). OSError when there is none; ProvenanceError when it is malformed."""
    path = folder / PROVENANCE_FILE
    return ExtractProvenance.from_json(path.read_text(encoding="utf-8"), path)


# ---------------------------------------------------------------- the strict reader


class _Reader:
    """Fields of one JSON object, each checked for its type; errors name the field's path."""

    _MISSING = object()

    def __init__(self, path: Path | str, data: object, where: str) -> None:
        if not isinstance(data, dict):
            raise ProvenanceError(path, where, "is not a JSON object")
        self.path, self.data, self.prefix = path, data, "" if where == "the file" else where + "."

    def get(self, name: str, kind: type[_T], default: object = _MISSING) -> _T:
        value = self.data.get(name, self._MISSING)
        if value is self._MISSING:
            if default is self._MISSING:
                raise ProvenanceError(self.path, f"field {self.prefix}{name}", "is missing")
            return default  # type: ignore[return-value]  # each caller's default is a `kind`
        if kind is int and isinstance(value, bool):  # JSON true is not a count
            raise ProvenanceError(self.path, f"field {self.prefix}{name}", "should be an integer")
        if not isinstance(value, kind):
            article = "an" if kind.__name__[0] in "aeiou" else "a"
            expected = {"str": "text", "int": "an integer", "dict": "an object"}.get(
                kind.__name__, f"{article} {kind.__name__}"
            )
            found = type(value).__name__ if value is not None else "null"
            raise ProvenanceError(
                self.path, f"field {self.prefix}{name}", f"should be {expected}, not {found}"
            )
        return value

    def names(self, name: str, default: object = _MISSING) -> tuple[str, ...]:
        value = self.get(name, list, default)
        if not all(isinstance(item, str) for item in value):
            raise ProvenanceError(self.path, f"field {self.prefix}{name}", "should list names")
        return tuple(value)


def _view(path: Path | str, name: str, data: object) -> ViewProvenance:
    reader = _Reader(path, data, f"views.{name}")
    where = reader.data.get("where")
    if where is not None and not isinstance(where, str):
        raise ProvenanceError(path, f"field views.{name}.where", "should be text or null")
    file = reader.get("file", str)
    if "/" in file or file.startswith(".") or not file.endswith(PARQUET_SUFFIX):
        # readers open it inside the generation: a path elsewhere is never followed
        raise ProvenanceError(
            path, f"field views.{name}.file", f"should name a parquet file beside it, not {file!r}"
        )
    return ViewProvenance(
        source=reader.get("source", str),
        source_fingerprint=reader.get("source_fingerprint", str),
        policy_hash=reader.get("policy_hash", str),
        rows_in=reader.get("rows_in", int),
        rows_out=reader.get("rows_out", int),
        columns=reader.names("columns"),
        pseudonymized=reader.names("pseudonymized"),
        where=where,
        file=file,
        built_at=reader.get("built_at", str),
        sha256=reader.get("sha256", str),
        bytes=reader.get("bytes", int),
        quasi_identifiers=reader.names("quasi_identifiers", default=[]),
    )


def _iso_date(reader: _Reader, name: str) -> str:
    value = reader.get(name, str)
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        raise ProvenanceError(
            reader.path, f"field {name}", f"should be a date such as 2027-06-30, not {value!r}"
        ) from None
    return value
