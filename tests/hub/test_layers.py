"""The folders show the architecture (docs/architecture.md): each part imports only parts below
it, never one above or beside it, so a part can be read, tested and replaced on its own. Every
import counts, also those inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

import dossierhub

PACKAGE = Path(dossierhub.__file__).parent

# Lower number = lower part. Parts on one level may not import each other.
LEVEL = {"state": 0, "isolation": 1, "data": 2, "workspaces": 3, "reports": 3}
FACES = 4  # cli, apply, portal, demo, progress, web: on top of everything


def _part(module: str) -> str:
    """dossierhub.data.policy -> data; dossierhub.cli / dossierhub.web.api -> the face."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LEVEL else "faces"


def _level(part: str) -> int:
    return LEVEL.get(part, FACES)


def _imports(path: Path) -> list[tuple[int, str]]:
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
    return [(line, name) for line, name in found if name.startswith("dossierhub.")]


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_no_import_runs_up_or_sideways() -> None:
    wrong = []
    for path in _modules():
        own = _part(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
        for line, target in _imports(path):
            if target in ("dossierhub", "dossierhub.__version__"):
                continue  # the package itself: only its version lives there
            theirs = _part(target)
            if theirs != own and _level(theirs) >= _level(own):
                wrong.append(f"{path.relative_to(PACKAGE)}:{line} ({own}) imports {target}")
    assert not wrong, "imports that run up or sideways:\n" + "\n".join(wrong)


def test_every_module_lives_in_a_part() -> None:
    """Only the faces sit at the top of the package; everything else is in a part folder."""
    faces = {"__init__", "cli", "apply", "portal", "demo", "progress"}
    loose = [p.name for p in PACKAGE.glob("*.py") if p.stem not in faces]
    assert not loose, f"modules outside a part folder: {loose}"
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"} == {
        *LEVEL,
        "web",
    }


def _module_of(target: str, known: set[str]) -> str | None:
    """The package module an import names (`dossierhub.web.api.send_csv` -> dossierhub.web.api)."""
    while target and target not in known:
        target = target.rpartition(".")[0]
    return target or None


def test_no_module_imports_itself_round_a_loop() -> None:
    """Not even inside a function: a loop hidden by an in-function import (as web/api, web/openapi
    and web/pages had) still means neither module can be read or changed without the other."""
    names = {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts) for p in _modules()}
    names = {n.removesuffix(".__init__") for n in names}
    graph: dict[str, set[str]] = {}
    for path in _modules():
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        module = module.removesuffix(".__init__")
        targets = {_module_of(t, names) for _, t in _imports(path)}
        graph[module] = {t for t in targets if t and t != module and not module.startswith(t + ".")}
    loops = []
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                loops.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not loops, "import loops:\n" + "\n".join(loops)
