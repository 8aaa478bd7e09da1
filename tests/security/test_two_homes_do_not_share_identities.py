"""Two installations on one machine: each gets its own Unix identities, or none.

A second HOME with the same dossier ids must not run its workspaces as the first HOME's
`dh-<id>` users (then the second installation's team reads the first one's extracts,
notebooks and reports): apply warns and gives it nothing, serve refuses, both naming the
clashing user; with its own prefix it gets its own users. Its `serve`, started from a folder
that holds a planted `dossierhub` package, must not import it (an operator's working
directory is no import path for root's services).
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

from dossierhub.demo import write_demo
from dossierhub.state.home import Home
from dossierhub.workspaces.hubapi import HubAPI
from dossierhub.workspaces.servestate import read_serve_state

from e2e_hub import DOSSIERHUB, Hub, free_ports, reachable_python
from kernelclient import execute

PLANTED = """
import os, sys
with open({marker!r}, "a") as handle:
    handle.write(f"imported from {{__file__}} by pid {{os.getpid()}} as uid {{os.getuid()}}\\n")
# hand over to the real package, so that nothing looks wrong
here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
del sys.modules[__name__]
import importlib
sys.modules[__name__] = importlib.import_module(__name__)
"""


def dossierhub(home: Home, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DOSSIERHUB, "--home", str(home.root), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def owner(path: Path) -> str | None:
    try:
        return pwd.getpwuid(path.stat().st_uid).pw_name
    except (OSError, KeyError):
        return None


def test_two_homes_do_not_share_identities(hub: Hub, host) -> None:
    first = hub.home
    # the first HOME's workspace identity for armoede, and the identities it was told to use
    taken = owner(first.workspaces_dir / "armoede")
    isolation = (yaml.safe_load((first.root / "settings.yaml").read_text()) or {}).get("isolation")
    prefix = "dhc" if (isolation or {}).get("prefix") == "dhb" else "dhb"
    root = Path(tempfile.mkdtemp(prefix="dossierhub-second-", dir="/tmp"))
    os.chmod(root, 0o711)
    home = Home(root / "home")
    serve: subprocess.Popen | None = None
    try:
        assert dossierhub(home, "init").returncode == 0
        write_demo(home, size=2000, seed=11, log=lambda text: None)
        base = free_ports()
        settings: dict = {
            "hub": {"port": base},
            "workspaces": {"python": reachable_python(), "auth_cache_seconds": 2},
        }
        if isolation is not None:  # the same identities as the first HOME
            settings["isolation"] = isolation
        (home.settings_file).write_text(yaml.safe_dump(settings))
        shared = dossierhub(home, "apply")
        given = owner(home.workspaces_dir / "armoede")
        assert shared.returncode == 0 and taken in shared.stderr and given != taken, (
            f"apply of a second HOME with the same dossier ids, so the same Unix user {taken} "
            f"(which owns {first.workspaces_dir / 'armoede'} and reads "
            f"{first.extract_dir('armoede')} of the first HOME), exited {shared.returncode} "
            f"without naming {taken}"
            + (f"; it gave the second HOME's armoede workspace folder to {given}" if given else "")
        )
        refused = subprocess.run(
            [DOSSIERHUB, "--home", str(home.root), "serve"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert refused.returncode != 0 and taken in refused.stderr, (
            f"serve of the second HOME did not refuse the shared user {taken}: {refused.stderr}"
        )

        settings["isolation"] = {"prefix": prefix}
        (home.settings_file).write_text(yaml.safe_dump(settings))
        applied = dossierhub(home, "apply")
        assert applied.returncode == 0, applied.stderr

        # serve from a folder where someone left a `dossierhub` package
        cwd = root / "operator-cwd"
        (cwd / "dossierhub").mkdir(parents=True)
        marker = root / "planted-package-imported"
        (cwd / "dossierhub" / "__init__.py").write_text(PLANTED.format(marker=str(marker)))
        log = root / "serve.log"
        with log.open("w") as handle:
            serve = subprocess.Popen(
                [DOSSIERHUB, "--home", str(home.root), "serve"],
                cwd=cwd,
                stdout=handle,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 90
        while read_serve_state(home) is None:
            assert serve.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        second = Hub(home, f"http://127.0.0.1:{base}/", serve, log)
        token = second.token("a.jansen")
        started = second.start("dossier-armoede", token)
        assert started.status_code in (201, 202), started.text

        targets = [
            first.extract_dir("armoede"),
            first.extract_dir("armoede") / "catalog.duckdb",
            first.workspaces_dir / "armoede",
            first.reports_dir / "armoede",
        ]
        probe = (
            "import json, os, pwd\n"
            "def attempt(path):\n"
            "    try:\n"
            "        if os.path.isdir(path):\n"
            "            return 'READ ' + ','.join(sorted(os.listdir(path))[:5])\n"
            "        open(path, 'rb').read(16)\n"
            "        return 'READ'\n"
            "    except OSError as error:\n"
            "        return type(error).__name__\n"
            "print(json.dumps({'user': pwd.getpwuid(os.getuid()).pw_name, 'attempts': "
            f"{{p: attempt(p) for p in {[str(t) for t in targets]!r}}}}}))"
        )
        run = execute(second.url, "dossier-armoede", token, probe)
        assert run.error is None, run.error
        seen = json.loads(run.stdout)
        read = {path: outcome for path, outcome in seen["attempts"].items() if "READ" in outcome}
        assert not read, f"the second HOME's workspace ({seen['user']}) reads the first's: {read}"
        assert not marker.exists(), (
            "serve imported a planted dossierhub package from its working directory: "
            + marker.read_text()
        )
    finally:
        if serve is not None:
            with contextlib.suppress(Exception):
                api = HubAPI.for_home(home)
                api.stop_server("dossier-armoede")
                api.close()
            serve.send_signal(signal.SIGTERM)
            try:
                serve.wait(60)
            except subprocess.TimeoutExpired:
                serve.kill()
        # the second installation's own identities (their home folders are in its HOME)
        names = [u.pw_name for u in pwd.getpwall() if u.pw_dir.startswith(f"{root}/")]
        uids = {pwd.getpwnam(name).pw_uid for name in names}
        for pid, (_, uid, _) in host.processes().items():
            if uid in uids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for name in names:
            subprocess.run(["userdel", name], capture_output=True, check=False)
        for name in names:
            if name in {g.gr_name for g in grp.getgrall()}:
                subprocess.run(["groupdel", name], capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)
