"""A test-only kubelet: runs the pods of the stand-in API server (apiserver.py) as local processes.

It polls the API server for pods (every 50 ms) and, for each new pod:

1. validates it strictly against the Kubernetes schema (`kubernetes-validate`, version
   KUBERNETES_VERSION); a pod that does not validate, or asks for what the stand-in cannot do
   (a volume other than persistentVolumeClaim or emptyDir, `valueFrom` env, init containers,
   hostNetwork, runAsNonRoot without a non-zero runAsUser), or what the restricted Pod Security
   standard forbids and a runtime would otherwise give (an added capability other than
   NET_BIND_SERVICE, shareProcessNamespace), or an unsafe sysctl (SysctlForbidden), is marked
   Failed with the reason, as a real kubelet refuses a pod it cannot run, so a bad manifest
   fails the test that sent it;
2. gives it a pod IP from its network (127.0.N.M, one whose declared ports are free on the
   host) and a network namespace of its own (podnet.py: a pause process holds it; only the
   declared containerPorts are reachable from the host, at podIP:port, and from inside only
   the host ports in `Kubelet.egress`, at 127.0.0.1:port); sets the pod's sysctls there, over
   the runtime's default `net.ipv4.ip_unprivileged_port_start=0` (containerd's and Docker's);
3. starts every container's command + args with its env in a bubblewrap sandbox of its own
   (own PID, IPC and UTS namespaces and mounts; the pod's network namespace, shared), as its
   securityContext's runAsUser/runAsGroup over the pod's, with fsGroup and supplementalGroups
   as extra groups (numbers only: no users are created), no new privileges when
   allowPrivilegeEscalation is false;
4. marks it Running: podIP, a containerStatus per container (running, ready), conditions,
   nodeName.

Capabilities are those a container runtime gives through the CRI: none but the added ones,
as if every container dropped ALL (the runtime's default set is not given). An added
NET_BIND_SERVICE is in the container's bounding set; a root container's command has it. A
non-root container's command has it only if its executable carries it as a file capability,
as on containerd and CRI-O, which set no ambient capabilities (kubernetes/kubernetes#56374):
bubblewrap mounts the image nosuid, so a test declares such an executable in
`Kubelet.file_capabilities` (path -> capabilities) and the stand-in gives them to that
command as ambient capabilities (unlike a file capability, inherited by what it executes).

The sandbox is the container's "image": the host's /usr, /etc, the project checkout and its
Python environment read-only (`Kubelet.image`; a test adds the folder of another environment
there), its own /proc, /dev and an empty writable /tmp (HOME is /tmp unless the pod's env
names one), and nothing else of the host, plus its volumeMounts as bind mounts: a
persistentVolumeClaim is the host folder registered for its claimName in `Kubelet.claims`
(subPath below it), an emptyDir a fresh folder per pod (shared by its containers);
`readOnly: true` mounts are truly read-only.

The kubelet puts a finalizer on each pod it runs, so a DELETE leaves the pod Terminating
(deletionTimestamp set) until the kubelet has stopped it: SIGTERM to every container, SIGKILL
after the pod's grace period (at most 5 s), then the pause process, then the finalizer is
removed and the API server forgets the pod. SIGTERM goes to each container's command, which is
PID 1 of its sandbox's PID namespace as in a container; when it ends, the kernel ends every
other process of that container. A container whose command ends by itself is marked
terminated (exit code, reason) and the pod's other containers go on running (a real kubelet
would restart it under the pod's restartPolicy; the stand-in honours no restartPolicy); the
pod is marked Succeeded or Failed once all its containers have ended. Each container's
output goes to `<workdir>/<namespace>_<name>_<container>.log`.

Not enforced here, so not provable on the stand-in: NetworkPolicies (egress is what a test
registers, not what a policy allows), resource limits, seccomp profiles, fsGroup's change of
volume ownership, images.
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
from podnet import RUNTIME_SYSCTLS, SAFE_SYSCTLS, PodPorts, Relay, start_pause, write_sysctls

log = logging.getLogger("standin.kubelet")

KUBERNETES_VERSION = "1.33"
FINALIZER = "standin.dossierhub.test/kubelet"
POLL_SECONDS = 0.05
MAX_GRACE_SECONDS = 5.0
PROJECT = Path(__file__).resolve().parents[2]  # the checkout, with .venv: the pods' "image"
# the stand-in "image": the system and the Python environments the pods run from
IMAGE = ("/usr", "/etc", str(PROJECT), str(Path(sys.prefix).resolve()))
SYSTEM_LINKS = ("/bin", "/sbin", "/lib", "/lib64")
# what the restricted Pod Security standard lets a container add
ADDABLE_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})


class Refused(Exception):
    """A pod the kubelet will not run; the message becomes the pod's status message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class RunningContainer:
    """One container of a running pod: its identity and process."""

    name: str
    image: str
    uid: int
    process: subprocess.Popen[bytes]  # bubblewrap, the container's sandbox
    main_pid: int | None  # the container's command, PID 1 in the sandbox
    log_path: Path
    started: str
    terminated: dict[str, Any] | None = None  # its status once its command has ended

    def status(self) -> dict[str, Any]:
        state = (
            {"terminated": self.terminated}
            if self.terminated
            else {"running": {"startedAt": self.started}}
        )
        return {
            "name": self.name,
            "image": self.image,
            "imageID": "",
            "containerID": f"standin://{self.process.pid}",
            "ready": self.terminated is None,
            "started": self.terminated is None,
            "restartCount": 0,
            "state": state,
        }


@dataclass
class RunningPod:
    """A pod the kubelet started: its key, address, network and containers.

    `uid`, `process`, `main_pid` and `container` are its first container's (the pod's main
    one, as the tests that started with one container per pod read them).
    """

    namespace: str
    name: str
    ip: str
    containers: list[RunningContainer]
    pause: subprocess.Popen[bytes]  # holds the pod's network namespace
    ports: PodPorts  # its forwarded ports (podnet.py)
    grace: float
    reported_exit: bool = False
    scratch: list[Path] = field(default_factory=list)

    @property
    def uid(self) -> int:
        return self.containers[0].uid

    @property
    def process(self) -> subprocess.Popen[bytes]:
        return self.containers[0].process

    @property
    def main_pid(self) -> int | None:
        return self.containers[0].main_pid

    @property
    def container(self) -> str:
        return self.containers[0].name

    def by_name(self, name: str) -> RunningContainer:
        (found,) = [c for c in self.containers if c.name == name]
        return found


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
        # host ports pods reach at 127.0.0.1:<port> (for pods started after they are added)
        self.egress: set[int] = set()
        # executables of the "image" that carry file capabilities: path -> capability names
        self.file_capabilities: dict[str, set[str]] = {}
        self.pods: dict[tuple[str, str], RunningPod] = {}
        self.refused: dict[tuple[str, str], str] = {}  # pods marked Failed, and why
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kubelet", daemon=True)
        self._relay: Relay | None = None
        self.errors: list[BaseException] = []

    def start(self) -> None:
        self._relay = Relay()
        self._thread.start()

    def stop(self) -> None:
        """Stops every pod still running, then the polling thread."""
        self._stopping.set()
        self._thread.join(timeout=30)
        for pod in list(self.pods.values()):
            self._kill(pod)
        if self._relay is not None:
            self._relay.close()
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
            elif not running.reported_exit:
                self._report_exits(running)
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
                    "containerStatuses": [c.status() for c in running.containers],
                },
            },
        )
        log.info(
            "kubelet: pod %s/%s running at %s: %s",
            *key,
            running.ip,
            ", ".join(f"{c.name} as uid {c.uid} (pid {c.process.pid})" for c in running.containers),
        )

    def _delete(self, key: tuple[str, str], pod: dict[str, Any]) -> None:
        running = self.pods.pop(key, None)
        if running is not None:
            self._kill(running)
        if FINALIZER in pod["metadata"].get("finalizers", []):
            rest = [f for f in pod["metadata"]["finalizers"] if f != FINALIZER]
            self._patch(key, {"metadata": {"finalizers": rest}})
            log.info("kubelet: pod %s/%s deleted", *key)

    def _report_exits(self, running: RunningPod) -> None:
        """Marks each container whose command ended terminated; the pod ends with the last."""
        ended = False
        for container in running.containers:
            code = container.process.poll()
            if container.terminated is None and code is not None:
                ended = True
                log.info(
                    "kubelet: pod %s/%s container %s exited with %d",
                    running.namespace,
                    running.name,
                    container.name,
                    code,
                )
                container.terminated = {
                    "exitCode": code,
                    "reason": "Completed" if code == 0 else "Error",
                    "finishedAt": now(),
                }
        if not ended:
            return
        status: dict[str, Any] = {
            "conditions": [
                {"type": t, "status": "False", "lastTransitionTime": now()}
                for t in ("ContainersReady", "Ready")
            ],
            "containerStatuses": [c.status() for c in running.containers],
        }
        if all(c.terminated for c in running.containers):
            running.reported_exit = True
            failed = any(c.terminated and c.terminated["exitCode"] for c in running.containers)
            status["phase"] = "Failed" if failed else "Succeeded"
        self._patch((running.namespace, running.name), {"status": status})

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
        spec = pod["spec"]
        if spec.get("initContainers") or spec.get("ephemeralContainers"):
            raise Refused("Unsupported", "the stand-in runs no init or ephemeral containers")
        if spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC"):
            raise Refused("Unsupported", "the stand-in gives no pod the host's namespaces")
        if spec.get("shareProcessNamespace"):
            raise Refused(
                "Unsupported",
                "shareProcessNamespace: the stand-in gives each container its own processes",
            )
        for container in spec["containers"]:
            for variable in container.get("env", []):
                if "valueFrom" in variable:
                    raise Refused(
                        "Unsupported", f"env {variable['name']}: valueFrom is not supported"
                    )
            added = container.get("securityContext", {}).get("capabilities", {}).get("add", [])
            if set(added) - ADDABLE_CAPABILITIES:
                raise Refused(
                    "Forbidden",
                    f'violates PodSecurity "restricted": container {container["name"]} adds '
                    f"{sorted(set(added) - ADDABLE_CAPABILITIES)} (only NET_BIND_SERVICE may be "
                    "added)",
                )
        self._sysctls(pod)

    @staticmethod
    def _sysctls(pod: dict[str, Any]) -> dict[str, str]:
        """The sysctls to set in the pod's network namespace: the runtime's, then the pod's."""
        asked = pod["spec"].get("securityContext", {}).get("sysctls", [])
        forbidden = sorted({s["name"] for s in asked} - SAFE_SYSCTLS)
        if forbidden:
            raise Refused(
                "SysctlForbidden",
                f"forbidden sysctl: {', '.join(forbidden)} not in the safe set (the kubelet "
                "allows no unsafe sysctl)",
            )
        return {**RUNTIME_SYSCTLS, **{s["name"]: s["value"] for s in asked}}

    @staticmethod
    def _identity(
        pod: dict[str, Any], container: dict[str, Any]
    ) -> tuple[int, int, list[int], bool]:
        """uid, gid, extra groups, and whether privilege escalation is allowed."""
        pod_context = pod["spec"].get("securityContext", {})
        context = {**pod_context, **container.get("securityContext", {})}
        uid = context.get("runAsUser", 0)  # the stand-in image's user is root
        gid = context.get("runAsGroup", 0)
        if context.get("runAsNonRoot") and uid == 0:
            raise Refused(
                "CreateContainerConfigError",
                f"container {container['name']}: runAsNonRoot is set but the container would "
                "run as uid 0",
            )
        groups = [gid, *pod_context.get("supplementalGroups", [])]
        if "fsGroup" in pod_context:
            groups.append(pod_context["fsGroup"])
        return uid, gid, sorted(set(groups)), context.get("allowPrivilegeEscalation", True)

    def _pod_ip(self, ports: list[int]) -> str:
        taken = {p.ip for p in self.pods.values()}
        for address in self.network.hosts():
            ip = str(address)
            if ip == "127.0.0.1" or ip in taken:
                continue
            if all(_free(ip, port) for port in ports or [0]):
                return ip
        raise Refused("OutOfAddresses", f"no free address in {self.network} for ports {ports}")

    # --- processes ---

    def _start(self, key: tuple[str, str], pod: dict[str, Any]) -> RunningPod:
        """The pod's network namespace, sysctls and ports, then each of its containers;
        what fails on the way leaves nothing running."""
        spec = pod["spec"]
        sysctls = self._sysctls(pod)
        for container in spec["containers"]:
            self._identity(pod, container)  # refuse before anything starts
            if not [*container.get("command", []), *container.get("args", [])]:
                raise Refused(
                    "CreateContainerError",
                    f"container {container['name']}: no command, and the stand-in image has "
                    "no entrypoint",
                )
        ports = [p["containerPort"] for c in spec["containers"] for p in c.get("ports", [])]
        ip = self._pod_ip(ports)
        grace = min(float(spec.get("terminationGracePeriodSeconds", 30)), MAX_GRACE_SECONDS)
        assert self._relay is not None, "the kubelet is not started"
        pause = start_pause(f"{key[0]}/{key[1]}", self.workdir / f"{key[0]}_{key[1]}.log")
        running = RunningPod(*key, ip, [], pause, PodPorts(), grace)
        try:
            namespace = os.open(f"/proc/{pause.pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                try:
                    write_sysctls(namespace, self._relay.host, sysctls)
                except OSError as error:
                    raise Refused(
                        "CreatePodSandboxError", f"sysctls {sysctls}: {error.strerror}"
                    ) from None
                try:
                    running.ports = self._relay.open(namespace, ip, ports, sorted(self.egress))
                except OSError as error:
                    raise Refused("CreatePodSandboxError", f"ports of {ip}: {error}") from None
            finally:
                os.close(namespace)
            for container in spec["containers"]:
                running.containers.append(
                    self._start_container(key, pod, container, pause.pid, running.scratch)
                )
        except BaseException:  # a pod the kubelet does not track must not keep running
            self._kill(running)
            raise
        return running

    def _start_container(
        self,
        key: tuple[str, str],
        pod: dict[str, Any],
        container: dict[str, Any],
        pause_pid: int,
        scratch: list[Path],
    ) -> RunningContainer:
        # no ENTRYPOINT in the stand-in image: args alone are the command (Docker's rule)
        argv = [*container.get("command", []), *container.get("args", [])]
        uid, gid, groups, escalate = self._identity(pod, container)
        binds = self._binds(key, pod, container, scratch)
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "HOSTNAME": key[1]}
        env.update({v["name"]: v.get("value", "") for v in container.get("env", [])})
        added = set(container.get("securityContext", {}).get("capabilities", {}).get("add", []))
        ambient = set()
        if uid != 0:  # a non-root command has an added capability only from its file's
            ambient = added & self.file_capabilities.get(argv[0], set())
        sandbox = self._sandbox(
            binds,
            container.get("workingDir") or env["HOME"],
            (uid, gid, groups, escalate),
            added,
            ambient,
        )
        nsenter = shutil.which("nsenter")
        assert nsenter, "the stand-in kubelet needs util-linux's nsenter"
        log_path = self.workdir / f"{key[0]}_{key[1]}_{container['name']}.log"
        info_read, info_write = os.pipe()  # bubblewrap writes the command's PID there
        joined = [nsenter, f"--net=/proc/{pause_pid}/ns/net", "--", sandbox[0]]  # the pod's net
        try:
            with log_path.open("ab") as output:
                process = subprocess.Popen(
                    [*joined, "--info-fd", str(info_write), *sandbox[1:], *argv],
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
        except BaseException:  # a container the kubelet does not track must not keep running
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise
        finally:
            os.close(info_read)
        return RunningContainer(
            container["name"],
            container.get("image", ""),
            uid,
            process,
            main_pid,
            log_path,
            now(),
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
        identity: tuple[int, int, list[int], bool],
        added: set[str],
        ambient: set[str],
    ) -> list[str]:
        uid, gid, groups, escalate = identity
        bwrap, setpriv = shutil.which("bwrap"), shutil.which("setpriv")
        assert bwrap and setpriv, "the stand-in kubelet needs bubblewrap and util-linux's setpriv"
        # the command is PID 1, as in a container: when it ends, everything in it ends
        args = [bwrap, "--unshare-pid", "--as-pid-1", "--unshare-ipc", "--unshare-uts"]
        args += ["--die-with-parent"]
        args += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp"]
        for link in SYSTEM_LINKS:
            if Path(link).is_symlink():
                args += ["--symlink", str(Path(link).readlink()), link]
            elif Path(link).is_dir():
                args += ["--ro-bind", link, link]
        # the image's folders and the container's volumes together, parents first: a checkout
        # under /tmp (as a CI clone may be) must not vanish under the container's /tmp
        image = [(Path(folder), folder, True) for folder in self.image]
        for source, target, read_only in sorted(
            [*image, *binds], key=lambda bind: len(Path(bind[1]).parts)
        ):
            args += [*Kubelet._passable_parents(target)]
            args += ["--ro-bind" if read_only else "--bind", str(source), target]
        args += ["--chdir", workdir, "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        for capability in sorted(added):
            args += ["--cap-add", f"CAP_{capability}"]
        args += [
            "--",
            setpriv,
            f"--reuid={uid}",
            f"--regid={gid}",
            f"--groups={','.join(map(str, groups))}",
        ]
        # the bounding set holds the added capabilities alone; a root command has them, a
        # non-root one only as ambient capabilities (see the module docstring)
        bounding = ",".join(["-all", *(f"+{c.lower()}" for c in sorted(added))])
        inheritable = ",".join(["-all", *(f"+{c.lower()}" for c in sorted(ambient))])
        args += [f"--inh-caps={inheritable}", f"--bounding-set={bounding}"]
        if ambient:
            args.append(f"--ambient-caps={','.join(f'+{c.lower()}' for c in sorted(ambient))}")
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
        """SIGTERM to each container's command, SIGKILL after the pod's grace period, then
        the pod's ports and its pause process.

        Each command runs as PID 1 of its container's PID namespace: when it ends, the kernel
        ends all else in it. (bubblewrap's --die-with-parent does not reach it: changing to
        the pod's uid clears the parent-death signal.)
        """
        self.pods.pop((running.namespace, running.name), None)
        # a command outlives its bubblewrap when that ends first (its parent-death signal
        # fires when the kubelet's thread ends): the command, not bubblewrap, is the container
        alive = [c for c in running.containers if not _ended(c)]
        for container in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(container.main_pid or container.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + running.grace
        for container in alive:
            try:
                wait_until(
                    lambda c=container: _ended(c),
                    timeout=max(0.0, deadline - time.monotonic()),
                    what=f"{container.name} to end",
                )
            except TimeoutError:
                log.warning(
                    "kubelet: pod %s/%s container %s outlived its grace period: killed",
                    running.namespace,
                    running.name,
                    container.name,
                )
                for pid in {container.main_pid, container.process.pid} - {None}:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)  # PID 1: its namespace goes with it
                wait_until(lambda c=container: _ended(c), what=f"{container.name} killed")
        for container in running.containers:
            container.process.wait()
        if self._relay is not None:
            self._relay.shut(running.ports)
        running.pause.kill()
        running.pause.wait()
        for folder in running.scratch:
            shutil.rmtree(folder, ignore_errors=True)
        log.info(
            "kubelet: pod %s/%s stopped (exit %s)",
            running.namespace,
            running.name,
            [c.process.returncode for c in running.containers],
        )


def _free(ip: str, port: int) -> bool:
    """Whether the host can listen on ip:port (another test run may hold it)."""
    with socket.socket() as probe:
        try:
            probe.bind((ip, port))
        except OSError:
            return False
    return True


def _ended(container: RunningContainer) -> bool:
    """Whether the container's command (and its bubblewrap) have ended."""
    if container.main_pid is not None and _alive(container.main_pid):
        return False
    return container.process.poll() is not None


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
