"""The stand-in kubelet's pod network: a network namespace per pod and the only ways in and out.

A pod's network namespace is held by a "pause" process (`unshare --net`, its loopback up), as
a real runtime's pause container holds it; every container of the pod joins it (`nsenter
--net`), so they share 127.0.0.1 and ports, as a pod's containers do. The host reaches the pod
only through the kubelet, at the pod IP (127.0.N.M, an address of the host's loopback):

- **in**: for each declared `containerPort`, the kubelet listens on the host at podIP:port and
  joins each connection to podIP:port inside the pod. Inside, loopback holds all of 127/8, so a
  server bound to 0.0.0.0 or to the pod IP is reached; one bound to 127.0.0.1 is not, as in a
  real pod. A port no container declares is not reachable from the host at all. A connection
  to a declared port nothing listens on inside is accepted and then reset (a real pod refuses
  it outright). The pod sees the connection come from its own loopback (a real pod sees the
  peer's address).
- **out**: the host ports in `egress` (the stand-in API server's, and those a test registers)
  are reachable from inside at 127.0.0.1:<port>, each connection joined to 127.0.0.1:<port> on
  the host. Nothing else of the host's network is.

The kubelet makes sockets inside a pod's namespace by switching one thread into it for the
system call alone (setns(2) acts on the calling thread; a socket keeps the namespace it was
made in), so one asyncio loop in a thread of its own carries every pod's connections, with
Nagle's algorithm off on both legs (a relay must not add the 40 ms delayed-ACK stalls).

Sysctls are written the same way, in the pod's namespace, before any container starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("standin.podnet")

CLONE_NEWNET = 0x40000000
Target = tuple[socket.socket, tuple[str, int]]
CHUNK = 65536
_libc = ctypes.CDLL(None, use_errno=True)

# the safe sysctls of Kubernetes 1.33 that live in a pod's network namespace; anything else a
# pod asks for fails it as SysctlForbidden (kernel.shm_rmid_forced, the one safe sysctl of
# another namespace, is not offered: the stand-in's containers do not share an IPC namespace)
SAFE_SYSCTLS = frozenset(
    f"net.ipv4.{name}"
    for name in (
        "ip_local_port_range",
        "ip_local_reserved_ports",
        "ip_unprivileged_port_start",
        "ping_group_range",
        "tcp_fin_timeout",
        "tcp_keepalive_intvl",
        "tcp_keepalive_probes",
        "tcp_keepalive_time",
        "tcp_syncookies",
    )
)
# what containerd and Docker set in every pod's namespace unless the pod sets it itself
RUNTIME_SYSCTLS = {"net.ipv4.ip_unprivileged_port_start": "0"}


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"setns into a network namespace: {os.strerror(error)}")


@contextlib.contextmanager
def inside(namespace: int, host: int) -> Iterator[None]:
    """This thread in the network namespace `namespace` for the block, then back in `host`.

    A thread left in a pod's namespace would carry the test process's later sockets there:
    failing to switch back is fatal, not an error to recover from.
    """
    _setns(namespace)
    try:
        yield
    finally:
        try:
            _setns(host)
        except OSError:
            log.critical("podnet: a thread could not leave a pod's network namespace")
            os.abort()


def start_pause(name: str, log_path: Path) -> subprocess.Popen[bytes]:
    """The process holding a new network namespace, its loopback up; ready when it returns."""
    unshare, ip, setpriv = shutil.which("unshare"), shutil.which("ip"), shutil.which("setpriv")
    assert unshare and ip and setpriv, "the stand-in kubelet needs util-linux and iproute2"
    script = f"{ip} link set lo up && echo ready && exec sleep infinity"
    # setpriv --pdeathsig: the pause ends with the kubelet, as the containers do
    with log_path.open("ab") as output:
        pause = subprocess.Popen(
            [unshare, "--net", "--", setpriv, "--pdeathsig", "KILL", "--", "sh", "-c", script],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=output,
            start_new_session=True,
        )
    assert pause.stdout is not None
    ready = pause.stdout.readline()
    pause.stdout.close()
    if ready.strip() != b"ready":
        pause.kill()
        pause.wait()
        raise RuntimeError(f"the pause process of {name} did not start (see {log_path})")
    return pause


def write_sysctls(namespace: int, host: int, values: dict[str, str]) -> None:
    """Writes `values` (name -> value) in the network namespace `namespace`."""
    with inside(namespace, host):
        for name, value in values.items():
            Path("/proc/sys", *name.split(".")).write_text(value)


@dataclass
class PodPorts:
    """A pod's listeners (host side for `in`, pod side for `out`) and open connections."""

    namespace: int | None = None  # the pod's network namespace, held open while it runs
    servers: list[asyncio.Server] = field(default_factory=list)
    connections: set[asyncio.Task[None]] = field(default_factory=set)


class Relay:
    """One asyncio loop, in a thread of its own, carrying every pod's forwarded connections."""

    def __init__(self) -> None:
        self.host = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="kubelet-podnet", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()
        os.close(self.host)

    def _call(self, make: Callable[[], Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(make(), self.loop).result(timeout=10)

    def open(self, namespace: int, ip: str, ports: list[int], egress: list[int]) -> PodPorts:
        """Listens for the pod's `ports` on the host at `ip` and, inside, for `egress` at
        127.0.0.1; a port the host cannot give fails with OSError and nothing left open."""
        held = os.dup(namespace)  # the caller's may close; connections come later
        pod = PodPorts(held)
        try:
            for port in ports:
                listener = _listener((ip, port))
                self._serve(pod, listener, lambda p=port: (self._in_pod(held), (ip, p)))
            for port in egress:
                with inside(namespace, self.host):
                    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                _bind(listener, ("127.0.0.1", port))
                self._serve(pod, listener, lambda p=port: (_on_host(), ("127.0.0.1", p)))
        except BaseException:
            self.shut(pod)
            raise
        return pod

    def shut(self, pod: PodPorts) -> None:
        """Closes the pod's listeners and every connection still open through them."""

        async def shut() -> None:
            for server in pod.servers:
                server.close()
            for task in list(pod.connections):
                task.cancel()
            await asyncio.gather(*pod.connections, return_exceptions=True)

        self._call(shut)
        if pod.namespace is not None:
            os.close(pod.namespace)
            pod.namespace = None

    def _serve(self, pod: PodPorts, listener: socket.socket, target: Callable[[], Target]) -> None:
        async def joined(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            pod.connections.add(task)
            try:
                await _join(reader, writer, target)
            finally:
                pod.connections.discard(task)

        async def serve() -> asyncio.Server:
            return await asyncio.start_server(joined, sock=listener)

        pod.servers.append(self._call(serve))

    def _in_pod(self, namespace: int) -> socket.socket:
        with inside(namespace, self.host):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        return sock


def _listener(address: tuple[str, int]) -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    _bind(listener, address)
    return listener


def _bind(listener: socket.socket, address: tuple[str, int]) -> None:
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(128)
        listener.setblocking(False)
    except BaseException:
        listener.close()
        raise


def _on_host() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    return sock


async def _join(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    target: Callable[[], Target],
) -> None:
    """Carries one accepted connection to `target()` (a socket and the address to connect it
    to) and back until both sides have ended; a target that refuses resets the connection."""
    sock, address = target()
    try:
        await asyncio.get_running_loop().sock_connect(sock, address)
        far_reader, far_writer = await asyncio.open_connection(sock=sock)
    except OSError:
        sock.close()
        _reset(writer)
        return
    for side in (writer, far_writer):
        peer = side.get_extra_info("socket")
        if peer is not None:
            peer.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        await asyncio.gather(_pump(reader, far_writer), _pump(far_reader, writer))
    finally:
        for side in (writer, far_writer):
            side.close()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(CHUNK):
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()  # a half-close passes on as one
    except (ConnectionError, OSError):
        writer.close()


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
    writer.close()
