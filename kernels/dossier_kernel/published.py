"""The published-files contract: what publish() and publish_chart() leave in a report run's
`published/` folder, and the one strict reader of it.

publish(df, name, ...) writes `<name>.parquet` (the table), `<name>.meta.json` (its
Declaration: which columns are counts, magnitudes, attributes; its title and column
descriptions) and, with magnitudes, `<name>.contributions.parquet`; publish_chart() writes
`<chart>.chart.json` (a ChartSpec). The hub copies these files (dossierhub.reports.collect),
checks them (reports/checks.py, differencing.py) and draws the viewer's report from them
(reports/airlock.py); the portal serves the tables. The kernel wrote them, and the kernel is
not trusted: every hub reader goes through `read_declaration` / `read_chart`, which refuse a
file that is not what the writer here makes (PublishedError, naming the file and the field),
so a hostile declaration fails its table's check instead of being read loosely or crashing
the run.

Frozen dataclasses and a small strict reader (like provenance.py) rather than pydantic: this
module loads with the first publish() in every report kernel. It imports nothing heavy.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PUBLISHED_DIR = "published"
"""The folder under a run's directory ($DOSSIERHUB_RUN_DIR) that publish() writes into."""
TABLE_SUFFIX = ".parquet"
CONTRIBUTIONS_SUFFIX = ".contributions.parquet"
DECLARATION_SUFFIX = ".meta.json"
CHART_SUFFIX = ".chart.json"
SUFFIXES = (TABLE_SUFFIX, CONTRIBUTIONS_SUFFIX, DECLARATION_SUFFIX, CHART_SUFFIX)

NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
"""A table's or chart's name: also part of its file names and of the CSV's address."""
PUBLISHED_FILE = re.compile(
    r"[a-z][a-z0-9_]{0,62}("
    + "|".join(re.escape(s) for s in sorted(SUFFIXES, key=len, reverse=True))
    + ")"
)
"""A file name publish() or publish_chart() can write (fullmatch)."""

TEXT_LIMIT = 200
"""Titles, labels and descriptions: a caption, not a channel for data."""
CHART_KINDS = ("bar", "barh", "line")
CHART_CAPTIONS = ("title", "x_label", "y_label")
"""A chart's texts a viewer reads (besides its name): checked with its table's."""
DECLARATION_BYTES = 64 * 1024
"""A declaration larger than this was not written by publish() (at most ~1000 columns' names
and descriptions would need it): refused before it is parsed."""
CHART_BYTES = 16 * 1024


def table_file(name: str) -> str:
    return f"{name}{TABLE_SUFFIX}"


def contributions_file(name: str) -> str:
    return f"{name}{CONTRIBUTIONS_SUFFIX}"


def declaration_file(name: str) -> str:
    return f"{name}{DECLARATION_SUFFIX}"


def chart_file(name: str) -> str:
    return f"{name}{CHART_SUFFIX}"


def is_table_file(file: str) -> bool:
    """`<name>.parquet` of a table (not its contributions)."""
    return file.endswith(TABLE_SUFFIX) and not file.endswith(CONTRIBUTIONS_SUFFIX)


def names_with(files: set[str] | list[str], suffix: str) -> set[str]:
    """The table or chart names among `files` with `suffix` (TABLE_SUFFIX: tables only)."""
    if suffix == TABLE_SUFFIX:
        return {f.removesuffix(suffix) for f in files if is_table_file(f)}
    return {f.removesuffix(suffix) for f in files if f.endswith(suffix)}


class PublishedError(ValueError):
    """A published file that is not what publish() / publish_chart() write: names the file
    and the field (never the value: it may be what must not be shown)."""

    def __init__(self, path: Path | str, where: str, problem: str) -> None:
        self.path, self.where, self.problem = str(path), where, problem
        super().__init__(f"{Path(path).name}: {where} {problem}")


def short_text(value: Any, what: str) -> str:
    """A title, label or description as the author gave it; ValueError when it is not a short
    string (the hub reads these from files the kernel wrote)."""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be text, not {type(value).__name__}")
    if len(value) > TEXT_LIMIT:
        raise ValueError(f"{what} is {len(value)} characters long (at most {TEXT_LIMIT})")
    return value


# ---------------------------------------------------------------- the declaration


@dataclass(frozen=True)
class Declaration:
    """`<table>.meta.json`: what the author says each numeric column is, and the captions.

    magnitudes maps a column to the column of its largest contributions in the table's
    `.contributions.parquet` (`<column>__top`)."""

    counts: tuple[str, ...] = ()
    magnitudes: Mapping[str, str] = field(default_factory=dict)
    attributes: tuple[str, ...] = ()
    title: str | None = None
    descriptions: Mapping[str, str] = field(default_factory=dict)

    def as_meta(self) -> dict[str, Any]:
        """The JSON object (what the checks and the table's drawing read)."""
        meta: dict[str, Any] = {
            "counts": list(self.counts),
            "magnitudes": dict(self.magnitudes),
            "attributes": list(self.attributes),
        }
        if self.title is not None:
            meta["title"] = self.title
        if self.descriptions:
            meta["descriptions"] = dict(self.descriptions)
        return meta

    def to_json(self) -> str:
        return json.dumps(self.as_meta())

    @classmethod
    def from_json(cls, text: str | bytes, path: Path | str) -> Declaration:
        """Parse and check; PublishedError naming `path` and the field otherwise."""
        data = _load(text, path, DECLARATION_BYTES)
        fields = _Fields(path, data)
        return cls(
            counts=fields.names("counts"),
            magnitudes=fields.text_map("magnitudes", limit=None),
            attributes=fields.names("attributes"),
            title=fields.text("title", required=False),
            descriptions=fields.text_map("descriptions", limit=TEXT_LIMIT),
        )


def magnitude_source(column: str) -> str:
    """The contributions column publish() writes for magnitude `column`."""
    return f"{column}__top"


def read_declaration(folder: Path, name: str) -> Declaration:
    """The declaration of table `name` in a published folder. OSError when there is none;
    PublishedError when it is not what publish() writes."""
    path = folder / declaration_file(name)
    return Declaration.from_json(_read(path, DECLARATION_BYTES), path)


# ---------------------------------------------------------------- the chart


@dataclass(frozen=True)
class ChartSpec:
    """`<chart>.chart.json`: which published table, which columns, which captions."""

    table: str
    x: str
    y: tuple[str, ...]
    kind: str = "bar"
    title: str | None = None
    x_label: str | None = None
    y_label: str | None = None

    def texts(self) -> dict[str, str]:
        """The captions it has, by key (title, x_label, y_label)."""
        found = {key: getattr(self, key) for key in CHART_CAPTIONS}
        return {key: text for key, text in found.items() if text is not None}

    def as_spec(self) -> dict[str, Any]:
        """The JSON object (what dossier_kernel.render draws)."""
        return {"table": self.table, "kind": self.kind, "x": self.x, "y": list(self.y)} | (
            self.texts()
        )

    def to_json(self) -> str:
        return json.dumps(self.as_spec())

    @classmethod
    def build(cls, table: str, kind: str, x: Any, y: Any, **texts: Any) -> ChartSpec:
        """A chart as publish_chart() is given it; ValueError naming what is wrong."""
        if kind not in CHART_KINDS:
            raise ValueError(f"chart kind {kind!r} is not one of {', '.join(CHART_KINDS)}")
        ys = [y] if isinstance(y, str) else list(y) if isinstance(y, (list, tuple)) else []
        if not ys or not all(isinstance(c, str) for c in [x, *ys]):
            raise ValueError("a chart needs x (a column name) and y (one or more column names)")
        captions = {
            key: short_text(value, f"the chart's {key}")
            for key, value in texts.items()
            if value is not None
        }
        return cls(table, x, tuple(ys), kind, **captions)

    @classmethod
    def from_json(cls, text: str | bytes, path: Path | str) -> ChartSpec:
        data = _load(text, path, CHART_BYTES)
        fields = _Fields(path, data)
        table = fields.text("table", limit=None)
        if not NAME.match(table):
            raise PublishedError(path, "field table", "is not a table's name")
        kind = fields.text("kind", required=False, limit=None) or "bar"
        if kind not in CHART_KINDS:
            raise PublishedError(path, "field kind", f"is not one of {', '.join(CHART_KINDS)}")
        y = data.get("y")
        ys = [y] if isinstance(y, str) else y
        if not isinstance(ys, list) or not ys or not all(isinstance(c, str) for c in ys):
            raise PublishedError(path, "field y", "should name one or more columns")
        return cls(
            table,
            fields.text("x", limit=None),
            tuple(ys),
            kind,
            title=fields.text("title", required=False),
            x_label=fields.text("x_label", required=False),
            y_label=fields.text("y_label", required=False),
        )


def read_chart(folder: Path, name: str) -> ChartSpec:
    """Chart `name` of a published folder; OSError when absent, PublishedError if malformed."""
    path = folder / chart_file(name)
    return ChartSpec.from_json(_read(path, CHART_BYTES), path)


# ---------------------------------------------------------------- the strict reader


def _read(path: Path, limit: int) -> bytes:
    with path.open("rb") as file:
        data = file.read(limit + 1)
    if len(data) > limit:
        raise PublishedError(path, "the file", f"is larger than {limit} bytes")
    return data


def _load(text: str | bytes, path: Path | str, limit: int) -> dict[str, Any]:
    if len(text) > limit:
        raise PublishedError(path, "the file", f"is larger than {limit} bytes")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise PublishedError(path, "the file", f"is not JSON ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise PublishedError(path, "the file", "is not a JSON object")
    return data


@dataclass(frozen=True)
class _Fields:
    path: Path | str
    data: dict[str, Any]

    def names(self, key: str) -> tuple[str, ...]:
        value = self.data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise PublishedError(self.path, f"field {key}", "should list column names")
        return tuple(value)

    def text(self, key: str, *, required: bool = True, limit: int | None = TEXT_LIMIT) -> Any:
        value = self.data.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, str):
            raise PublishedError(self.path, f"field {key}", "should be text")
        if limit is not None and len(value) > limit:
            raise PublishedError(self.path, f"field {key}", f"is longer than {limit} characters")
        return value

    def text_map(self, key: str, *, limit: int | None) -> dict[str, str]:
        value = self.data.get(key, {})
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise PublishedError(self.path, f"field {key}", "should map column names to text")
        if limit is not None and any(len(v) > limit for v in value.values()):
            raise PublishedError(self.path, f"field {key}", f"has a text over {limit} characters")
        return dict(value)
