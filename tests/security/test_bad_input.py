"""Careless or hostile catalogs and manifests are refused with one located line, never a hang,
a traceback or a forged line of output; nothing is applied."""

from __future__ import annotations

import json
import resource
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dossierhub.portal import Person, templates_for
from dossierhub.state.home import Home
from dossierhub.state.problems import RefusedError

from helpers import DOSSIERHUB, read_yaml, run_cli, write_yaml

GIB = 1024**3
NO_ALIASES = "Fix: write the value out in full; anchors and aliases are not accepted."

# "billion laughs": nine lists of nine references to the list before, 9**9 values in 407 bytes
LAUGHS = "id: laughs\na: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{name}: &{name} [{', '.join(['*' + before] * 9)}]\n"
    for before, name in zip("abcdefgh", "bcdefghi", strict=True)
)


def edit_manifest(home: Path, change: Callable[[dict], object]) -> None:
    path = home / "dossiers" / "armoede.yaml"
    data = read_yaml(path)
    change(data)
    write_yaml(path, data)


def append(path: Path, text: str) -> int:
    """Append `text`; the line number its first line gets."""
    before = path.read_text()
    path.write_text(before + text)
    return len(before.splitlines()) + 1


def line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def assert_refused(home: Path, *expected: str) -> str:
    """validate and apply both exit 1 naming the problem; apply builds nothing; both are
    recorded as refused. Returns validate's stderr."""
    outputs = []
    for command in ("validate", "apply"):
        result = run_cli(home, command)
        assert result.exit_code == 1, (command, result.stdout, result.stderr)
        for text in expected:
            assert text in result.stderr, (command, text, result.stderr)
        assert "Traceback" not in result.stderr
        outputs.append(result.stderr)
    assert not (home / "extracts" / "armoede").exists()
    assert not (home / "hub" / "directory.json").exists()
    log = (home / "audit" / "audit.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in log]
    assert [r["action"] for r in records[-2:]] == ["validate.refused", "apply.refused"]
    return outputs[0]


def validate_confined(home: Path, seconds: float) -> tuple[subprocess.CompletedProcess[str], float]:
    """`dossierhub validate` as a process with 2 GiB of address space and a deadline, so an
    expanding bomb fails the test instead of the machine."""

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 * GIB, 2 * GIB))

    start = time.monotonic()
    result = subprocess.run(
        [DOSSIERHUB, "--home", str(home), "validate"],
        capture_output=True,
        text=True,
        timeout=seconds,
        preexec_fn=limit_memory,
        check=False,
    )
    return result, time.monotonic() - start


def test_alias_bomb_is_refused_within_seconds(home: Path) -> None:
    assert len(LAUGHS.encode()) < 510
    (home / "dossiers" / "laughs.yaml").write_text(LAUGHS)
    result, seconds = validate_confined(home, 30)
    assert result.returncode == 1, result.stderr
    assert seconds < 10
    assert f"dossiers/laughs.yaml, line 2: uses an anchor (&name). {NO_ALIASES}" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("relative", "text", "expected"),
    [
        ("catalog.yaml", "defaults: &steward {steward: BRP team}\n", "uses an anchor (&name)."),
        ("dossiers/armoede.yaml", "notes: *nothing\n", "uses an alias (*name)."),
    ],
)
def test_anchors_and_aliases_are_refused(
    home: Path, relative: str, text: str, expected: str
) -> None:
    line = append(home / relative, text)
    assert_refused(home, f"{relative}, line {line}: {expected} {NO_ALIASES}")


@pytest.mark.parametrize("relative", ["catalog.yaml", "dossiers/armoede.yaml"])
def test_oversized_file_is_refused(home: Path, relative: str) -> None:
    append(home / relative, "# " + "padding " * 140_000 + "\n")
    assert_refused(home, f"{relative}: is larger than 1 MiB.")


def test_deeply_nested_yaml_is_refused(home: Path) -> None:
    line = append(home / "dossiers" / "armoede.yaml", "notes: " + "[" * 5000 + "]" * 5000 + "\n")
    assert_refused(home, f"dossiers/armoede.yaml, line {line}: is nested more than 64 levels deep.")


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ('"unterminated', "the row filter cannot be read as SQL"),
        ("(" * 400 + "birth_year > 1" + ")" * 400, "the row filter is nested too deeply."),
        ("NOT " * 2000 + "birth_year > 1", "the row filter is nested too deeply."),
    ],
    ids=["unterminated identifier", "parentheses", "NOT"],
)
def test_unreadable_row_filter_is_a_located_problem(home: Path, where: str, expected: str) -> None:
    edit_manifest(home, lambda d: d["sources"]["residents"].update(where=where))
    line = line_of(home / "dossiers" / "armoede.yaml", "where:")  # residents come first
    assert_refused(home, f"armoede.yaml, line {line}, sources.residents.where: {expected}", "Fix:")


def test_dossier_id_with_a_trailing_newline_is_refused(home: Path) -> None:
    """`^...$` lets Python's re.match accept "armoede\\n"; the file name may carry it too."""
    data = read_yaml(home / "dossiers" / "armoede.yaml")
    (home / "dossiers" / "armoede.yaml").unlink()
    data["id"] = "armoede\n"
    write_yaml(home / "dossiers" / "armoede\n.yaml", data)
    assert_refused(home, "line 1, id: the id 'armoede\\n' is not valid.")


def test_workspace_account_cannot_be_a_member(home: Path) -> None:
    edit_manifest(home, lambda d: d["members"]["viewer"].append("dossier-mobiliteit"))
    line = line_of(home / "dossiers" / "armoede.yaml", "dossier-mobiliteit")
    assert_refused(
        home,
        f"dossiers/armoede.yaml, line {line}, members.viewer[1]: 'dossier-mobiliteit' is a "
        "workspace account",
        "Fix: name people by their own login",
    )


def test_markup_and_newlines_in_a_key_are_shown_not_obeyed(home: Path) -> None:
    """Rich markup in a key crashed the output; a newline would forge a line of it."""
    edit_manifest(home, lambda d: d.update({"[/x]": 1, "y\nwarning: all is well": 2}))
    stderr = assert_refused(home, "unknown key '[/x]'", "unknown key 'y\\nwarning: all is well'")
    assert not any(line.startswith("warning: all is well") for line in stderr.splitlines())


def test_pages_read_manifests_with_the_same_refusals(home: Path) -> None:
    """The templates form reads the manifest after apply: an alias there is refused too."""
    assert run_cli(home, "apply").exit_code == 0
    line = append(home / "dossiers" / "armoede.yaml", "notes: &again [a, b]\nmore: *again\n")
    with pytest.raises(RefusedError) as caught:
        templates_for(Home(home), "armoede", Person("a.jansen"))
    expected = f"dossiers/armoede.yaml, line {line}: uses an anchor (&name). {NO_ALIASES}"
    assert str(caught.value) == expected
