"""Red team of the dossierhub service's pod on Kubernetes (issue 14, deploy/chart): the
service runs as the chart's uid (runAs.user, 10000), not root, over HOME, with its hub token
in its environment (JUPYTERHUB_API_TOKEN, --token-from-env). Not root, dossierhub cannot
give a report kernel the dossier's report identity or a sandbox (kernelpool.start_kernel):
a kernel there would read the token (whose role can mint a token for anyone) and every
dossier's files. So on Kubernetes the service refuses to start one; report runs are Jobs
(reports.backend: kubernetes, reports/jobs.py).

Performed for real: the service's side runs as uid 10000 with the token in its environment
over a HOME that uid can read, and asks for an armoede report kernel with code that looks
for the token and another dossier's extracts. On one machine the same kernel runs as
`<prefix>r-armoede` in a sandbox that shows it armoede's extracts only."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs the service's side as uid 10000")

SERVICE_UID = 10000  # deploy/chart values.yaml runAs.user
TOKEN = "service-token-6f1c0b8e2d7a4e59"

SERVICE_SIDE = """
import json, sys
from pathlib import Path
from jupyter_client import BlockingKernelClient
from dossierhub.reports.kernelpool import start_kernel, stop_kernel
from dossierhub.state.home import Home

home, scratch = Home(Path(sys.argv[1])), Path(sys.argv[2])
manager = start_kernel(home, "armoede", scratch, warm=False)
client = BlockingKernelClient(**manager.get_connection_info(session=True), parent=manager)
client.start_channels()
out = []
client.execute_interactive(
    sys.stdin.read(),
    timeout=60,
    output_hook=lambda m: m["msg_type"] == "stream" and out.append(m["content"]["text"]),
)
client.stop_channels()
stop_kernel(manager)
print("".join(out))
"""

# what a report template's code tries in its kernel
KERNEL = """
import json, os
seen = {}
try:
    seen["service token"] = "TOKEN" in open(f"/proc/{os.getppid()}/environ").read()
except OSError:
    seen["service token"] = False
# what the service can read, its kernels read: another dossier's extracts too
for name, path in (("mobiliteit's extracts", "EXTRACTS/mobiliteit"),):
    try:
        seen[name] = bool(os.listdir(path)) if os.path.isdir(path) else os.access(path, os.W_OK)
    except OSError:
        seen[name] = False
print(json.dumps(seen))
"""


@pytest.fixture
def service_home(applied_home: Path) -> Iterator[Path]:
    """The applied demo HOME, readable by the service's uid as it must be for report runs to
    start in its pod at all (on Kubernetes apply leaves HOME's control files and the extracts
    to that uid, the control identity: isolation/unixusers.py control_owner); in a folder any
    uid may traverse, unlike pytest's."""
    parent = Path(tempfile.mkdtemp(prefix="dossierhub-servicepod-"))
    os.chmod(parent, 0o711)
    root = parent / "home"
    shutil.copytree(applied_home, root, symlinks=True)
    (parent / "scratch").mkdir(mode=0o700)
    settings = yaml.safe_load((root / "settings.yaml").read_text()) or {}
    settings.setdefault("hub", {})["spawner"] = "kubernetes"  # as on a cluster
    settings["kubernetes"] = {"image": "registry.example.org/dossierhub-workspace:1.0"}
    (root / "settings.yaml").write_text(yaml.safe_dump(settings))
    for path in [root, *root.rglob("*"), parent / "scratch"]:
        os.chown(path, SERVICE_UID, SERVICE_UID, follow_symlinks=False)
    yield root
    shutil.rmtree(parent)


def test_a_report_kernel_in_the_service_s_pod_reaches_only_its_dossier(
    service_home: Path,
) -> None:
    scratch = service_home.parent / "scratch"
    code = KERNEL.replace("TOKEN", TOKEN).replace("EXTRACTS", str(service_home / "extracts"))
    result = subprocess.run(
        [sys.executable, "-c", SERVICE_SIDE, str(service_home), str(scratch)],
        input=code,
        user=SERVICE_UID,
        group=SERVICE_UID,
        extra_groups=[],
        env={"PATH": "/usr/bin:/bin", "HOME": str(scratch), "JUPYTERHUB_API_TOKEN": TOKEN},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # no kernel of the template's code ever starts as the service: the run is refused,
    # saying what to do (report runs as Jobs, reports/jobs.py)
    assert result.returncode != 0, f"a report kernel ran in the service's pod: {result.stdout}"
    assert "UnisolatedKernel" in result.stderr, result.stderr[-3000:]
    assert "reports.backend: kubernetes" in result.stderr
    assert TOKEN not in result.stdout and "mobiliteit" not in result.stdout
