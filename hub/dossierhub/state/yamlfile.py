"""YAML loading that remembers where each value was written, so errors can name the line."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from dossierhub.state.problems import Problem, Problems, RefusedError

ModelT = TypeVar("ModelT", bound=BaseModel)

Loc = tuple[str | int, ...]

MAX_BYTES = 1024 * 1024
"""Manifests, catalog and settings are a few kilobytes; anything past this is a mistake or an
attack, and is refused before it is parsed."""

MAX_DEPTH = 64
"""Nesting deeper than this is refused: PyYAML composes recursively, so a file of a few thousand
'[' would end in a RecursionError instead of a refusal."""

_OPENS = (
    yaml.BlockMappingStartToken,
    yaml.BlockSequenceStartToken,
    yaml.FlowMappingStartToken,
    yaml.FlowSequenceStartToken,
)
_CLOSES = (yaml.BlockEndToken, yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)
_SHARING = {yaml.AnchorToken: "an anchor (&name)", yaml.AliasToken: "an alias (*name)"}


class LocatedYaml:
    """A parsed YAML document plus the 1-based line of every key and list item in it."""

    def __init__(self, data: Any, lines: dict[Loc, int], display: str):
        self.data = data
        self.lines = lines
        self.display = display

    def line_of(self, loc: Loc) -> int | None:
        """The line of the deepest written prefix of `loc` (a missing key points at its parent)."""
        for end in range(len(loc), -1, -1):
            line = self.lines.get(tuple(loc[:end]))
            if line is not None:
                return line
        return None

    def problem(
        self, loc: Loc, message: str, fix: str = "", severity: Literal["error", "warning"] = "error"
    ) -> Problem:
        return Problem(
            file=self.display,
            field=format_loc(loc),
            message=message,
            fix=fix,
            line=self.line_of(loc),
            severity=severity,
        )


def format_loc(loc: Loc) -> str:
    """('sources', 'residents', 'columns', 2) -> 'sources.residents.columns[2]'."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text


def load_yaml(path: Path, display: str) -> LocatedYaml:
    """Parse one YAML file; malformed YAML, duplicate keys, anchors and aliases, oversized and
    too deeply nested files are refused with their line."""
    text = _read_text(path, display)
    try:
        _check_tokens(text, display)
        node, data = _compose(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise _refused(
            display,
            f"is not valid YAML: {exc.problem or exc.context or 'malformed YAML'}.",
            "correct the YAML syntax (indentation, quotes, colons).",
            mark.line + 1 if mark is not None else None,
        ) from None
    except yaml.YAMLError as exc:
        raise _refused(display, f"is not valid YAML: {exc}.", "") from None
    lines: dict[Loc, int] = {}
    duplicates: list[Problem] = []
    if node is not None:
        _walk(node, (), lines, duplicates, display)
    if duplicates:
        raise RefusedError(duplicates)
    return LocatedYaml(data, lines, display)


def _refused(display: str, message: str, fix: str, line: int | None = None) -> RefusedError:
    return RefusedError([Problem(display, "", message, fix, line)])


def _read_text(path: Path, display: str) -> str:
    """At most MAX_BYTES + 1 bytes are read, so a huge file (or /dev/zero) costs nothing."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
        if len(raw) > MAX_BYTES:
            raise _refused(
                display,
                f"is larger than {MAX_BYTES // (1024 * 1024)} MiB.",
                "keep the file to what it describes; none needs to be this large.",
            )
        return raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _refused(
            display,
            f"cannot be read ({exc.__class__.__name__}).",
            "make it a readable UTF-8 text file.",
        ) from None


def _check_tokens(text: str, display: str) -> None:
    """Refuse anchors, aliases and deep nesting from the token stream, before anything is
    composed: a few hundred bytes of aliases expand to billions of values ("billion laughs")
    once walked or validated."""
    depth = 0
    for token in yaml.scan(text, Loader=yaml.SafeLoader):
        line = token.start_mark.line + 1
        shared = _SHARING.get(type(token))
        if shared is not None:
            raise _refused(
                display,
                f"uses {shared}.",
                "write the value out in full; anchors and aliases are not accepted.",
                line,
            )
        if isinstance(token, _OPENS):
            depth += 1
            if depth > MAX_DEPTH:
                raise _refused(
                    display,
                    f"is nested more than {MAX_DEPTH} levels deep.",
                    "flatten it; no manifest, catalog or setting needs this depth.",
                    line,
                )
        elif isinstance(token, _CLOSES):
            depth -= 1


def _compose(text: str) -> tuple[yaml.Node | None, Any]:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        return node, loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()


def _walk(
    node: yaml.Node, loc: Loc, lines: dict[Loc, int], dups: list[Problem], display: str
) -> None:
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = (*loc, key)
            if key in seen:
                dups.append(
                    Problem(
                        display,
                        format_loc(child),
                        f"the key '{key}' is written twice.",
                        "keep one of them; YAML would silently use the last.",
                        key_node.start_mark.line + 1,
                    )
                )
                continue
            seen.add(key)
            lines[child] = key_node.start_mark.line + 1
            _walk(value_node, child, lines, dups, display)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = (*loc, index)
            lines[child] = item.start_mark.line + 1
            _walk(item, child, lines, dups, display)


# ---------------------------------------------------------------- into typed models


def parse_or_refuse(model: type[ModelT], doc: LocatedYaml) -> ModelT:
    """Validate a whole YAML document as `model`, or refuse with every problem located."""
    problems = Problems()
    result = parse_into(model, doc.data if doc.data is not None else {}, doc, problems)
    if result is None:
        raise RefusedError(problems.errors)
    return result


def parse_into(
    model: type[ModelT], data: Any, doc: LocatedYaml, problems: Problems
) -> ModelT | None:
    """`data` (read from `doc`) as `model`, or None with every problem added, located."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            loc = tuple(error["loc"])
            problems.add(doc.problem(loc, *_describe(model, error)))
        return None


def _describe(model: type[BaseModel], error: Any) -> tuple[str, str]:
    loc, kind, given = tuple(error["loc"]), error["type"], error.get("input")
    name = loc[-1] if loc else ""
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, loc[:-1])
        return (
            f"unknown key '{name}'.",
            f"remove it or correct its spelling; allowed here: {', '.join(allowed)}."
            if allowed
            else "remove it.",
        )
    if kind == "secret":  # the value may hold a password (settings.check_db_url)
        return (f"{error['msg']}.", "")
    if kind == "missing":
        return (f"the required key '{name}' is missing.", f"add '{name}'.")
    if kind == "string_pattern_mismatch":
        if "members" in loc:
            return (
                f"'{given}' is not a valid login name.",
                "use lowercase letters, digits, '.', '_' and '-'.",
            )
        return (
            f"'{given}' is not a valid name.",
            "use letters, digits and '_', starting with a letter or '_'.",
        )
    if kind == "too_short" and name in ("sources", "columns"):
        return (f"'{name}' is empty.", f"list at least one entry under '{name}'.")
    message = error["msg"].removeprefix("Value error, ")
    if name == "expires":
        return (
            f"{message.rstrip('.')} (found {given!r}).",
            "write the last usable day as YYYY-MM-DD.",
        )
    return (f"{message.rstrip('.')} (found {given!r}).", "")


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys a model accepts at `loc`; mapping keys (view names) are stepped over."""
    current: Any = model
    skip = False
    for part in loc:
        if skip:
            skip = False
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        fields = {(f.alias or n): f for n, f in current.model_fields.items()}
        info = fields.get(str(part))
        if info is None:
            return []
        current, skip = _inner_model(info.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or n for n, f in current.model_fields.items()]
    return []


def _inner_model(annotation: Any) -> tuple[Any, bool]:
    """(model inside, whether a mapping key comes first)."""
    args = getattr(annotation, "__args__", ())
    if args and getattr(annotation, "__origin__", None) is dict:
        return args[1], True
    return annotation, False
