"""YAML loading that remembers where each value was written, so errors can name the line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .problems import Problem, RefusedError

Loc = tuple[str | int, ...]


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

    def problem(self, loc: Loc, message: str, fix: str = "", severity: str = "error") -> Problem:
        return Problem(
            file=self.display,
            field=format_loc(loc),
            message=message,
            fix=fix,
            line=self.line_of(loc),
            severity=severity,  # type: ignore[arg-type]
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
    """Parse one YAML file; malformed YAML and duplicate keys are refused with their line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RefusedError(
            [
                Problem(
                    display,
                    "",
                    f"cannot be read ({exc.__class__.__name__}).",
                    "make it a readable UTF-8 text file.",
                )
            ]
        ) from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        reason = exc.problem or exc.context or "malformed YAML"
        raise RefusedError(
            [
                Problem(
                    display,
                    "",
                    f"is not valid YAML: {reason}.",
                    "correct the YAML syntax (indentation, quotes, colons).",
                    line,
                )
            ]
        ) from None
    except yaml.YAMLError as exc:
        raise RefusedError([Problem(display, "", f"is not valid YAML: {exc}.", "")]) from None
    finally:
        loader.dispose()
    lines: dict[Loc, int] = {}
    duplicates: list[Problem] = []
    if node is not None:
        _walk(node, (), lines, duplicates, display)
    if duplicates:
        raise RefusedError(duplicates)
    return LocatedYaml(data, lines, display)


def _walk(node: yaml.Node, loc: Loc, lines: dict[Loc, int], dups: list[Problem], display: str):
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
