"""Red team of a dossier workspace as a pod (issue 14), performed for real on the Kubernetes
stand-in (standin.py) with dossierhub's own hub: the attacker is a member of armoede running
code in its Dossier kernel, as the dossier's pod number, and uses what the pod gives it.

The stand-in enforces no NetworkPolicy, so the kernel reaches the hub's API and the proxy's
public port here, as it does on a cluster: the dossier's policy lets it out to the hub's API,
and z2jh's singleuser policy always lets it out to the proxy's public port
(tests/hub/test_kubespawner_attacks.py). What must hold is that the credentials a pod holds
open nothing there: the server's token is for the workspace's own activity and its own
server, and the pod holds no other secret of the installation.
"""

from __future__ import annotations

import json

import httpx
import pytest
from kubelet import wait_until

from dossierhub.state.home import Home

from e2e_hub import LEAD, Hub
from kernelclient import execute

DOSSIER, OTHER = "armoede", "mobiliteit"
SERVER = f"dossier-{DOSSIER}"

# the kernel's attempts with the token in its environment: (name, method, url)
ATTACK = """
import json, os, urllib.request, urllib.error
token = os.environ["JUPYTERHUB_API_TOKEN"]
hub = os.environ["JUPYTERHUB_API_URL"].rstrip("/")
public = {public!r}
attempts = {{
    "whoami": ("GET", f"{{hub}}/user"),
    "list people": ("GET", f"{{hub}}/users"),
    "list groups (memberships)": ("GET", f"{{hub}}/groups"),
    "read another dossier's user": ("GET", f"{{hub}}/users/dossier-{other}"),
    "start another dossier's workspace": ("POST", f"{{hub}}/users/dossier-{other}/server"),
    "mint a token": ("POST", f"{{hub}}/users/{server}/tokens"),
    "stop its own workspace": ("DELETE", f"{{hub}}/users/{server}/server"),
    "the proxy's routes": ("GET", f"{{hub}}/proxy"),
    "the service's dossiers": ("GET", f"{{public}}services/dossierhub/api/dossiers"),
    "the service's runs": ("GET", f"{{public}}services/dossierhub/api/dossiers/{other}/runs"),
    "the service as admin": ("GET", f"{{public}}services/dossierhub/api/admin/dossiers"),
    "another dossier's workspace": ("GET", f"{{public}}user/dossier-{other}/api/status"),
}}
seen = {{}}
for name, (method, url) in attempts.items():
    request = urllib.request.Request(url, method=method, data=b"{{}}" if method == "POST" else None,
                                     headers={{"Authorization": f"token {{token}}"}})
    opener = urllib.request.build_opener(urllib.request.HTTPRedirectHandler())
    try:
        with opener.open(request, timeout=20) as response:
            seen[name] = [response.status, response.read(4000).decode(errors="replace")]
    except urllib.error.HTTPError as exc:
        seen[name] = [exc.code, ""]
print(json.dumps(seen))
"""

# everything in the pod a secret could hide in: the kernel's environment and every process's
ENVIRONMENTS = """
import json, os
found = [json.dumps(dict(os.environ))]
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            found.append(open(f"/proc/{pid}/environ", "rb").read().decode(errors="replace"))
        except OSError:
            pass
print(json.dumps(found))
"""


# what users:activity!user expands to: reading the dossier user's own name, groups, activity
READ_OWN = {"read:users:activity", "read:users:groups", "read:users:name"}


def run(hub: Hub, token: str, code: str) -> str:
    result = execute(hub.url, SERVER, token, code, timeout=90)
    assert result.error is None, "\n".join(result.error.get("traceback", []))
    return result.stdout


@pytest.fixture(scope="module")
def workspace(hub_on_standin: Hub) -> tuple[Hub, str]:
    hub, lead = hub_on_standin, hub_on_standin.token(LEAD)
    response = hub.start(SERVER, lead)
    assert response.status_code in (201, 202), response.text
    status = f"{hub.url}user/{SERVER}/api/status"
    headers = {"Authorization": f"token {lead}"}
    wait_until(
        lambda: httpx.get(status, headers=headers, timeout=30).status_code == 200,
        timeout=60,
        what="the workspace via the proxy",
    )
    return hub, lead


def test_the_server_s_token_opens_nothing_but_its_own_activity(
    workspace: tuple[Hub, str],
) -> None:
    hub, lead = workspace
    code = ATTACK.format(public=hub.url, other=OTHER, server=SERVER)
    seen = json.loads(run(hub, lead, code))
    whoami_status, whoami = seen.pop("whoami")
    assert whoami_status == 200
    model = json.loads(whoami)
    assert model["name"] == SERVER
    # users:activity and access:servers, as the hub expands them: on this dossier alone
    kinds = {scope.split("!")[0] for scope in model["scopes"]}
    assert kinds <= {"access:servers", "users:activity", *READ_OWN}, model["scopes"]
    filters = {scope.split("!")[1] for scope in model["scopes"]}
    assert filters <= {f"user={SERVER}", f"server={SERVER}/"}, model["scopes"]
    print(json.dumps({name: status for name, (status, _) in seen.items()}, indent=1))
    opened = {name: status for name, (status, _) in seen.items() if status < 400}
    assert not opened, f"the workspace's token opened: {opened}"
    # the pod is still there: it could not stop (or restart) itself through the hub either
    status = f"{hub.url}user/{SERVER}/api/status"
    assert httpx.get(status, headers={"Authorization": f"token {lead}"}, timeout=30).is_success


def _secrets(home: Home) -> dict[str, str]:
    """Every secret value of the installation that is a file under HOME."""
    files = [*(home.root / "secrets").iterdir(), home.proxy_token_file, home.service_token_file]
    files += [p for p in home.hub_dir.iterdir() if "secret" in p.name]
    values = {str(p.relative_to(home.root)): p.read_text(errors="replace").strip() for p in files}
    assert len(values) >= 3 and all(len(v) >= 16 for v in values.values()), values.keys()
    return values


def test_no_secret_of_the_installation_is_in_the_pod(workspace: tuple[Hub, str]) -> None:
    hub, lead = workspace
    environments = json.loads(run(hub, lead, ENVIRONMENTS))
    assert len(environments) >= 2, "the kernel saw no process of its pod"
    for name, value in _secrets(hub.home).items():
        for environment in environments:
            assert value not in environment, f"{name} is in the pod's environment"
