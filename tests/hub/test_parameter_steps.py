"""Numeric template parameters with a declared step: a value off the grid is refused with the
nearest allowed values, a step that cannot work is refused when the template is read, and
validate points out numbers that have none."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from dossierhub.state.home import Home
from dossierhub.state.templates import TemplateError, coerce, load_template

from helpers import read_yaml, run_cli, write_yaml


def write_template(home: Path, name: str, parameters: list[dict]) -> None:
    book = new_notebook()
    book.metadata["dossierhub"] = {"parameters": parameters}
    cell = new_code_cell("\n".join(f"{p['name']} = {p.get('default')!r}" for p in parameters))
    cell.metadata["tags"] = ["parameters"]
    book.cells = [cell, new_code_cell("print('ran')")]
    (home / "templates").mkdir(parents=True, exist_ok=True)
    nbformat.write(book, home / "templates" / f"{name}.ipynb")


THRESHOLD = {
    "name": "low_income_threshold",
    "type": "int",
    "default": 26000,
    "min": 10000,
    "max": 60000,
    "step": 1000,
}


def values(home: Path, parameter: dict, raw: dict[str, str]) -> dict:
    write_template(home, "stepped", [parameter])
    return coerce(load_template(Home(home), "stepped"), raw, [])


def test_a_value_off_the_grid_is_refused_with_the_nearest_allowed_values(tmp_path: Path) -> None:
    assert values(tmp_path, THRESHOLD, {"low_income_threshold": "21000"}) == {
        "low_income_threshold": 21000
    }
    assert values(tmp_path, THRESHOLD, {}) == {"low_income_threshold": 26000}
    with pytest.raises(TemplateError) as refused:
        values(tmp_path, THRESHOLD, {"low_income_threshold": "20100"})
    assert str(refused.value) == (
        "parameter 'low_income_threshold': 20100 is not on its step grid (multiples of 1000 "
        "from 10000); the nearest allowed values are 20000 and 21000"
    )
    assert "20000 and 21000" in refused.value.fields["low_income_threshold"]
    # at the top of the range only one neighbour is allowed
    with pytest.raises(TemplateError, match=r"the nearest allowed value is 59000$"):
        values(tmp_path, {**THRESHOLD, "max": 59500}, {"low_income_threshold": "59400"})
    # the range is checked first: a value out of range is told so, not pointed to the grid
    with pytest.raises(TemplateError, match=r"above the maximum 60000$"):
        values(tmp_path, THRESHOLD, {"low_income_threshold": "60500"})


@pytest.mark.parametrize(
    ("parameter", "allowed", "refused", "message"),
    [
        (  # the grid starts at the minimum, not at 0
            {"name": "size", "type": "int", "default": 250, "min": 250, "step": 100},
            ["350", "1250"],
            "300",
            "300 is not on its step grid (multiples of 100 from 250); "
            "the nearest allowed values are 250 and 350",
        ),
        (  # without a minimum, multiples of the step, negative ones too
            {"name": "margin", "type": "float", "default": 0.5, "step": 0.5},
            ["1.5", "-2", "0"],
            "-0.7",
            "-0.7 is not on its step grid (multiples of 0.5); "
            "the nearest allowed values are -1 and -0.5",
        ),
        (  # decimal steps as written: 0.3 is three steps of 0.1
            {"name": "share", "type": "float", "default": 0.1, "min": 0, "max": 1, "step": 0.1},
            ["0.3", "0.7", "1"],
            "0.25",
            "0.25 is not on its step grid (multiples of 0.1 from 0); "
            "the nearest allowed values are 0.2 and 0.3",
        ),
    ],
)
def test_the_grid(
    tmp_path: Path, parameter: dict, allowed: list[str], refused: str, message: str
) -> None:
    for text in allowed:
        assert values(tmp_path, parameter, {parameter["name"]: text})
    with pytest.raises(TemplateError) as error:
        values(tmp_path, parameter, {parameter["name"]: refused})
    assert error.value.fields[parameter["name"]] == message


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"type": "str", "default": "x"}, "is a str: only int and float parameters take a step"),
        ({"step": -1000}, "has the step -1000: a step is a positive whole number"),
        ({"step": 0}, "has the step 0: a step is a positive whole number"),
        ({"step": 2.5}, "has the step 2.5: a step is a positive whole number"),
        ({"step": "1000"}, "has the step '1000': a step is a positive whole number"),
        ({"step": True}, "has the step True: a step is a positive whole number"),
        ({"default": 26500}, "its default 26500 is not on its step grid"),
    ],
)
def test_a_step_that_cannot_work_is_refused_when_the_template_is_read(
    tmp_path: Path, change: dict, message: str
) -> None:
    write_template(tmp_path, "stepped", [{**THRESHOLD, **change}])
    with pytest.raises(TemplateError) as error:
        load_template(Home(tmp_path), "stepped")
    assert str(error.value).startswith("template 'stepped': parameter 'low_income_threshold'")
    assert message in str(error.value)


def test_validate_refuses_a_broken_step_and_points_out_numbers_without_one(home: Path) -> None:
    write_template(home, "stepped", [THRESHOLD, {"name": "top", "type": "int", "default": 5}])
    write_template(home, "broken", [{**THRESHOLD, "step": -5}])
    manifest = read_yaml(home / "dossiers" / "armoede.yaml")
    manifest["templates"] = [*manifest["templates"], "stepped"]
    write_yaml(home / "dossiers" / "armoede.yaml", manifest)
    result = run_cli(home, "validate")
    assert result.exit_code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    about_stepped = [line for line in warnings if "template 'stepped'" in line]
    assert len(about_stepped) == 1 and "parameter 'top' (int) has no step" in about_stepped[0]
    assert "dossiers/armoede.yaml" in about_stepped[0] and "templates[2]" in about_stepped[0]
    manifest["templates"].append("broken")
    write_yaml(home / "dossiers" / "armoede.yaml", manifest)
    result = run_cli(home, "validate")
    assert result.exit_code == 1
    assert "templates[3]" in result.stderr
    assert "template 'broken': parameter 'low_income_threshold' has the step -5" in result.stderr


@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-inf", "Infinity"])
@pytest.mark.parametrize("step", [None, 0.1])
def test_a_float_parameter_refuses_nan_and_infinity(
    tmp_path: Path, text: str, step: float | None
) -> None:
    """nan is below no minimum and above no maximum, and broke the step grid with a
    decimal.InvalidOperation; inf passes a range without a maximum."""
    share = {"name": "share", "type": "float", "default": 0.5, "min": 0, "step": step}
    if step is None:
        del share["step"]
    with pytest.raises(TemplateError) as refused:
        values(tmp_path, share, {"share": text})
    assert str(refused.value).startswith("parameter 'share': ")
    assert "is not a finite number" in str(refused.value)
    assert values(tmp_path, share, {"share": "0.3"}) == {"share": 0.3}
