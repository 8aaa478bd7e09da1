"""A test-only kubelet: runs the pods of the stand-in API server (apiserver.py) as local processes.

It polls the API server for pods (every 50 ms) and, for each new pod:

1. validates it strictly against the Kubernetes schema (`kubernetes-validate`, version
   KUBERNETES_VERSION); a pod that does not validate, or asks for what the stand-in cannot do
   (a volume other than persistentVolumeClaim or emptyDir, `valueFrom` env, runAsNonRoot without
   a non-zero runAsUser, more than one container), is marked Failed with the reason, as a real
   kubelet refuses a pod it cannot run, so a bad manifest fails the test that sent it;
2. gives it a pod IP from its network (127.0.N.M, one whose port is free) and starts the first
   container's command + args with its env in a bubblewrap sandbox, as the pod's
   securityContext runAsUser/runAsGroup with fsGroup and supplementalGroups as extra groups
   (numbers only: no users are created), no capabilities, no new privileges when
   allowPrivilegeEscalation is false;
3. marks it Running: podIP, containerStatuses (running, ready), conditions, nodeName.

The sandbox is the pod's "image": the host's /usr, /etc, the project checkout and its Python
environment read-only (`Kubelet.image`; a test adds the folder of another environment there),
its own /proc, /dev and an empty writable /tmp (HOME is /tmp unless the pod's env names one),
and nothing else of the host, plus its volumeMounts as bind mounts: a persistentVolumeClaim is
the host folder registered for its claimName in `Kubelet.claims` (subPath below it), an
emptyDir a fresh folder; `readOnly: true` mounts are truly read-only. The pod shares the
host's network namespace, so the bind-all address 0.0.0.0 in its env and args becomes its pod
IP (in Kubernetes the pod has a network namespace of its own).

The kubelet puts a finalizer on each pod it runs, so a DELETE leaves the pod Terminating
(deletionTimestamp set) until the kubelet has stopped it: SIGTERM, SIGKILL
after the pod's grace period (at most 5 s), then the finalizer is removed and the API server
forgets the pod. SIGTERM goes to the container's command, which is PID 1 of the sandbox's PID
namespace as in a container; when it ends, the kernel ends every other process of the pod.
A pod whose process ends by itself is marked Succeeded or Failed; restartPolicy is not honoured.
Each pod's output goes to `<workdir>/<namespace>_<name>.log`.

Not enforced here, so not provable on the stand-in: NetworkPolicies (pods share the host's
network), resource limits, seccomp profiles, fsGroup's change of volume ownership, images.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate

log = logging.getLogger("standin.kubelet")

KUBERNETES_VERSION = "1.33"
FINALIZER = "standin.dossierhub.test/kubelet"
POLL_SECONDS = 0.05
MAX_GRACE_SECONDS = 5.0
PROJECT = Path(__file__).resolve().parents[2]  # the checkout, with .venv: the pods' "image"
# the stand-in "image": the system and the Python environments the pods run from
IMAGE = ("/usr", "/etc", str(PROJECT), str(Path(sys.prefix).resolve()))
SYSTEM_LINKS = ("/bin", "/sbin", "/lib", "/lib64")


class Refused(Exception):
    """A pod the kubelet will not run; the message becomes the pod's status message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class RunningPod:
    """A pod the kubelet started: its key, address, identity and process."""

    namespace: str
    name: str
    ip: str
    uid: int
    container: str
    process: subprocess.Popen[bytes]  # bubblewrap, the pod's sandbox
    main_pid: int | None  # the container's command, PID 1 in the sandbox
    log_path: Path
    grace: float
    reported_exit: bool = False
    scratch: list[Path] = field(default_factory=list)


def now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Kubelet:
    """Runs the stand-in API server's pods until `stop()`; see the module docstring."""

    def __init__(self, api_url: str, pod_network: str, workdir: Path) -> None:
        self.api = httpx.Client(base_url=api_url, timeout=10)
        self.network = ipaddress.ip_network(pod_network)
        self.workdir = workdir
        self.claims: dict[str, Path] = {}  # persistentVolumeClaim claimName -> host folder
        self.image = list(dict.fromkeys(IMAGE))  # host folders every pod sees, read-only
        self.pods: dict[tuple[str, str], RunningPod] = {}
        self.refused: dict[tuple[str, str], str] = {}  # pods marked Failed, and why
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kubelet", daemon=True)
        self.errors: list[BaseException] = []

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stops every pod still running, then the polling thread."""
        self._stopping.set()
        self._thread.join(timeout=30)
        for pod in list(self.pods.values()):
            self._kill(pod)
        self.api.close()

    # --- the loop ---

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._sync()
            except Exception as error:  # a kubelet bug must fail the test, not hang it
                log.exception("kubelet: sync failed")
                self.errors.append(error)
            self._stopping.wait(POLL_SECONDS)

    def _sync(self) -> None:
        listed = self.api.get("/api/v1/pods")
        listed.raise_for_status()
        seen = set()
        for pod in listed.json()["items"]:
            key = (pod["metadata"].get("namespace", "default"), pod["metadata"]["name"])
            seen.add(key)
            if pod["metadata"].get("deletionTimestamp"):
                self._delete(key, pod)
            elif key not in self.pods and key not in self.refused:
                self._admit(key, pod)
        for key, running in list(self.pods.items()):
            if key not in seen:  # deleted without our finalizer (it was removed by hand)
                self._kill(running)
            elif not running.reported_exit and running.process.poll() is not None:
                self._report_exit(running)
        for key in set(self.refused) - seen:
            del self.refused[key]

    def _admit(self, key: tuple[str, str], pod: dict[str, Any]) -> None:
        try:
            self._validate(pod)
            running = self._start(key, pod)
        except Refused as refusal:
            log.warning("kubelet: pod %s/%s refused: %s", *key, refusal)
            self.refused[key] = str(refusal)
            self._patch(
                key,
                {"status": {"phase": "Failed", "reason": refusal.reason, "message": str(refusal)}},
            )
            return
        self.pods[key] = running
        spec = pod["spec"]["containers"][0]
        started = now()
        self._patch(
            key,
            {
                "metadata": {
                    "finalizers": [*pod["metadata"].get("finalizers", []), FINALIZER],
                },
                "spec": {"nodeName": "standin"},
                "status": {
                    "phase": "Running",
                    "hostIP": "127.0.0.1",
                    "podIP": running.ip,
                    "podIPs": [{"ip": running.ip}],
                    "startTime": started,
                    "conditions": [
                        {"type": t, "status": "True", "lastTransitionTime": started}
                        for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
                    ],
                    "containerStatuses": [
                        {
                            "name": spec["name"],
                            "image": spec.get("image", ""),
                            "imageID": "",
                            "containerID": f"standin://{running.process.pid}",
                            "ready": True,
                            "started": True,
                            "restartCount": 0,
                            "state": {"running": {"startedAt": started}},
                        }
                    ],
                },
            },
        )
        log.info(
            "kubelet: pod %s/%s running at %s as uid %d (pid %d)",
            *key,
            running.ip,
            running.uid,
            running.process.pid,
        )

    def _delete(self, key: tuple[str, str], pod: dict[str, Any]) -> None:
        running = self.pods.pop(key, None)
        if running is not None:
            self._kill(running)
        if FINALIZER in pod["metadata"].get("finalizers", []):
            rest = [f for f in pod["metadata"]["finalizers"] if f != FINALIZER]
            self._patch(key, {"metadata": {"finalizers": rest}})
            log.info("kubelet: pod %s/%s deleted", *key)

    def _report_exit(self, running: RunningPod) -> None:
        running.reported_exit = True
        code = running.process.returncode
        log.info("kubelet: pod %s/%s exited with %d", running.namespace, running.name, code)
        terminated = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "finishedAt": now(),
        }
        self._patch(
            (running.namespace, running.name),
            {
                "status": {
                    "phase": "Succeeded" if code == 0 else "Failed",
                    "conditions": [
                        {"type": "Ready", "status": "False", "lastTransitionTime": now()}
                    ],
                    "containerStatuses": [
                        {
                            "name": running.container,
                            "ready": False,
                            "restartCount": 0,
                            "image": "",
                            "imageID": "",
                            "state": {"terminated": terminated},
                        }
                    ],
                }
            },
        )

    def _patch(self, key: tuple[str, str], patch: dict[str, Any]) -> None:
        response = self.api.patch(
            f"/api/v1/namespaces/{key[0]}/pods/{key[1]}",
            json=patch,
            headers={"Content-Type": "application/merge-patch+json"},
        )
        if response.status_code != 404:  # gone meanwhile: nothing to report on
            response.raise_for_status()

    # --- admission ---

    def _validate(self, pod: dict[str, Any]) -> None:
        try:
            kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = "/".join(str(p) for p in error.absolute_path)
            raise Refused("Invalid", f"{path}: {error.message}") from None
        containers = pod["spec"]["containers"]
        if len(containers) != 1 or pod["spec"].get("initContainers"):
            raise Refused("Unsupported", "the stand-in runs pods of exactly one container")
        for variable in containers[0].get("env", []):
            if "valueFrom" in variable:
                raise Refused("Unsupported", f"env {variable['name']}: valueFrom is not supported")

    def _identity(self, pod: dict[str, Any]) -> tuple[int, int, list[int], bool]:
        """uid, gid, extra groups, and whether privilege escalation is allowed."""
        pod_context = pod["spec"].get("securityContext", {})
        context = {**pod_context, **pod["spec"]["containers"][0].get("securityContext", {})}
        uid = context.get("runAsUser", 0)  # the stand-in image's user is root
        gid = context.get("runAsGroup", 0)
        if context.get("runAsNonRoot") and uid == 0:
            raise Refused(
                "CreateContainerConfigError",
                "runAsNonRoot is set but the container would run as uid 0",
            )
        groups = [gid, *pod_context.get("supplementalGroups", [])]
        if "fsGroup" in pod_context:
            groups.append(pod_context["fsGroup"])
        return uid, gid, sorted(set(groups)), context.get("allowPrivilegeEscalation", True)

    def _pod_ip(self, port: int) -> str:
        taken = {p.ip for p in self.pods.values()}
        for address in self.network.hosts():
            ip = str(address)
            if ip == "127.0.0.1" or ip in taken:
                continue
            with socket.socket() as probe:  # another test run may hold this address's port
                try:
                    probe.bind((ip, port))
                except OSError:
                    continue
            return ip
        raise Refused("OutOfAddresses", f"no free address in {self.network} for port {port}")

    # --- processes ---

    def _start(self, key: tuple[str, str], pod: dict[str, Any]) -> RunningPod:
        container = pod["spec"]["containers"][0]
        # no ENTRYPOINT in the stand-in image: args alone are the command (Docker's rule)
        argv = [*container.get("command", []), *container.get("args", [])]
        if not argv:
            raise Refused(
                "CreateContainerError", "no command: the stand-in image has no entrypoint"
            )
        ports = [p["containerPort"] for p in container.get("ports", [])]
        ip = self._pod_ip(ports[0] if ports else 0)
        uid, gid, groups, escalate = self._identity(pod)
        scratch: list[Path] = []
        binds = self._binds(key, pod, container, scratch)
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "HOSTNAME": key[1]}
        env.update(
            {v["name"]: v.get("value", "").replace("0.0.0.0", ip) for v in container.get("env", [])}
        )
        argv = [a.replace("0.0.0.0", ip) for a in argv]
        sandbox = self._sandbox(
            binds, container.get("workingDir") or env["HOME"], uid, gid, groups, escalate
        )
        log_path = self.workdir / f"{key[0]}_{key[1]}.log"
        info_read, info_write = os.pipe()  # bubblewrap writes the command's PID there
        try:
            with log_path.open("ab") as output:
                process = subprocess.Popen(
                    [sandbox[0], "--info-fd", str(info_write), *sandbox[1:], *argv],
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    pass_fds=(info_write,),
                )
        except BaseException:
            os.close(info_read)
            raise
        finally:
            os.close(info_write)
        try:
            main_pid = self._child_pid(info_read)
        except BaseException:  # a pod the kubelet does not track must not keep running
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise
        finally:
            os.close(info_read)
        grace = min(float(pod["spec"].get("terminationGracePeriodSeconds", 30)), MAX_GRACE_SECONDS)
        return RunningPod(
            *key, ip, uid, container["name"], process, main_pid, log_path, grace, scratch=scratch
        )

    @staticmethod
    def _child_pid(info_fd: int) -> int | None:
        """The command's PID from bubblewrap's --info-fd JSON (None if it failed to start)."""
        info = b""
        while chunk := os.read(info_fd, 4096):  # bubblewrap closes it once all is written
            info += chunk
        return json.loads(info)["child-pid"] if info else None

    def _binds(
        self,
        key: tuple[str, str],
        pod: dict[str, Any],
        container: dict[str, Any],
        scratch: list[Path],
    ) -> list[tuple[Path, str, bool]]:
        """(host folder, mount path, read-only) for each of the container's volumeMounts."""
        volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
        binds = []
        for mount in container.get("volumeMounts", []):
            volume = volumes.get(mount["name"])
            if volume is None:
                raise Refused(
                    "CreateContainerConfigError", f"volumeMount {mount['name']}: no such volume"
                )
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                if claim not in self.claims:
                    raise Refused(
                        "FailedMount",
                        f"persistentVolumeClaim {claim} is not bound (Kubelet.claims)",
                    )
                source = self.claims[claim]
                read_only = volume["persistentVolumeClaim"].get("readOnly", False)
            elif "emptyDir" in volume:
                source = self.workdir / "emptydir" / f"{key[0]}_{key[1]}_{mount['name']}"
                source.mkdir(parents=True, exist_ok=True)
                source.chmod(0o1777)
                scratch.append(source)
                read_only = False
            else:
                kinds = sorted(set(volume) - {"name"})
                raise Refused(
                    "FailedMount",
                    f"volume {mount['name']}: {kinds} volumes are not supported by the stand-in",
                )
            if mount.get("subPath"):
                source = source / mount["subPath"]
            if not source.is_dir():
                raise Refused(
                    "FailedMount", f"volumeMount {mount['name']}: {source} is not a folder"
                )
            binds.append((source, mount["mountPath"], read_only or mount.get("readOnly", False)))
        # parents first, as container runtimes mount: a /tmp volume must not hide /tmp/home/...
        return sorted(binds, key=lambda bind: len(Path(bind[1]).parts))

    def _sandbox(
        self,
        binds: list[tuple[Path, str, bool]],
        workdir: str,
        uid: int,
        gid: int,
        groups: list[int],
        escalate: bool,
    ) -> list[str]:
        bwrap, setpriv = shutil.which("bwrap"), shutil.which("setpriv")
        assert bwrap and setpriv, "the stand-in kubelet needs bubblewrap and util-linux's setpriv"
        # the command is PID 1, as in a container: when it ends, everything in the pod ends
        args = [bwrap, "--unshare-pid", "--as-pid-1", "--unshare-ipc", "--unshare-uts"]
        args += ["--die-with-parent"]
        args += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp"]
        for link in SYSTEM_LINKS:
            if Path(link).is_symlink():
                args += ["--symlink", str(Path(link).readlink()), link]
            elif Path(link).is_dir():
                args += ["--ro-bind", link, link]
        # the image's folders and the pod's volumes together, parents first: a checkout under
        # /tmp (as a CI clone may be) must not vanish under the pod's /tmp
        image = [(Path(folder), folder, True) for folder in self.image]
        for source, target, read_only in sorted(
            [*image, *binds], key=lambda bind: len(Path(bind[1]).parts)
        ):
            args += [*Kubelet._passable_parents(target)]
            args += ["--ro-bind" if read_only else "--bind", str(source), target]
        args += ["--chdir", workdir, "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--"]
        args += [
            setpriv,
            f"--reuid={uid}",
            f"--regid={gid}",
            f"--groups={','.join(map(str, groups))}",
        ]
        args += ["--inh-caps=-all", "--bounding-set=-all"]
        if not escalate:
            args.append("--no-new-privs")
        return [*args, "--"]

    @staticmethod
    def _passable_parents(path: str) -> list[str]:
        """bubblewrap makes missing leading folders 0700 (root's): the pod's user must pass."""
        args = []
        for parent in reversed(Path(path).parents[:-1]):
            args += ["--perms", "0755", "--dir", str(parent)]
        return args

    def _kill(self, running: RunningPod) -> None:
        """SIGTERM to the container's command, SIGKILL after its grace period.

        The command runs as PID 1 of the pod's PID namespace: when it ends, the kernel ends all
        else in it. (bubblewrap's --die-with-parent does not reach it: changing to the pod's uid
        clears the parent-death signal.)
        """
        self.pods.pop((running.namespace, running.name), None)
        if running.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(running.main_pid or running.process.pid, signal.SIGTERM)
            try:
                running.process.wait(timeout=running.grace)
            except subprocess.TimeoutExpired:
                log.warning(
                    "kubelet: pod %s/%s outlived its grace period: killed",
                    running.namespace,
                    running.name,
                )
                for pid in {running.main_pid, running.process.pid} - {None}:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)  # PID 1: its namespace goes with it
                running.process.wait()
        if running.main_pid is not None:
            # bubblewrap may end first; the pod is stopped when its command is
            wait_until(lambda: not _alive(running.main_pid), what=f"{running.name} to end")
        for folder in running.scratch:
            shutil.rmtree(folder, ignore_errors=True)
        log.info(
            "kubelet: pod %s/%s stopped (exit %s)",
            running.namespace,
            running.name,
            running.process.returncode,
        )


def _alive(pid: int | None) -> bool:
    """Whether `pid` runs (not ended, nor ended and waiting to be reaped)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


def wait_until(condition: Any, timeout: float = 10.0, what: str = "condition") -> None:
    """Polls `condition()` until it is true; fails naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def running_processes_of(uid: int) -> list[int]:
    """PIDs of the live processes running as `uid` (any of real, effective, saved, fs)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            lines = status.read_text().splitlines()
        except OSError:
            continue  # ended meanwhile
        fields = dict(line.split(":", 1) for line in lines if ":" in line)
        if fields["State"].split()[0] == "Z":
            continue  # ended, waiting to be reaped
        if str(uid) in fields["Uid"].split():
            found.append(int(status.parent.name))
    return found
