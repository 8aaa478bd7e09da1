"""Refused input, said once and clearly: which file, field and YAML line, what, and the fix."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class Problem:
    """One thing wrong (error) or suspicious (warning) in the installation's input files."""

    file: str
    field: str
    message: str
    fix: str = ""
    line: int | None = None
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f", line {self.line}"
        if self.field:
            where += f", {self.field}"
        text = f"{where}: {self.message}"
        if self.fix:
            label = "Fix" if self.severity == "error" else "Hint"
            text += f" {label}: {self.fix}"
        return _one_line(text)


def _one_line(text: str) -> str:
    """Names and values in a message come from the input: a newline or terminal escape in them
    is shown escaped, so a hostile file cannot forge lines of output or drive the terminal."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


@dataclass
class Problems:
    """Everything found in one pass, so an admin fixes all of it at once rather than one per run."""

    items: list[Problem] = field(default_factory=list)

    def add(self, problem: Problem) -> None:
        self.items.append(problem)

    def extend(self, problems: list[Problem]) -> None:
        self.items.extend(problems)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.items if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.items if p.severity == "warning"]


class RefusedError(Exception):
    """Input the command refuses; nothing was changed. Carries every error found."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class ReportRefused(Exception):
    """The run or release is not allowed, or its input is wrong; nothing was started.

    `reason` sorts refusals for HTTP (not_found 404, forbidden 403, invalid 422, conflict 409);
    `fields` says what is wrong per input field (a parameter name, `template`, `justification`).
    """

    def __init__(
        self, message: str, *, reason: str = "invalid", fields: dict[str, str] | None = None
    ):
        super().__init__(message)
        self.reason = reason
        self.fields = fields or {}
