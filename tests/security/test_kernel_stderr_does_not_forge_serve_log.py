"""A kernel writes what looks like a JupyterHub log line to its stderr: it must not land in
the log of `dossierhub serve` (where an operator would believe it), but in the dossier's own
log files under HOME/logs/."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

from e2e_hub import Hub


def test_kernel_stderr_does_not_forge_serve_log(hub: Hub, workspace, host) -> None:
    marker = f"forged-{secrets.token_hex(6)}"
    line = (
        f"[I {time.strftime('%Y-%m-%d %H:%M:%S')}.000 JupyterHub log:192] 200 POST "
        f"/hub/api/users/z.beheer/admin (z.beheer@127.0.0.1) 3.21ms {marker}"
    )
    workspace.run(
        "import os, sys\n"
        f"line = {line!r}\n"
        "sys.__stderr__.write(line + ' via sys.__stderr__\\n')\n"
        "sys.__stderr__.flush()\n"
        "os.write(2, (line + ' via fd 2\\n').encode())\n"
    )

    def in_logs() -> list[Path]:
        logs = hub.home.root / "logs"
        found = []
        for folder, _, files in os.walk(logs):
            for name in files:
                path = Path(folder) / name
                try:
                    if marker in path.read_text(errors="replace"):
                        found.append(path)
                except OSError:
                    continue
        return found

    host.wait_for(in_logs, 5)
    serve_log = hub.log.read_text(errors="replace")
    forged = [row for row in serve_log.splitlines() if marker in row]
    assert not forged, (
        "a workspace kernel wrote lines into the serve log that read as the hub's own:\n"
        + "\n".join(forged)
    )
    assert in_logs(), f"the kernel's stderr ({marker}) is in no file under {hub.home.root}/logs"
