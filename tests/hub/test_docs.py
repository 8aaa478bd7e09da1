"""The docs are kept true by the code, as Datasette's test_docs does it: every fact the
reference states (HOME's files and their owners, the fields of catalog, manifests and settings,
the commands, their options and exit codes, the provenance and run record fields) is taken from
the code here and compared both ways, so a change to either side alone fails. Every name of
the code the docs mention must exist, every relative link must resolve, and no text points to
a document outside the repository."""

from __future__ import annotations

import ast
import html
import importlib
import inspect
import json
import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from dossierhub import cli
from dossierhub.reports.runs import start_run
from dossierhub.state.home import Home
from dossierhub.state.models import Catalog, Dossier
from dossierhub.state.settings import Settings

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "hub" / "dossierhub"
DOCS = REPO / "docs"
REFERENCE = DOCS / "reference.md"
README = REPO / "README.md"
# where a module path written in the docs may start: the repository, or the package folders
CODE_ROOTS = (REPO, PACKAGE, REPO / "kernels", REPO / "extensions")


# ---------------------------------------------------------------- reading markdown


def section(text: str, title: str) -> str:
    """The text under the heading `title` (any level), up to the next heading as high."""
    lines = text.splitlines()
    for start, line in enumerate(lines):
        match = re.fullmatch(r"(#+) (.*)", line)
        if match and match[2].strip() == title:
            level = len(match[1])
            end = next(
                (
                    i
                    for i in range(start + 1, len(lines))
                    if (m := re.match(r"(#+) ", lines[i])) and len(m[1]) <= level
                ),
                len(lines),
            )
            return "\n".join(lines[start + 1 : end])
    raise AssertionError(f"docs: no heading {title!r}")


def table(text: str) -> list[list[str]]:
    """The rows of the first table in `text`, without its header and separator."""
    rows, started = [], False
    for line in text.splitlines():
        if line.startswith("|"):
            started = True
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif started:
            break
    assert len(rows) > 2, "docs: expected a table with a header and rows"
    return rows[2:]


def quoted(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def reference(title: str) -> list[list[str]]:
    return table(section(REFERENCE.read_text(encoding="utf-8"), title))


def wildcard(key: str) -> str:
    """`sources.<view>.from` and `sources.<name>.from` are the same key."""
    return re.sub(r"<[^>]+>", "<>", key)


def documented_keys(title: str) -> dict[str, list[str]]:
    rows = reference(title)
    keys = {wildcard(quoted(row[0])[0]): row for row in rows}
    assert len(keys) == len(rows), f"docs/reference.md, {title}: a key is listed twice"
    return keys


def compare(what: str, in_code: set[str], in_docs: set[str]) -> None:
    missing, extra = sorted(in_code - in_docs), sorted(in_docs - in_code)
    assert not missing, f"docs/reference.md, {what}: not documented: {missing}"
    assert not extra, f"docs/reference.md, {what}: documented but not in the code: {extra}"


# ---------------------------------------------------------------- HOME


def _placeholder(parameter: str) -> str:
    """dossier_id -> id, run_id -> run: as the reference writes `Home.extract_dir(id)`."""
    return "id" if parameter == "dossier_id" else parameter.removesuffix("_id")


def home_paths(
    cls: type = Home, obj: object = None, label: str = "Home"
) -> dict[str, tuple[str, str]]:
    """`Home.name` (or `Home.name(id)`) -> (path relative to HOME, docstring), from the class.
    A member that returns an object of its own with paths (a run's folder) adds those as
    `Home.name(id, run).file`."""
    root = Path("/HOME")
    obj = Home(root) if obj is None else obj
    found = {}
    for name, member in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(member, property) and member.fget is not None:
            value, where, doc = getattr(obj, name), f"{label}.{name}", member.fget.__doc__
        elif inspect.isfunction(member) and member.__annotations__.get("return") not in (
            "str",
            "bool",
            "None",
        ):
            args = [_placeholder(p) for p in list(inspect.signature(member).parameters)[1:]]
            if not args:
                continue
            value = member(obj, *(f"<{a}>" for a in args))
            where, doc = f"{label}.{name}({', '.join(args)})", member.__doc__
        else:
            continue
        if isinstance(value, Path):
            found[where] = (str(value.relative_to(root)), doc or "")
        elif type(value).__module__ == Home.__module__:  # a folder with named files
            found |= home_paths(type(value), value, where)
    return found


def test_every_home_path_is_in_the_reference_with_the_owner_the_code_names() -> None:
    rows = {quoted(row[0])[0]: row for row in reference("HOME layout")}
    paths = home_paths()
    assert len(paths) > 20, "Home's files were not found: has the class changed its form?"
    compare("HOME layout", set(paths), set(rows))
    unused: list[str] = []
    for name, (path, doc) in paths.items():
        _, shown_path, owner, _ = rows[name]
        assert quoted(shown_path)[0].rstrip("/") == path, (
            f"docs/reference.md: {name} is {path}, not {shown_path}"
        )
        named = re.search(r"owner: ([\w/]+\.py|JupyterHub)", doc)
        if named:
            assert named[1] in owner, (
                f"docs/reference.md: {name} is owned by {named[1]} (its docstring), not {owner}"
            )
        modules = [m for m in quoted(owner) if m.endswith(".py")]
        assert modules or "JupyterHub" in owner, f"docs/reference.md: {name} names no owner"
        for module in modules:
            assert (PACKAGE / module).is_file(), (
                f"docs/reference.md: {name}'s owner {module} is not in hub/dossierhub/"
            )
        if named and named[1] != "JupyterHub":
            # the owner reaches the file through its Home name (else it is not its owner)
            attribute = name.rsplit(".", 1)[-1].split("(")[0]
            source = (PACKAGE / named[1]).read_text(encoding="utf-8")
            if not re.search(rf"\.{attribute}\b", source):
                unused.append(f"{named[1]} is named owner of {name} but never uses it")
    assert not unused, "\n".join(unused)


# ---------------------------------------------------------------- models and settings


def _inner(annotation: Any) -> list[Any]:
    """What an annotation is made of: Optional[X] -> X, dict[K, V] -> V, Annotated[X] -> X."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _inner(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [a for arg in typing.get_args(annotation) for a in _inner(arg)]
    return [annotation]


def model_fields(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, FieldInfo]]:
    """Every key of a YAML file read as `model`, dotted; `<>` for a mapping's own keys."""
    for name, info in model.model_fields.items():
        key = prefix + (info.alias or name)
        yield key, info
        for part in _inner(info.annotation):
            if typing.get_origin(part) is dict:
                value = typing.get_args(part)[1]
                if isinstance(value, type) and issubclass(value, BaseModel):
                    yield from model_fields(value, f"{key}.<>.")
            elif isinstance(part, type) and issubclass(part, BaseModel):
                yield from model_fields(part, f"{key}.")


def shown_default(info: FieldInfo) -> str:
    """A default as the reference writes it (as YAML would)."""
    if info.is_required():
        return "required"
    value = info.get_default(call_default_factory=True)
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, BaseModel) or value == {}:
        return "{}"
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return '""' if value == "" else str(value)


def choices(info: FieldInfo) -> list[str]:
    return [
        str(choice)
        for part in _inner(info.annotation)
        if typing.get_origin(part) is typing.Literal
        for choice in typing.get_args(part)
    ]


def check_model(model: type[BaseModel], heading: str) -> None:
    fields = dict(model_fields(model))
    rows = documented_keys(heading)
    title = html.unescape(heading)
    compare(title, set(fields), set(rows))
    for key, info in fields.items():
        _, kind, default, meaning = rows[key]
        assert default.strip("`") == shown_default(info), (
            f"docs/reference.md, {title}: {key} defaults to {shown_default(info)}, not {default}"
        )
        for choice in choices(info):
            assert f"`{choice}`" in kind, f"docs/reference.md, {title}: {key} may be {choice}"
        assert meaning, f"docs/reference.md, {title}: {key} has no meaning"


def test_catalog_fields_are_the_model_s() -> None:
    check_model(Catalog, "catalog.yaml")


def test_manifest_fields_are_the_model_s() -> None:
    check_model(Dossier, "dossiers/&lt;id&gt;.yaml")


def test_settings_are_the_model_s() -> None:
    check_model(Settings, "settings.yaml")


# ---------------------------------------------------------------- command line


def commands(group: click.Group, prefix: str) -> dict[str, click.Command]:
    found: dict[str, click.Command] = {}
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found |= commands(command, f"{prefix} {name}")
        else:
            found[f"{prefix} {name}"] = command
    return found


def test_every_command_and_option_is_in_the_reference() -> None:
    in_code = {"dossierhub": cli.main, **commands(cli.main, "dossierhub")}
    rows = {}
    for row in reference("Command line"):
        words = quoted(row[0])[0].split()
        path = " ".join(w for w in words if re.fullmatch(r"[a-z][a-z0-9-]*", w))
        rows[path] = row
    compare("Command line", set(in_code), set(rows))
    for path, command in in_code.items():
        options = {
            opt
            for param in command.params
            if isinstance(param, click.Option)
            for opt in (*param.opts, *param.secondary_opts)
        }
        shown = set(quoted(rows[path][1]))
        assert options <= shown, f"docs/reference.md: {path} also takes {options - shown}"
        assert shown <= options | {"-h", "--help"}, (
            f"docs/reference.md: {path} does not take {shown - options}"
        )


def exit_codes_in_cli() -> set[int]:
    """0, click's usage error, and every exit code cli.py sets or exits with."""
    codes = {0, click.UsageError.exit_code}
    for node in ast.walk(ast.parse(Path(cli.__file__).read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and any(isinstance(t, ast.Name) and t.id == "exit_code" for t in node.targets)
        ):
            codes.add(node.value.value)
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("exit", "SystemExit", "Exit") and isinstance(node.args[0].value, int):
                codes.add(node.args[0].value)
    return codes


def test_the_exit_codes_are_the_cli_s() -> None:
    documented = {int(row[0]) for row in reference("Exit status")}
    in_code = exit_codes_in_cli()
    assert documented == in_code, (
        f"docs/reference.md, Exit status: the command line exits with {sorted(in_code)}, "
        f"the reference says {sorted(documented)}"
    )


# ---------------------------------------------------------------- provenance and run records


def flattened(provenance: dict[str, Any]) -> set[str]:
    keys = set(provenance)
    for view in provenance["views"].values():
        keys |= {f"views.<>.{key}" for key in view}
    return keys


def test_extract_provenance_fields_are_those_apply_writes(applied_home: Path) -> None:
    written: set[str] = set()
    for path in sorted((applied_home / "extracts").glob("*/provenance.json")):
        written |= flattened(json.loads(path.read_text(encoding="utf-8")))
    assert written, "apply wrote no provenance.json"
    compare(
        "extracts/<id>/provenance.json",
        written,
        set(documented_keys("Extracts and their provenance.json")),
    )


def test_extract_provenance_fields_are_those_of_the_contract() -> None:
    """The typed contract both sides of the wall read and write: its fields are the reference's."""
    from dataclasses import fields

    from dossier_kernel.provenance import ExtractProvenance, ViewProvenance

    typed = {f.name for f in fields(ExtractProvenance)}
    typed |= {f"views.<>.{f.name}" for f in fields(ViewProvenance)}
    compare(
        "dossier_kernel.provenance.ExtractProvenance",
        typed,
        set(documented_keys("Extracts and their provenance.json")),
    )


def _reports_code() -> Iterator[ast.FunctionDef]:
    for path in sorted((PACKAGE / "reports").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef):
                yield node


def test_run_record_fields_are_those_of_the_typed_record(applied_home: Path) -> None:
    """The reference lists RunRecord's fields, and a real queued run writes no other key."""
    from dossierhub.reports.records import RunRecord

    pending = start_run(
        Home(applied_home), "armoede", "data_quality", "b.devries", {"view": "residents"}
    )
    queued = json.loads(pending.run.record.read_text(encoding="utf-8"))
    assert set(queued) <= set(RunRecord.model_fields), "a run wrote keys its model lacks"
    compare(
        "reports.records.RunRecord",
        set(RunRecord.model_fields),
        set(documented_keys("The run record (provenance.json)")),
    )


def test_release_record_fields_are_those_of_the_typed_release() -> None:
    from dossierhub.reports.records import Release

    compare(
        "reports.records.Release", set(Release.model_fields), set(documented_keys("release.json"))
    )


def test_published_file_fields_are_those_of_the_contract() -> None:
    """The declaration and the chart as dossier_kernel.published writes and reads them."""
    from dataclasses import fields

    from dossier_kernel.published import ChartSpec, Declaration

    for model, title in ((Declaration, "`<table>.meta.json`"), (ChartSpec, "`<chart>.chart.json`")):
        text = section(REFERENCE.read_text(encoding="utf-8"), "published/: what publish() leaves")
        after = text[text.index(f"{title} (`{model.__name__}`):") :]
        documented = {wildcard(quoted(row[0])[0]) for row in table(after)}
        compare(
            f"dossier_kernel.published.{model.__name__}",
            {f.name for f in fields(model)},
            documented,
        )


def test_checks_and_outputs_fields_are_those_of_their_models() -> None:
    from dataclasses import fields

    from dossierhub.reports.airlock import OutputRef
    from dossierhub.reports.records import CheckEntry

    compare(
        "reports.records.CheckEntry",
        set(CheckEntry.model_fields),
        set(documented_keys("checks.json")),
    )
    compare(
        "reports.airlock.OutputRef",
        {f.name for f in fields(OutputRef)},
        set(documented_keys("outputs.json")),
    )


# ---------------------------------------------------------------- names, links, pointers


def doc_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def prose(text: str) -> str:
    """The text without its code blocks (whose backticks would pair wrongly)."""
    return re.sub(r"```.*?```", "", text, flags=re.S)


def template_metadata_keys() -> set[str]:
    """`dossierhub.parameters` in a template's notebook metadata is a key, not a module."""
    source = (PACKAGE / "state" / "templates.py").read_text(encoding="utf-8")
    return {f"dossierhub.{key}" for key in re.findall(r'"(\w+)"', source)}


def code_names(text: str) -> set[str]:
    """Dotted names of our packages: quoted in the text, or anywhere in a Mermaid diagram."""
    pattern = r"(?:dossierhub|dossier_kernel|dossier_lab)(?:\.\w+)+"
    names = set(re.findall(f"`({pattern})`", prose(text)))
    for diagram in re.findall(r"```mermaid\n(.*?)```", text, re.S):
        names |= set(re.findall(rf"\b{pattern}", diagram))
    return names - template_metadata_keys()


def resolves(name: str) -> bool:
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            if not hasattr(found, attribute):
                return False
            found = getattr(found, attribute)
        return True
    return False


IN_REPOSITORY = re.compile(r"(hub/dossierhub|kernels|extensions|tests|dossier_templates|bench)/")
"""Where a quoted path names the repository, not HOME (whose `hub/` holds the hub's files)."""


def code_paths(text: str) -> set[str]:
    """Quoted paths of this repository's folders and source files (not HOME's files, such as
    `hub/jupyterhub_config.py`)."""
    in_home = {path.split("/")[0] + "/" for path, _ in home_paths().values()}
    return {
        token
        for token in quoted(prose(text))
        if "<" not in token
        and " " not in token
        and (
            IN_REPOSITORY.match(token)
            or (re.fullmatch(r"[\w/]+\.py", token) and not token.startswith(tuple(in_home)))
        )
    }


def path_exists(token: str) -> bool:
    if IN_REPOSITORY.match(token):
        return any(True for _ in REPO.glob(token.rstrip("/")))
    if "/" not in token:  # a module named by its file alone
        return any(next(root.rglob(token), None) for root in (PACKAGE, REPO / "kernels"))
    return any((root / token).is_file() for root in CODE_ROOTS)


def test_every_name_of_the_code_in_the_docs_exists() -> None:
    wrong = []
    for doc in doc_files():
        text = doc.read_text(encoding="utf-8")
        wrong += [f"{doc.name}: {n}" for n in sorted(code_names(text)) if not resolves(n)]
        wrong += [f"{doc.name}: {p}" for p in sorted(code_paths(text)) if not path_exists(p)]
    assert not wrong, "the docs name code that does not exist:\n" + "\n".join(wrong)


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    text = html.unescape(heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(doc: Path) -> set[str]:
    return {slug(m) for m in re.findall(r"^#+ (.*)$", doc.read_text(encoding="utf-8"), re.M)}


def test_every_relative_link_resolves() -> None:
    broken = []
    for doc in doc_files():
        text = prose(doc.read_text(encoding="utf-8"))
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):
                continue  # a web address
            path, _, anchor = target.partition("#")
            linked = (doc.parent / path).resolve() if path else doc
            if not linked.exists():
                broken.append(f"{doc.name}: {target} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                broken.append(f"{doc.name}: {target} (no such heading)")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_readme_links_every_page_of_the_docs() -> None:
    readme = README.read_text(encoding="utf-8")
    for page in sorted(DOCS.glob("*.md")):
        assert f"](docs/{page.name}" in readme, f"README.md does not link docs/{page.name}"


def test_nothing_points_outside_the_repository() -> None:
    """DESIGN.md was the founding brief; what it said that still holds is in docs/."""
    folders = [REPO / "hub", REPO / "kernels", REPO / "extensions" / "src", DOCS]
    files = [README, *(REPO / "extensions" / "dossier_lab").glob("*.py")]
    files += [p for folder in folders for p in folder.rglob("*") if p.is_file()]
    mentions = [
        str(p.relative_to(REPO))
        for p in files
        if "__pycache__" not in p.parts and b"DESIGN.md" in p.read_bytes()
    ]
    assert not mentions, (
        f"these files point to DESIGN.md, which is not in the repository: {mentions}"
    )
