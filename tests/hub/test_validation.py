"""Every mistake in catalog or manifests is refused: file, field, line and fix; nothing changes."""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers import read_yaml, run_cli, tree_digest, write_yaml

Edit = Callable[[Path], None]


def manifest_edit(change: Callable[[dict], None]) -> Edit:
    def edit(home: Path) -> None:
        path = home / "dossiers" / "armoede.yaml"
        data = read_yaml(path)
        change(data)
        write_yaml(path, data)

    return edit


def view(data: dict, name: str = "residents") -> dict:
    return data["sources"][name]


def text_edit(relative: str, old: str, new: str) -> Edit:
    def edit(home: Path) -> None:
        path = home / relative
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new, 1))

    return edit


CASES: dict[str, tuple[Edit, list[str]]] = {
    "malformed yaml": (
        text_edit("dossiers/armoede.yaml", "title: Poverty", "title: [Poverty"),
        ["dossiers/armoede.yaml, line", "is not valid YAML", "Fix:"],
    ),
    "unknown key": (
        manifest_edit(lambda d: d.update(purpse="typo")),
        ["dossiers/armoede.yaml", "purpse", "unknown key 'purpse'", "allowed here: id, title"],
    ),
    "unknown key in a view": (
        manifest_edit(lambda d: view(d).update(colums=["bsn"])),
        ["sources.residents.colums", "unknown key 'colums'", "from, columns, pseudonymize"],
    ),
    "bad dossier id": (
        manifest_edit(lambda d: d.update(id="Armoede!")),
        ["dossiers/armoede.yaml, line 1, id", "is not valid", "lowercase letters"],
    ),
    "id differs from file name": (
        manifest_edit(lambda d: d.update(id="armoede-two")),
        ["id: the id 'armoede-two' differs from the file name", "armoede-two.yaml"],
    ),
    "duplicate view name": (
        text_edit("dossiers/armoede.yaml", "  households:\n", "  residents:\n"),
        ["sources.residents", "written twice"],
    ),
    "bad view name": (
        manifest_edit(lambda d: d["sources"].update({"two words": copy.deepcopy(view(d))})),
        ["sources.two words", "'two words' is not a valid name"],
    ),
    "unknown source": (
        manifest_edit(lambda d: view(d).update({"from": "residentz"})),
        ["sources.residents.from", "unknown source 'residentz'", "use a source of catalog.yaml"],
    ),
    "unknown column": (
        manifest_edit(lambda d: view(d)["columns"].append("income")),
        ["sources.residents.columns[5]", "unknown column 'income'", "use one of: bsn"],
    ),
    "column in other case": (
        manifest_edit(lambda d: view(d)["columns"].append("BSN")),
        ["sources.residents.columns[5]", "unknown column 'BSN'", "use one of: bsn"],
    ),
    "identifier kept raw": (
        manifest_edit(lambda d: view(d)["pseudonymize"].remove("household_id")),
        [
            "sources.residents.columns[1]",
            "'household_id' is an identifier",
            "add 'household_id' to residents.pseudonymize",
        ],
    ),
    "pseudonymize a column not kept": (
        manifest_edit(lambda d: view(d)["pseudonymize"].append("postcode")),
        [
            "sources.residents.pseudonymize[2]",
            "'postcode' is listed under pseudonymize but is not kept",
        ],
    ),
    "unknown member role": (
        manifest_edit(lambda d: d["members"].update(boss=["x.y"])),
        ["members.boss", "unknown key 'boss'", "allowed here: lead, analyst, viewer"],
    ),
    "person with a trailing newline": (
        manifest_edit(lambda d: d["members"]["analyst"].append("x.y\n")),
        ["members.analyst[2]", "'x.y\\n' is not a valid login name"],
    ),
    "view name with a trailing newline": (
        manifest_edit(lambda d: d["sources"].update({"extra\n": copy.deepcopy(view(d))})),
        ["sources.extra\\n", "'extra\\n' is not a valid name"],
    ),
    "workspace account as a lead": (
        manifest_edit(lambda d: d["members"]["lead"].append("dossier-armoede")),
        ["members.lead[2]", "'dossier-armoede' is a workspace account", "Fix: name people"],
    ),
    "person in two roles": (
        manifest_edit(lambda d: d["members"]["viewer"].append("b.devries")),
        ["members.viewer[1]", "'b.devries' is listed as analyst and as viewer"],
    ),
    "expires not a date": (
        manifest_edit(lambda d: d.update(expires="next summer")),
        ["expires", "YYYY-MM-DD", "found 'next summer'"],
    ),
    "where with a subquery": (
        manifest_edit(lambda d: view(d).update(where="bsn IN (SELECT bsn FROM residents)")),
        ["sources.residents.where", "subquery"],
    ),
    "where with several statements": (
        manifest_edit(lambda d: view(d).update(where="birth_year > 1900; DROP VIEW x")),
        ["sources.residents.where", "several statements"],
    ),
    "where with a file function": (
        manifest_edit(lambda d: view(d).update(where="read_csv('/etc/passwd') IS NOT NULL")),
        ["sources.residents.where", "read_csv", "not allowed"],
    ),
    "where with an unknown function": (
        manifest_edit(lambda d: view(d).update(where="getenv('HOME') = 'x'")),
        ["sources.residents.where", "getenv()", "use only these functions"],
    ),
    "where with a comment": (
        manifest_edit(lambda d: view(d).update(where="birth_year > 1900 -- all adults")),
        ["sources.residents.where", "comment"],
    ),
    "where on another column": (
        manifest_edit(lambda d: view(d).update(where="income > 10")),
        ["sources.residents.where", "'income', which the source does not have"],
    ),
    "where that is not a condition": (
        manifest_edit(lambda d: view(d).update(where="birth_year + 1")),
        ["sources.residents.where", "not a condition"],
    ),
    "where of the wrong type": (
        manifest_edit(lambda d: view(d).update(where="district > 5")),
        ["sources.residents.where", "does not work on the source's data"],
    ),
    "bad memory limit": (
        manifest_edit(lambda d: d.update(limits={"memory": "lots", "threads": 0})),
        ["limits.memory", "limits.threads"],
    ),
    "no lead": (
        manifest_edit(lambda d: d["members"].update(lead=[])),
        ["members.lead", "no lead"],
    ),
    "anchor in a manifest": (
        text_edit("dossiers/armoede.yaml", "lead: [a.jansen", "lead: &leads [a.jansen"),
        ["dossiers/armoede.yaml, line 7: uses an anchor (&name).", "anchors and aliases are not"],
    ),
    "catalog unknown kind": (
        text_edit("catalog.yaml", "bsn: {kind: identifier,", "bsn: {kind: secret,"),
        ["catalog.yaml, line", "sources.residents.columns.bsn.kind", "identifier"],
    ),
}


@pytest.fixture
def applied_copy(applied_home: Path, tmp_path: Path) -> Path:
    """A fresh copy of the module's applied HOME (its apply asserted there, once): each case
    starts from built extracts, as an admin's next mistake does, without building them again."""
    root = tmp_path / "home"
    shutil.copytree(applied_home, root, symlinks=True)
    return root


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_refused_and_nothing_changes(applied_copy: Path, case: str) -> None:
    home = applied_copy
    edit, expected = CASES[case]
    edit(home)
    before = tree_digest(home / "extracts", home / "dossiers", home / "hub", home / "raw")
    audit_before = len((home / "audit" / "audit.jsonl").read_text().splitlines())

    for command in ("validate", "apply"):
        result = run_cli(home, command)
        assert result.exit_code == 1, (case, result.stdout, result.stderr)
        for text in expected:
            assert text in result.stderr, (case, command, text, result.stderr)
        assert "Traceback" not in result.stderr

    assert tree_digest(home / "extracts", home / "dossiers", home / "hub", home / "raw") == before
    records = [
        json.loads(line)
        for line in (home / "audit" / "audit.jsonl").read_text().splitlines()[audit_before:]
    ]
    assert [r["action"] for r in records] == ["validate.refused", "apply.refused"]
    assert any(expected[0] in p for p in records[1]["details"]["problems"])
    assert run_cli(home, "audit", "verify").exit_code == 0


def test_missing_source_location_names_the_source(home: Path) -> None:
    assert run_cli(home, "apply").exit_code == 0
    before = tree_digest(home / "extracts")
    (home / "raw" / "benefit_payments.parquet").rename(home / "raw" / "moved.parquet")
    result = run_cli(home, "apply")
    assert result.exit_code == 1
    assert "source 'benefit_payments'" in result.stderr
    assert "raw/benefit_payments.parquet" in result.stderr and "does not exist" in result.stderr
    assert tree_digest(home / "extracts") == before


def test_unknown_dossier_id_on_the_command_line(home: Path) -> None:
    result = run_cli(home, "apply", "nosuch")
    assert result.exit_code == 1
    assert "dossiers/nosuch.yaml: does not exist" in result.stderr


def test_all_problems_are_reported_at_once(home: Path) -> None:
    manifest_edit(lambda d: (view(d)["columns"].append("income"), d["members"].update(boss=["x"])))(
        home
    )
    result = run_cli(home, "validate")
    assert result.exit_code == 1
    assert "unknown key 'boss'" in result.stderr or "unknown column 'income'" in result.stderr
    assert "error(s); nothing was changed" in result.stderr


UNDECLARED = {
    "contact": ["jan.jansen@example.nl", "p.pietersen@example.org", "info@buurt.nl"],
    "tel": ["020-1234567", "06 12345678", "+31612345678"],
    "home": ["1012 AB 15", "1055KL 3", "1102 CD 101"],
    "code": ["111222333", "123456782", "999999990"],
}


def test_undeclared_personal_data_is_warned_not_refused(home: Path) -> None:
    import polars as pl

    rows = 60
    pl.DataFrame(
        {
            "ref": list(range(rows)),
            "contact": [UNDECLARED["contact"][i % 3] for i in range(rows)],
            "tel": [UNDECLARED["tel"][i % 3] for i in range(rows)],
            "home": [UNDECLARED["home"][i % 3] for i in range(rows)],
            "code": [UNDECLARED["code"][i % 3] for i in range(rows)],
            "voornaam": ["Anna"] * rows,
            "score": [i % 5 for i in range(rows)],
        }
    ).write_parquet(home / "raw" / "signals.parquet")
    catalog = read_yaml(home / "catalog.yaml")
    catalog["sources"]["signals"] = {"title": "Signals", "location": "raw/signals.parquet"}
    write_yaml(home / "catalog.yaml", catalog)
    manifest_edit(
        lambda d: d["sources"].update(
            signals={
                "from": "signals",
                "columns": ["ref", "contact", "tel", "home", "code", "voornaam", "score"],
            }
        )
    )(home)
    result = run_cli(home, "validate")
    assert result.exit_code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    joined = "\n".join(warnings)
    assert "'contact'" in joined and "e-mail addresses" in joined
    assert "'tel'" in joined and "phone numbers" in joined
    assert "'home'" in joined and "postcode + house number" in joined
    assert "'code'" in joined and "BSN" in joined
    assert "'voornaam'" in joined and "name suggests personal data" in joined
    assert "'score'" not in joined and "'ref'" not in joined
    assert "sources.signals.columns[1]" in joined
    assert run_cli(home, "apply", "armoede").exit_code == 0


def test_python_patterns_match_whole_names() -> None:
    """Python's `$` matches before a final newline; ids are matched whole."""
    from dossierhub.state.models import DOSSIER_ID

    assert DOSSIER_ID.fullmatch("armoede")
    for bad in ("armoede\n", "armoede\nx", "\narmoede", "armoede "):
        assert DOSSIER_ID.fullmatch(bad) is None and DOSSIER_ID.match(bad) is None, repr(bad)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d["members"]["lead"].append("e.mulder\n"), "members.lead.2"),
        (lambda d: d["sources"].update({"residents\n": d["sources"].pop("residents")}), "sources"),
        (lambda d: d["sources"]["residents"]["columns"].append("bsn\n"), "columns"),
        (lambda d: d["templates"].append("district_profile\n"), "templates.2"),
        (lambda d: d.update(limits={"memory": "4GB\n"}), "limits.memory"),
    ],
)
def test_pydantic_patterns_refuse_a_trailing_newline(
    home: Path, change: Callable[[dict], object], field: str
) -> None:
    """pydantic-core's Rust regex ends `$` at the end of the text; this keeps it so."""
    from pydantic import ValidationError

    from dossierhub.state.models import Dossier

    data = read_yaml(home / "dossiers" / "armoede.yaml")
    Dossier.model_validate(data)
    change(data)
    with pytest.raises(ValidationError) as caught:
        Dossier.model_validate(data)
    assert any(field in ".".join(map(str, e["loc"])) for e in caught.value.errors())


def test_settings_refuse_anchors_too(home: Path) -> None:
    from dossierhub.state.home import Home
    from dossierhub.state.problems import RefusedError
    from dossierhub.state.settings import load_settings

    (home / "settings.yaml").write_text("hub: &hub {port: 8000}\nworkspaces: *hub\n")
    with pytest.raises(RefusedError) as caught:
        load_settings(Home(home))
    assert str(caught.value) == (
        "settings.yaml, line 1: uses an anchor (&name). Fix: write the value out in full; "
        "anchors and aliases are not accepted."
    )
