"""A kernel starts processes that leave its session (setsid, double fork): when the workspace
stops, they must stop too, or code keeps running (and reading the dossier's data) as the
dossier after the team closed it, its members were removed or the dossier expired."""

from __future__ import annotations

import secrets
import time

from e2e_hub import Hub

WRITER = """
import os, sys, time
path, end = sys.argv[1], time.time() + 90   # bounded: never outlives the test for long
while time.time() < end:
    with open(path, "a") as handle:
        handle.write(f"{time.time()}\\n")
    time.sleep(0.2)
"""


def test_detached_process_dies_with_workspace(hub: Hub, workspace, host) -> None:
    marker = f"dh-detached-{secrets.token_hex(4)}"
    files = [workspace.folder / f"{marker}-setsid.log", workspace.folder / f"{marker}-fork.log"]
    start = f"""
import os, subprocess, sys, time
writer = {WRITER!r}
# one through setsid(1), which forks into a new session
subprocess.Popen(["setsid", "-f", sys.executable, "-c", writer, {str(files[0])!r}],
                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL, close_fds=True)
# one through a classic double fork
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c", writer, {str(files[1])!r}])
    os._exit(0)
time.sleep(1)
print(sorted(os.path.getsize(p) for p in {[str(f) for f in files]!r}))
"""
    uid = workspace.uid
    home = str(hub.home.root).encode()

    def ours(pid: int, cmdline: str) -> bool:
        """This hub's workspace, not another installation's that shares the identity."""
        try:
            with open(f"/proc/{pid}/environ", "rb") as handle:
                environ = handle.read()
        except OSError:
            environ = b""
        return marker in cmdline or home in environ

    try:
        workspace.run(start)
        assert all(f.exists() and f.stat().st_size > 0 for f in files), "the writers did not start"
        workspace.stop()

        def sizes() -> list[int]:
            return [f.stat().st_size for f in files]

        def settled() -> bool:
            before = sizes()
            time.sleep(1)
            return sizes() == before

        stopped = host.wait_for(settled, 8, pause=0)
        assert stopped, (
            "processes a kernel started in their own session kept writing to "
            f"{workspace.folder} for 8 s after the workspace stopped: {sizes()} bytes"
        )

        def leftovers() -> list[str]:
            return [
                f"{pid}: {cmdline}"
                for pid, (_, owner, cmdline) in host.processes().items()
                if owner == uid and ours(pid, cmdline)
            ]

        host.wait_for(lambda: not leftovers(), 5)
        assert not leftovers(), (
            f"processes of the workspace's identity (uid {uid}) still run after it stopped:\n"
            + "\n".join(leftovers())
        )
    finally:
        host.kill_marked(marker)
        for path in files:
            path.unlink(missing_ok=True)
        workspace.ensure_running()
