"""deploy/images/Dockerfile as Docker reads it (dockerfile-parse; no container engine here):
three images built from the repository's own uv.lock with --frozen, by the uv install.sh
pins, each running as a user that is not root, from a context that holds no local
environment or HOME."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "deploy" / "images" / "Dockerfile"
TARGETS = ("hub", "workspace", "runner")


def stages() -> dict[str, list[dict]]:
    """Each stage's instructions (FROM ... AS name starts one), with ARGs resolved."""
    parser = DockerfileParser(str(DOCKERFILE))
    found: dict[str, list[dict]] = {}
    current: list[dict] = []
    for instruction in parser.structure:
        if instruction["instruction"] == "FROM":
            name = instruction["value"].split()[-1]
            current = found.setdefault(name, [])
        current.append(instruction)
    return found


def chain(name: str) -> list[dict]:
    """A target's instructions with those of the stages it is built FROM, first to last."""
    all_stages = stages()
    own = all_stages[name]
    parent = own[0]["value"].split()[0]
    return (chain(parent) if parent in all_stages else []) + own


def values(instructions: list[dict], kind: str) -> list[str]:
    return [i["value"] for i in instructions if i["instruction"] == kind]


@pytest.mark.parametrize("target", TARGETS)
def test_each_image_runs_as_a_user_that_is_not_root(target: str) -> None:
    users = values(chain(target), "USER")
    assert users, f"{target} sets no USER: it would run as root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) > 0, f"{target}: USER {users[-1]}"
    assert gid.isdigit() and int(gid) > 0, f"{target}: USER {users[-1]}"


def test_every_environment_comes_from_the_lock_frozen() -> None:
    text = DOCKERFILE.read_text()
    syncs = re.findall(r"uv sync[^\n&]*", text)
    assert len(syncs) == 3
    for sync in syncs:
        assert "--frozen" in sync and "--no-dev" in sync, sync
    installs = re.findall(r"pip install[^\n]*", text)
    install_sh = (REPO / "install.sh").read_text()
    uv_version = re.search(r"^uv_version=(\S+)$", install_sh, re.M)[1]
    assert installs == [f'pip install --no-cache-dir "uv=={uv_version}"']
    copied = " ".join(values(stages()["source"], "COPY"))
    assert "uv.lock" in copied and "pyproject.toml" in copied
    # the groups named exist (uv sync --frozen refuses an unknown one)
    groups = tomllib.loads((REPO / "pyproject.toml").read_text())["dependency-groups"]
    for group in re.findall(r"--group (\S+)", text):
        assert group in groups, group


def test_the_images_take_their_environments_from_the_right_stage() -> None:
    copies = {
        t: [c for c in values(stages()[t], "COPY") if c.startswith("--from")] for t in TARGETS
    }
    assert copies["hub"] == ["--from=hub-env /opt/dossierhub/.venv /opt/dossierhub/.venv"]
    for target in ("workspace", "runner"):
        assert copies[target] == ["--from=env /opt/dossierhub/.venv /opt/dossierhub/.venv"]
    assert "--group hub-image" in " ".join(values(stages()["hub-env"], "RUN"))
    assert "--group" not in " ".join(values(stages()["env"], "RUN"))


def test_base_images_are_tagged_and_the_context_holds_no_local_state() -> None:
    args = dict(v.split("=", 1) for v in values(_args(), "ARG"))
    for image in args.values():
        name, _, tag = image.rpartition(":")
        assert name and tag and tag != "latest", image
    for source in " ".join(values(stages()["source"], "COPY")).split():
        if not source.startswith("--") and source not in ("./",):
            assert (REPO / source).exists() or source.startswith("/"), source
    ignored = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().split()
    for private in (".venv", ".tools", "var", "**/node_modules", ".git"):
        assert private in ignored, private


def _args() -> list[dict]:
    return [
        i
        for i in DockerfileParser(str(DOCKERFILE)).structure
        if i["instruction"] == "ARG" and "=" in i["value"]
    ]


def test_the_workspace_image_gives_the_recorder_s_python_its_file_capability() -> None:
    """The recorder binds port 80 as a non-root number: on containerd and CRI-O only through a
    file capability on its executable, the interpreter the pod's recorder container runs."""
    from dossierhub.isolation.podspec import RECORDER_PYTHON

    runs = " ".join(values(stages()["workspace"], "RUN"))
    recorder = f"/opt/dossierhub/.venv/bin/{RECORDER_PYTHON}"
    assert f"cp --dereference /opt/dossierhub/.venv/bin/python {recorder}" in runs
    assert f"setcap cap_net_bind_service=+ep {recorder}" in runs
