"""bubblewrap sandboxes for workspaces and report kernels (run as root).

A sandbox is a new mount, PID, IPC and UTS namespace in which a process sees only:

- the system (/usr, /etc and the /bin, /lib links) and its Python environment, read-only;
- its dossier's extracts, read-only, and its own folder, read-write (same paths as outside,
  so the environment variables that name them hold);
- a private /tmp and /dev/shm, its own /proc and a minimal /dev.

Inside, the process drops to its dossier identity with util-linux's `setpriv` (bubblewrap
run by root keeps uid 0 otherwise): no capabilities, no new privileges, only its groups. The
Unix identities stay the second wall. When the namespace's first process ends, the kernel
kills every other process in it, so nothing a workspace or a kernel started outlives it.

Workspaces run `tini` as that first process: it forwards the hub's stop signals to the server
and reaps orphans. Its PID (bubblewrap's only child) is what the spawner signals, so
a restarted hub still stops it, and the sandbox does not die with the hub. Report kernels use
--die-with-parent instead: a kernel is no use without the process that runs the report.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from dossierhub.isolation.unixusers import Identity, isolation_enabled
from dossierhub.state.settings import Settings

SYSTEM = ("/usr", "/etc")
SYSTEM_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
PRIVATE_TMP = ("/tmp", "/dev/shm")  # noqa: S108 - new empty tmpfs mounts, not the host's
TOOLS = {"bwrap": "bubblewrap", "setpriv": "util-linux", "tini": "tini"}


def tool(name: str) -> str | None:
    return shutil.which(name, path="/usr/bin:/bin:/usr/sbin:/sbin")


def unavailable(settings: Settings) -> str | None:
    """Why sandboxes are not used here, or None when they are."""
    if settings.isolation.sandbox == "off":
        return "isolation.sandbox is off in settings.yaml"
    if not isolation_enabled():
        return "dossierhub is not running as root"
    return _probe()


@functools.cache
def _probe() -> str | None:
    missing = [f"{name} (Debian package {pkg})" for name, pkg in TOOLS.items() if not tool(name)]
    if missing:
        return f"not installed: {', '.join(missing)}"
    nobody = Identity("nobody", 65534, 65534, (65534,))
    command = [
        *prefix(nobody, ro=[], rw=[], chdir=Path("/"), network=False),
        "/bin/true",
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30, cwd="/")
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap could not run: {exc}"
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or [f"exit {result.returncode}"])[-1]
        return f"bubblewrap cannot make namespaces here ({reason})"
    return None


# the environment's prefix and import path, and where our own packages are (an editable
# install finds them through an import hook, not sys.path)
LIST_PATHS = """
import importlib.util, json, sys
paths = [sys.prefix, sys.base_prefix, *sys.path]
for name in ("dossier_kernel", "dossier_lab", "dossierhub"):
    spec = importlib.util.find_spec(name)
    paths += list(spec.submodule_search_locations or []) if spec else []
print(json.dumps(paths))
"""


@functools.cache
def environment_paths(python: str) -> tuple[str, ...]:
    """What the Python environment at `python` reads outside the system folders: its prefix,
    its import path and our packages' sources."""
    listed = subprocess.run(
        [
            python,
            "-I",
            "-c",
            LIST_PATHS,
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
        timeout=60,
    )
    paths: list[str] = []
    for entry in sorted({str(Path(p)) for p in json.loads(listed.stdout) if p}, key=len):
        path = Path(entry)
        if not path.is_dir() or any(_under(path, Path(s)) for s in SYSTEM):
            continue
        if not any(_under(path, Path(kept)) for kept in paths):
            paths.append(entry)
    return tuple(paths)


def _leading_folders(binds: Sequence[Path | str]) -> list[str]:
    """The folders above the binds that the sandbox does not have yet, outermost first."""
    have = {Path(p) for p in (*SYSTEM, *PRIVATE_TMP, "/proc", "/dev")}
    bound = {Path(b) for b in binds}
    wanted = {
        parent
        for b in bound
        for parent in Path(b).parents
        if parent != Path("/")
        and parent not in have
        and parent not in bound
        and not any(_under(parent, s) for s in map(Path, SYSTEM))
    }
    return [str(p) for p in sorted(wanted, key=lambda p: len(p.parts))]


def _under(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def prefix(
    identity: Identity,
    *,
    ro: Sequence[Path | str],
    rw: Sequence[Path | str],
    chdir: Path,
    network: bool,
    empty: Sequence[Path | str] = (),
    init: bool = False,
    die_with_parent: bool = False,
    hostname: str = "dossier",
) -> list[str]:
    """The command that runs what follows it in a sandbox as `identity`; `empty`: folders
    made empty and root's (read-only to it), such as environment.py's NO_USER_FILES."""
    bwrap, setpriv, tini = tool("bwrap"), tool("setpriv"), tool("tini")
    assert bwrap and setpriv and tini, "check unavailable() first"
    args = [bwrap, "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    args += ["--hostname", hostname, "--new-session"]
    if not network:
        args.append("--unshare-net")
    if die_with_parent:
        args.append("--die-with-parent")
    if init:
        args.append("--as-pid-1")  # tini is the first process: the spawner signals it
    for folder in SYSTEM:
        args += ["--ro-bind", folder, folder]
    for link in SYSTEM_LINKS:
        path = Path(link)
        if path.is_symlink():
            args += ["--symlink", str(path.readlink()), link]
        elif path.is_dir():
            args += ["--ro-bind", link, link]
    args += ["--proc", "/proc", "--dev", "/dev"]
    # private and writable; before the binds below, which may lie under /tmp
    for private in PRIVATE_TMP:
        args += ["--perms", "1777", "--tmpfs", private]
    # bubblewrap would make the folders leading to a bind 0700 (root's): these may be passed
    for folder in _leading_folders([*ro, *rw]):
        args += ["--perms", "0711", "--dir", folder]
    for bound in ro:
        args += ["--ro-bind", str(Path(bound).resolve()), str(bound)]
    for bound in rw:
        args += ["--bind", str(Path(bound).resolve()), str(bound)]
    # root's, in the sandbox's own root: the identity below can read them and write nothing
    for made in empty:
        args += ["--perms", "0755", "--dir", str(made)]
    args += ["--chdir", str(chdir)]
    # setpriv needs these two to change identity; it leaves the process none at all
    args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--"]
    args += [
        setpriv,
        f"--reuid={identity.uid}",
        f"--regid={identity.gid}",
        f"--groups={','.join(str(g) for g in identity.groups)}",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
        "--",
    ]
    if init:
        args += [tini, "--"]
    return args
