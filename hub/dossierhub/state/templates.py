"""Report templates: built-in (dossier_templates/) and the installation's own (HOME/templates).

A template is a notebook with a papermill `parameters` cell. Its parameters are declared in the
notebook metadata under `dossierhub.parameters`; when not declared they are inferred from the
parameters cell as papermill does, so any papermill notebook is a template.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import nbformat

from dossierhub.state.home import Home

TYPES = ("str", "int", "float", "bool", "date")
NUMERIC = ("int", "float")


class TemplateError(ValueError):
    """A template or a parameter value that cannot be used; the message says why and where.

    `fields` maps a parameter name to what is wrong with its value, for forms that explain
    invalid input at the field."""

    def __init__(self, message: str, fields: dict[str, str] | None = None):
        super().__init__(message)
        self.fields = fields or {}


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str
    default: Any = None
    choices: tuple[Any, ...] | str | None = None  # a list, or "views"
    min: Any = None
    max: Any = None
    description: str = ""
    step: int | float | None = None  # values allowed: min + k * step (k * step without a min)


@dataclass(frozen=True)
class Template:
    name: str
    path: Path
    origin: str  # built-in | installation
    parameters: tuple[Parameter, ...]
    sha256: str
    views: tuple[str, ...] = ()
    timeout_seconds: int = 600
    title: str = ""


def builtin_dir() -> Path:
    """dossier_templates/: the checkout's in an editable install, else the wheel's copy."""
    checkout = Path(__file__).resolve().parents[3] / "dossier_templates"
    if checkout.is_dir():
        return checkout
    return Path(sys.prefix) / "share" / "dossierhub" / "templates"


def available(home: Home) -> dict[str, Path]:
    """Every template name -> file; the installation's own never shadow built-ins."""
    found: dict[str, Path] = {}
    for folder in (builtin_dir(), home.templates_dir):
        if folder.exists():
            for path in sorted(folder.glob("*.ipynb")):
                found.setdefault(path.stem, path)
    return found


def clashes(home: Home) -> list[str]:
    """Installation templates whose name a built-in already has (validate refuses these)."""
    if not home.templates_dir.exists():
        return []
    builtin = {p.stem for p in builtin_dir().glob("*.ipynb")} if builtin_dir().exists() else set()
    return sorted(p.stem for p in home.templates_dir.glob("*.ipynb") if p.stem in builtin)


def load_template(home: Home, name: str) -> Template:
    path = available(home).get(name)
    if path is None:
        raise TemplateError(
            f"there is no report template '{name}'; available: "
            f"{', '.join(sorted(available(home))) or 'none'}"
        )
    data = path.read_bytes()
    notebook = nbformat.reads(data.decode("utf-8"), as_version=4)
    meta = notebook.metadata.get("dossierhub", {})
    tagged = any("parameters" in c.metadata.get("tags", []) for c in notebook.cells)
    declared = meta.get("parameters")
    if declared is not None:  # without a tagged cell papermill injects them at the top
        parameters = tuple(_declared(name, p) for p in declared)
    elif not tagged:
        parameters = ()  # papermill runs a notebook without parameters as it is
    else:
        try:
            parameters = _inferred(path)
        except Exception as exc:  # papermill's inference on a cell it cannot parse
            raise TemplateError(
                f"template '{name}': its parameters cell cannot be read ({exc}); declare "
                "the parameters under dossierhub.parameters in the notebook metadata"
            ) from None
    origin = "built-in" if path.parent == builtin_dir() else "installation"
    return Template(
        name,
        path,
        origin,
        parameters,
        hashlib.sha256(data).hexdigest(),
        tuple(meta.get("views", [])),
        int(meta.get("timeout_seconds", 600)),
        str(notebook.metadata.get("title", name)),
    )


def _declared(template: str, raw: dict[str, Any]) -> Parameter:
    kind = raw.get("type", "str")
    if kind not in TYPES or "name" not in raw:
        raise TemplateError(
            f"template '{template}': parameter {raw!r} needs a name and a type "
            f"of {', '.join(TYPES)}"
        )
    choices = raw.get("choices")
    parameter = Parameter(
        raw["name"],
        kind,
        raw.get("default"),
        choices if isinstance(choices, str) else tuple(choices or ()) or None,
        raw.get("min"),
        raw.get("max"),
        raw.get("description", ""),
        raw.get("step"),
    )
    if parameter.step is not None:
        _check_step_declared(template, parameter)
    return parameter


def _check_step_declared(template: str, parameter: Parameter) -> None:
    """A step is a positive number on an int or float parameter (whole for an int), and the
    default lies on its grid: else every run that leaves the parameter out is refused."""
    step, where = parameter.step, f"template '{template}': parameter '{parameter.name}'"
    if parameter.type not in NUMERIC:
        raise TemplateError(
            f"{where} is a {parameter.type}: only int and float parameters take a step"
        )
    if (
        not isinstance(step, int | float)
        or isinstance(step, bool)
        or step <= 0
        or (parameter.type == "int" and not float(step).is_integer())
    ):
        raise TemplateError(
            f"{where} has the step {step!r}: a step is a positive "
            + ("whole number" if parameter.type == "int" else "number")
        )
    if parameter.default is not None:
        try:
            _check_step(parameter, step, parameter.default)
        except ValueError as exc:
            raise TemplateError(f"{where}: its default {exc}") from None


def _inferred(path: Path) -> tuple[Parameter, ...]:
    """As papermill infers them; a notebook saved without a kernel is read as Python, the
    language of the Dossier kernel it will run on."""
    from papermill.inspection import _infer_parameters
    from papermill.iorw import load_notebook_node

    notebook = load_notebook_node(str(path))  # papermill's own reading (it adds cell tags)
    names = {"str": "str", "int": "int", "float": "float", "bool": "bool"}
    parameters = []
    for found in _infer_parameters(notebook, name="python3", language="python"):
        default = _literal(found.default)
        # a type comment wins; else the type of the default value, as papermill would inject it
        kind = names.get(found.inferred_type_name) or names.get(type(default).__name__, "str")
        parameters.append(Parameter(found.name, kind, default, description=found.help or ""))
    return tuple(parameters)


def _literal(text: str) -> Any:
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def coerce(template: Template, raw: dict[str, str], views: list[str]) -> dict[str, Any]:
    """Typed, checked parameter values; every problem in one message, before any kernel."""
    known = {p.name: p for p in template.parameters}
    fields = {
        n: f"unknown parameter '{n}' (this template takes: {', '.join(known) or 'no parameters'})"
        for n in raw
        if n not in known
    }
    problems = list(fields.values())
    values: dict[str, Any] = {}
    for parameter in template.parameters:
        text = raw.get(parameter.name)
        try:
            value = _convert(parameter, text) if text is not None else parameter.default
            if parameter.type == "date" and isinstance(value, dt.date):
                value = value.isoformat()
            _check_finite(value)
            _check_range(parameter, value, views)
        except ValueError as exc:
            problems.append(f"parameter '{parameter.name}': {exc}")
            fields[parameter.name] = str(exc)
            continue
        values[parameter.name] = value
    if problems:
        raise TemplateError("; ".join(problems), fields)
    return values


def _convert(parameter: Parameter, text: str) -> Any:
    kind = parameter.type
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
        if kind == "bool":
            lowered = text.strip().lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return lowered in ("true", "1", "yes")
        if kind == "date":
            return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise ValueError(
            f"{text!r} is not a valid {kind}" + (" (write YYYY-MM-DD)" if kind == "date" else "")
        ) from None
    return text


def _check_finite(value: Any) -> None:
    """nan and inf are floats to Python, but no threshold or share: nan compares false with
    every bound and breaks the step grid, inf passes any minimum without one."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value!r} is not a finite number (write digits, e.g. 0.5)")


def _check_range(parameter: Parameter, value: Any, views: list[str]) -> None:
    choices = views if parameter.choices == "views" else parameter.choices
    if choices and value not in choices:
        raise ValueError(f"{value!r} is not one of {', '.join(map(str, choices))}")
    low, high = parameter.min, parameter.max
    if parameter.type == "date":
        low = str(low) if low is not None else None
        high = str(high) if high is not None else None
    if low is not None and value is not None and value < low:
        raise ValueError(f"{value!r} is below the minimum {low!r}")
    if high is not None and value is not None and value > high:
        raise ValueError(f"{value!r} is above the maximum {high!r}")
    if parameter.step is not None and value is not None:
        _check_step(parameter, parameter.step, value)


def _check_step(parameter: Parameter, step_size: int | float, value: int | float) -> None:
    """On the grid min + k * step (k * step without a min), in decimal arithmetic so that a
    step of 0.1 allows 0.3; the refusal names the nearest allowed values on either side."""
    base = _decimal(parameter.min if parameter.min is not None else 0)
    step = _decimal(step_size)
    offset = _decimal(value) - base
    if offset % step == 0:
        return
    below = base + (offset // step - (1 if offset < 0 else 0)) * step
    nearest = [v for v in (below, below + step) if _in_range(parameter, v)]
    grid = f"multiples of {_plain(step)}" + (
        f" from {_plain(base)}" if parameter.min is not None else ""
    )
    allowed = " and ".join(_plain(v) for v in nearest)
    raise ValueError(
        f"{value!r} is not on its step grid ({grid}); "
        + (f"the nearest allowed values are {allowed}" if len(nearest) > 1 else "")
        + (f"the nearest allowed value is {allowed}" if len(nearest) == 1 else "")
        + ("no value between its minimum and maximum is" if not nearest else "")
    )


def _decimal(number: int | float) -> Decimal:
    return Decimal(str(number))  # the number as written, not its binary approximation


def _plain(number: Decimal) -> str:
    return format(number.normalize(), "f")


def _in_range(parameter: Parameter, value: Decimal) -> bool:
    low, high = parameter.min, parameter.max
    return (low is None or value >= _decimal(low)) and (high is None or value <= _decimal(high))
