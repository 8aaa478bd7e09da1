"""The only network ways in and out of a workspace sandbox (run as root, one per workspace).

A workspace has a network namespace of its own (bubblewrap's --unshare-net): it sees nothing of
the machine's network, so it can neither reach nor listen on the hub's, the service's or the
proxy's ports, nor send data anywhere. This bridge, started by the spawner outside the sandbox
(and outliving hub restarts, like the workspace), joins two ends:

- in: 127.0.0.1:PORT of the machine (where the proxy and the hub look for the server) to
  127.0.0.1:PORT inside the sandbox, where the server listens;
- out: 127.0.0.1:HUB inside the sandbox to the hub's own API port on the machine, so the
  server can check who is knocking and report activity (its token allows no more).

It ends when the sandbox's first process does (its PID and start time are checked).

With `--home` it is also the recorder of who ran what (issue 16): every inbound connection is
read by execwatch.py as it passes (never a byte changed); a kernel channels websocket opens
only with a person's own credential, checked with the hub, and each execute_request or
debug_request is recorded in memory before the frame that completes it goes on, then spooled
(`dossierhub.state.executions.write_batch`) every 2 s or 200 events, when a websocket closes
and when the bridge ends. Its inbound connections have deadlines for the client's side (a
request's head, its body, the wait between kept-alive requests), so that slow requests cannot
hold them all, and requests without a person's credential (checked with the hub, as a kernel
channel's is) hold at most ANONYMOUS_LIMIT of them, so that strangers cannot either. Without
`--home` it is the plain pump (the bench compares the two).

    python -I -m dossierhub.workspaces.netbridge --pid PID --started T --port PORT --hub HUB \
        [--home HOME --dossier ID --hub-api URL --code hash|full]

On Kubernetes the same recorder is the workspace pod's `recorder` container (pod mode,
`serve_pod`): it runs as a number of its own, listens on the pod's port PORT (below 1024: only
it holds NET_BIND_SERVICE, and the pod's sysctl keeps every other container off ports below
1024) and joins each connection to the server on the pod's 127.0.0.1:SERVER_PORT, which is
reachable from nowhere else. It spools into HOME/audit/spool/<id>, the one folder of HOME it
mounts, files readable by the service's group; it ends on SIGTERM once what it holds is spooled:

    python -I -m dossierhub.workspaces.netbridge --listen 0.0.0.0:PORT \
        --upstream 127.0.0.1:SERVER_PORT --home HOME --dossier ID --hub-api URL --code hash|full
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import ctypes
import hashlib
import json
import os
import queue
import resource
import signal
import socket
import struct
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:  # imported when recording only: the plain pump starts on the standard library
    from dossierhub.workspaces.execwatch import KernelCall

CLONE_NEWNET = 0x40000000
INBOUND_LIMIT = 256  # browsers' connections through the proxy (websockets stay open)
HUB_LIMIT = 32  # the server's calls to the hub's API
HUB_IDLE_SECONDS = 300
FLUSH_SECONDS = 2.0
FLUSH_EVENTS = 200
MAX_WAITING = 10_000  # unspooled events; past this, new executions are refused
REFUSALS_PER_MINUTE = 60
FULL = "execution records cannot be stored; ask the admin"
REUSED = "a message id already used with this kernel is refused"
USED_IDS = 20_000  # executions whose msg_id a new one may not take (~3 MB at most)
# the workspace's frames of a kernel websocket wait, as they passed, for the next batch to be
# read for outcomes; past this many bytes or chunks waiting, the connection's own thread reads
# them (a connection holds at most 32 KiB, and ~140 bytes a chunk, so ~70 KiB)
SKIM_LATER = 32 * 1024
SKIM_CHUNKS = 256
# The client's side of an inbound connection has deadlines (read when the recorder starts):
# without them anyone who reaches the proxy held all INBOUND_LIMIT connections with slow
# request heads or bodies, and the team's workspace answered 503 (red team, issue 16). The
# figures are Apache mod_reqtimeout's kind: a head whole within HEAD_SECONDS of its
# connection or its first byte; a body at BODY_MIN_RATE after BODY_GRACE_SECONDS; between
# keep-alive requests (the proxy keeps its connections for reuse) IDLE_SECONDS. The
# server's turn has none, and a websocket none once open: it stays open by design; the
# client's reading has SEND_SECONDS (below).
HEAD_SECONDS = 10.0
IDLE_SECONDS = 60.0
BODY_GRACE_SECONDS = 10.0
BODY_MIN_RATE = 16 * 1024  # bytes a second: 128 kbit/s, below any person's upload
# the client's turn to read: a send to it that moves no byte for this long ends the connection
# (nginx's send_timeout). Without it, a client that asked for a large answer (a static bundle,
# served to anyone) and read none of it held its slot for good once the buffers were full
# (red team C: INBOUND_LIMIT such clients locked a team out)
SEND_SECONDS = 60.0
# Connections whose request carries no credential the hub confirmed as a person's (a
# workspace's static bundles and its login redirect need none) hold at most this many of the
# INBOUND_LIMIT at once; past it such a request gets a 503 at once. Without it anyone who
# reached the proxy held all 256 without logging in: ten pipelined requests for the 2.5 MB
# bundle, read by nobody, held ten connections a minute each (red team C). 32 is far above
# what the team's own first visits need (a page before the workspace cookie, the OAuth
# callback) and leaves 224 to people who are logged in.
ANONYMOUS_LIMIT = 32
RETRY_SECONDS = 30  # the 503's Retry-After
BUSY = "the workspace serves no more requests without a login now; log in, or try again later"


def start_time(pid: int) -> str | None:
    """When process `pid` started (clock ticks after boot, /proc/<pid>/stat field 22)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _enter_netns(fd: int) -> None:
    """Move the calling thread into the network namespace `fd` refers to."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"setns: {os.strerror(error)}")


class Sandboxed(threading.Thread):
    """A thread inside the sandbox's network namespace that makes sockets there for others
    (a socket keeps the namespace it was made in, whichever thread uses it)."""

    def __init__(self, netns: int):
        super().__init__(daemon=True)
        self.netns = netns
        self.requests: queue.Queue[tuple[Callable[[], object], queue.Queue]] = queue.Queue()
        self.ready = threading.Event()
        self.failed: BaseException | None = None

    def run(self) -> None:
        try:
            _enter_netns(self.netns)
        except OSError as exc:
            self.failed = exc
            return
        finally:
            self.ready.set()
        while True:
            make, answer = self.requests.get()
            try:
                answer.put(make())
            except OSError as exc:
                answer.put(exc)

    def call(self, make: Callable[[], object]) -> object:
        answer: queue.Queue = queue.Queue()
        self.requests.put((make, answer))
        result = answer.get()
        if isinstance(result, OSError):
            raise result
        return result


def _listener(port: int, host: str = "127.0.0.1") -> socket.socket:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # each message goes on at once (Linux gives accepted sockets the listener's setting):
    # with Nagle, a reply's later small messages waited for the client's ACK, which Linux
    # delays 40 ms: a `pass` took 48 ms through the bridge instead of 7 (bench_attribution)
    server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    server.bind((host, port))
    server.listen(64)
    return server


def _connector(port: int) -> Callable[[], socket.socket]:
    def connect() -> socket.socket:
        made = socket.create_connection(("127.0.0.1", port), timeout=10)
        made.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as _listener says
        return made

    return connect


class _Joined:
    """Two connections pumped both ways; when both directions end, both are closed and the
    slot is given back."""

    def __init__(self, a: socket.socket, b: socket.socket, release: Callable[[], None]):
        self.a, self.b, self.release = a, b, release
        self.lock = threading.Lock()
        self.running = 2

    def start(self) -> None:
        for source, sink in ((self.a, self.b), (self.b, self.a)):
            threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for end in (sink, source):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
        with self.lock:
            self.running -= 1
            last = self.running == 0
        if last:
            self.a.close()
            self.b.close()
            self.release()


class Recorder:
    """The execute events of one bridge, batched in memory and spooled in order. An event is
    in memory before its frame goes on; what cannot be spooled waits, and past MAX_WAITING
    waiting events `record` says no (the bridge then refuses the execution)."""

    def __init__(self, write: Callable[[str, list[dict[str, Any]]], object], relay_id: str):
        self.write, self.relay_id = write, relay_id
        self.lock = threading.Lock()
        self.spooling = threading.Lock()  # one writer at a time keeps batches in order
        self.events: list[dict[str, Any]] = []
        self.unwritten: list[tuple[str, list[dict[str, Any]]]] = []
        self.waiting = 0
        self.seq = 0
        # (kernel, msg_id) -> its event while still in memory, None once spooled
        self.replies: collections.OrderedDict[tuple[str, str], dict[str, Any] | None] = (
            collections.OrderedDict()
        )
        self.due = threading.Event()
        self.failing = False
        # read before each batch is taken: the outcomes in what the workspace sent meanwhile
        # (Watch.read_replies), so that they join their executions in the batch
        self.before_batch: Callable[[], None] | None = None

    def record(self, events: list[dict[str, Any]], *, always: bool = False) -> bool:
        """Keep `events` to be spooled; False (refuse the execution) once MAX_WAITING wait, or
        while the spool cannot be written: what waits in memory is lost when the bridge ends
        with the disk still full, and a kernel fills the disk its workspace shares with the
        spool (a pod's recorder has no root's reserve; on one machine inodes have none),
        then had its executions kept in memory only until the workspace stopped (red team C)."""
        with self.lock:
            if (self.failing or self.waiting + len(events) > MAX_WAITING) and not always:
                return False
            for event in events:
                self.events.append(event)
                if event["event"] == "execute":
                    self.replies[(event["kernel"], event["msg_id"])] = event
                    while len(self.replies) > MAX_WAITING:
                        self.replies.popitem(last=False)
            self.waiting += len(events)
            if len(self.events) >= FLUSH_EVENTS:
                self.due.set()
        return True

    def outcome(self, kernel: str, msg_id: str, outcome: str, at: float | None = None) -> None:
        """The outcome of an execution, read from its execute_reply (`at`: when that passed,
        as time.time(); now if not said)."""
        with self.lock:
            key = (kernel, msg_id)
            if key not in self.replies:
                return  # not an execution this bridge recorded
            event = self.replies.pop(key)
            if event is not None:
                event["outcome"] = outcome
                return
        when = datetime.fromtimestamp(time.time() if at is None else at, UTC)
        self.record(
            [
                {
                    "event": "outcome",
                    "at": when.isoformat(timespec="microseconds"),
                    "kernel": kernel,
                    "msg_id": msg_id,
                    "outcome": outcome,
                }
            ],
            always=True,
        )

    def flush(self) -> None:
        with self.spooling:
            if self.before_batch is not None:
                self.before_batch()
            with self.lock:
                taken, self.events = self.events, []
                if taken:
                    for key in self.replies:
                        self.replies[key] = None
                self.due.clear()
            if taken:
                self.seq += 1
                self.unwritten.append((f"{self.relay_id}-{self.seq:08d}", taken))
            while self.unwritten:
                batch, events = self.unwritten[0]
                try:
                    # no other thread holds them now: drafts are formatted here, under the
                    # same keep-and-retry as the write (a formatting that raised, a
                    # MemoryError, lost the batch and ended the recorder's thread: red team D)
                    from dossierhub.workspaces.execwatch import finish

                    for event in events:
                        finish(event)
                    self.write(batch, events)
                except Exception as exc:  # any failure: keep the batch, say so, retry later
                    if not self.failing:
                        print(
                            f"netbridge: execution records cannot be spooled: {exc}",
                            file=sys.stderr,
                            flush=True,
                        )
                    self.failing = True
                    return
                with self.lock:
                    self.unwritten.pop(0)
                    self.waiting -= len(events)
                if self.failing:
                    print(
                        "netbridge: execution records are spooled again",
                        file=sys.stderr,
                        flush=True,
                    )
                    self.failing = False

    def run(self) -> None:
        while True:
            self.due.wait(FLUSH_SECONDS)
            self.flush()


class People:
    """Who a token belongs to, asked of the hub as the workspace server asks it
    (HubAuth.user_for_token: GET <hub api>/user), cached for the hub's auth cache time.
    Only a person counts: a `kind: user` that is not a workspace account."""

    def __init__(self, hub_api: str, cache_seconds: float, workspace_prefix: str):
        if not hub_api.startswith(("http://", "https://")):
            raise ValueError(f"--hub-api {hub_api!r} is not an http(s) URL")
        self.url = hub_api.rstrip("/") + "/user"
        self.cache_seconds, self.prefix = cache_seconds, workspace_prefix
        self.cache: dict[str, tuple[float, str | None]] = {}
        self.lock = threading.Lock()

    def person(self, token: str) -> str | None:
        with self.lock:
            cached = self.cache.get(token)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        headers = {"Authorization": f"token {token}"}
        request = urllib.request.Request(self.url, headers=headers)  # noqa: S310 (http(s), above)
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
                model = json.loads(answer.read(1024 * 1024))
        except urllib.error.HTTPError as exc:
            if exc.code not in (401, 403, 404):
                raise
            model = None
        name = model.get("name") if isinstance(model, dict) else None
        kind = model.get("kind") if isinstance(model, dict) else None
        found = name if kind == "user" and isinstance(name, str) else None
        if found is not None and found.startswith(self.prefix):
            found = None
        with self.lock:
            if len(self.cache) > 1000:
                self.cache.clear()
            self.cache[token] = (time.monotonic() + self.cache_seconds, found)
        return found


class Deadlines(threading.Thread):
    """Cuts inbound connections whose client is too slow with its request (the module's
    deadlines, read here so that a test can shorten them): a 408 when the request was
    started and not answered, then the connection is closed and its slot given back."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.head, self.idle = HEAD_SECONDS, IDLE_SECONDS
        self.grace, self.rate = BODY_GRACE_SECONDS, BODY_MIN_RATE
        self.tick = min(0.5, self.head / 4)
        self.lock = threading.Lock()
        self.connections: set[_Watched] = set()
        self.stopped = threading.Event()
        self.cut, self.told = 0, 0.0

    def add(self, connection: _Watched) -> None:
        with self.lock:
            self.connections.add(connection)

    def discard(self, connection: _Watched) -> None:
        with self.lock:
            self.connections.discard(connection)

    def due(self, phase: str, since: float, read: int) -> float | None:
        """When a connection waiting for `phase` since `since` (having read `read` bytes of a
        body) is too slow; None: no deadline."""
        if phase == "head":
            return since + self.head
        if phase == "idle":
            return since + self.idle
        if phase == "body":
            return since + self.grace + read / self.rate
        return None

    def run(self) -> None:
        while not self.stopped.wait(self.tick):
            now = time.monotonic()
            with self.lock:
                connections = list(self.connections)
            for connection in connections:
                if connection.overdue(now):
                    connection.cut()
                    self.cut += 1
            if self.cut and now - self.told >= 60:  # a flood of them: one line a minute
                print(
                    f"netbridge: {self.cut} connection(s) closed for a slow request (a head "
                    f"takes at most {self.head:g} s, a body at least {self.rate} bytes/s)",
                    file=sys.stderr,
                    flush=True,
                )
                self.cut, self.told = 0, now


@dataclass(frozen=True)
class Asked:
    """Who made a kernel call, and how many kernels the bridge knew of then."""

    person: str
    known: int


class Watch:
    """What the recording bridge knows beyond one connection."""

    def __init__(self, args: argparse.Namespace, recorder: Recorder, people: People):
        self.server_user = f"dossier-{args.dossier}"
        self.code_full = args.code == "full"
        self.recorder, self.people = recorder, people
        self.paths: collections.OrderedDict[str, str] = collections.OrderedDict()
        self.minute, self.refusals, self.dropped = 0, 0, 0
        # every kernel an answer named, with the count of kernels known before it (a session's
        # start started a kernel when its answer names one unknown when it was asked)
        self.kernels: collections.OrderedDict[str, int] = collections.OrderedDict()
        self.session_kernels: collections.OrderedDict[str, str] = collections.OrderedDict()
        self.learned = 0
        self.learning = threading.Lock()
        self.deadlines = Deadlines()
        # places for connections whose current request has no person's credential (read
        # here, not at import, so that a test can make it small)
        self.anonymous = threading.BoundedSemaphore(ANONYMOUS_LIMIT)
        # the message ids of the USED_IDS executions recorded last (a digest of kernel and
        # msg_id each): an execute_reply names its request by msg_id alone
        self.used: collections.OrderedDict[bytes, None] = collections.OrderedDict()
        self.using = threading.Lock()
        # kernel websockets whose workspace frames may wait to be read for outcomes
        self.replying: set[_Watched] = set()
        self.replying_lock = threading.Lock()
        self.reading = threading.Lock()  # one reader at a time keeps the outcomes in order
        recorder.before_batch = self.read_replies

    def read_replies(self) -> None:
        """Read the outcomes in every kernel websocket's waiting frames (before a batch, or
        once one connection has too many waiting), and give them to the recorder in the order
        they passed, whichever connection carried them: the first reply to a request is its
        outcome, as when each was read as it passed (a forged reply on a colleague's
        connection read first won a third of the time: red team E)."""
        with self.reading:
            with self.replying_lock:
                connections = list(self.replying)
            found: list[tuple[float, str, str, str]] = []
            for connection in connections:
                try:
                    readable = connection.read_replies(found)
                except Exception as exc:  # whatever it raised must not end the caller's thread
                    print(
                        f"netbridge: a connection ended on {exc!r:.200}",
                        file=sys.stderr,
                        flush=True,
                    )
                    readable = False
                if not readable:
                    connection.stop()  # out of step: no outcome can be told any more
            found.sort(key=lambda outcome: outcome[0])  # stable: one connection's stay in order
            for at, kernel, msg_id, outcome in found:
                self.recorder.outcome(kernel, msg_id, outcome, at)

    def first_use(self, kernel: str, msg_id: str) -> bool:
        """Whether no execution recorded lately used `msg_id` in `kernel`. Every kernel's
        messages reach every connection to it, so a member sees a colleague's msg_ids; a
        request of their own under one took the colleague's outcome: a run of b.devries that
        succeeded showed as an error (red team C). No client of Jupyter's reuses one."""
        key = hashlib.blake2b(f"{kernel}\0{msg_id}".encode(), digest_size=16).digest()
        with self.using:
            if key in self.used:
                return False
            self.used[key] = None
            while len(self.used) > USED_IDS:
                self.used.popitem(last=False)
        return True

    def refused(self, person: str | None, kernel: str | None, reason: str) -> None:
        """Record a refusal; at most REFUSALS_PER_MINUTE (anyone who reaches the proxy can
        be refused: a flood of them must not flood the audit log)."""
        minute = int(time.monotonic() // 60)
        if minute != self.minute:
            if self.dropped:
                print(f"netbridge: {self.dropped} refusals not recorded", file=sys.stderr)
            self.minute, self.refusals, self.dropped = minute, 0, 0
        self.refusals += 1
        if self.refusals > REFUSALS_PER_MINUTE:
            self.dropped += 1
            return
        print(
            f"netbridge: refused ({person or 'nobody'}, kernel {kernel}): {reason[:300]}",
            file=sys.stderr,
            flush=True,
        )
        at = datetime.now(UTC).isoformat(timespec="microseconds")
        event = {"event": "refused", "at": at, "person": person, "kernel": kernel}
        self.recorder.record([{**event, "reason": reason[:300]}])

    def learn_paths(self, sessions: list[tuple[str, str]]) -> None:
        for kernel, path in sessions:
            self.paths[kernel] = path
            self.paths.move_to_end(kernel)
        while len(self.paths) > 1000:
            self.paths.popitem(last=False)

    def learn(self, models: list[tuple[str | None, str, str | None]]) -> None:
        """What the workspace's answers named: sessions' kernels, kernels (the last 1000)."""
        with self.learning:
            for session, kernel, _ in models:
                if kernel not in self.kernels:
                    self.learned += 1
                    self.kernels[kernel] = self.learned
                if session is not None:
                    self.session_kernels[session] = kernel
            for known in (self.kernels, self.session_kernels):
                while len(known) > 1000:
                    known.popitem(last=False)

    def kernel_events(
        self, call: KernelCall, models: list[tuple[str | None, str, str | None]], asked: Asked
    ) -> list[dict[str, Any]]:
        """The `kernel` events of `call`, which the workspace answered with success naming
        `models`."""
        new: list[tuple[str | None, str | None]]  # (kernel, notebook path)
        if call.of_session and call.action == "start":
            with self.learning:  # a session on a kernel that ran already started none
                new = [
                    (k, p)
                    for _, k, p in models
                    if self.kernels.get(k, asked.known + 1) > asked.known
                ]
        elif call.of_session:
            new = [(self.session_kernels.get(call.session or ""), None)]
        else:
            new = [(call.kernel or next((k for _, k, _ in models), None), None)]
        self.learn(models)
        at = datetime.now(UTC).isoformat(timespec="microseconds")
        return [
            {
                "event": "kernel",
                "at": at,
                "person": asked.person,
                "kernel": kernel,
                "action": call.action,
                "path": path or (self.paths.get(kernel) if kernel else None),
            }
            for kernel, path in new
        ]

    def person_of(self, tokens: list[str]) -> str | None:
        """The one person every credential names, or None."""
        people = {self.people.person(token) for token in tokens}
        return people.pop() if len(people) == 1 else None


_PHRASES = {
    400: "Bad Request",
    403: "Forbidden",
    408: "Request Timeout",
    503: "Service Unavailable",
}
_PAST = {
    "start": "started",
    "restart": "restarted",
    "interrupt": "interrupted",
    "shutdown": "shut down",
}


def _forbidden(reason: str, status: int = 403) -> bytes:
    body = (reason + "\n").encode()
    head = f"HTTP/1.1 {status} {_PHRASES[status]}\r\n"
    if status == 503:
        head += f"Retry-After: {RETRY_SECONDS}\r\n"
    return (
        head.encode()
        + b"Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


class _Watched(_Joined):
    """An inbound connection pumped both ways and read as it passes (execwatch.py): bytes
    from the client go on only once read; a kernel websocket's execute events are recorded
    before the chunk that completes them goes on."""

    def __init__(
        self, a: socket.socket, b: socket.socket, release: Callable[[], None], watch: Watch
    ):
        super().__init__(a, b, release)
        # every send to the client (answers, websocket frames, a 408 from Deadlines) raises
        # EAGAIN once it has moved nothing for SEND_SECONDS: that ends both directions
        seconds = SEND_SECONDS
        timeout = struct.pack("ll", int(seconds), int(seconds % 1 * 1_000_000))
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeout)
        from dossierhub.workspaces import execwatch

        self.x = execwatch
        self.watch = watch
        self.exchange = execwatch.Exchange()
        self.changed = threading.Condition(self.lock)
        # kernel, person of the upgrade asked for last
        self.upgrade: tuple[str, str | None] | None = None
        self.asking: tuple[str | None, str | None] = (None, None)  # kernel, person: refusals
        self.asked: Asked | None = None  # who made the kernel call waiting for its answer
        self.socket: Any = None  # execwatch.KernelSocket once a kernel websocket is open
        self.raw = False  # another websocket (collaboration): pumped as it comes
        self.ended = False
        self.anonymous = False  # holds one of Watch.anonymous's places
        # what the client is waiting to send (execwatch.Exchange.waiting_for), since when, and
        # how much of its bytes had been read then (a body's progress): Deadlines reads them
        self.phase, self.since, self.mark = "head", time.monotonic(), 0
        # a kernel websocket's frames from the workspace, as they passed (time.time(), bytes),
        # not yet read for outcomes: reading each as it came cost the bridge's thread more
        # than passing it on (bench_attribution.py's cpu_per_execution); read in a batch, by
        # whoever holds `skimming`, the code runs warm. The queue only this connection's
        # server thread appends to, and `queued` only it counts; `skimmed` counts under
        # `skimming`
        self.unread: collections.deque[tuple[float, bytes]] = collections.deque()
        self.queued = self.skimmed = 0
        self.skimming = threading.Lock()
        self.unreadable = False

    def start(self) -> None:
        self.watch.deadlines.add(self)
        try:
            threading.Thread(target=self._run, args=(self._from_client,), daemon=True).start()
            threading.Thread(target=self._run, args=(self._from_server,), daemon=True).start()
        except RuntimeError:  # no thread to be had: _serve closes it, nothing to watch
            self.watch.deadlines.discard(self)
            raise

    def _run(self, pump: Callable[[], None]) -> None:
        try:
            pump()
        except OSError:
            pass
        except Exception as exc:
            # fail closed: whatever the reading raised ends this connection; a thread gone
            # without `_end` left it open, half read, its slot never given back
            # (INBOUND_LIMIT of them and no one gets in)
            print(f"netbridge: a connection ended on {exc!r:.200}", file=sys.stderr, flush=True)
        finally:
            self._end()

    def _end(self) -> None:
        for end in (self.a, self.b):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
        with self.lock:
            self.ended = True
            self.changed.notify_all()
            self.running -= 1
            last = self.running == 0
        if last:
            self.watch.deadlines.discard(self)
            if self.anonymous:
                self.anonymous = False
                self.watch.anonymous.release()
            self.a.close()
            self.b.close()
            self.release()
            if self.socket is not None:
                try:
                    self.watch.recorder.flush()  # reads what passed before the end, first
                finally:  # whatever it raised, the connection is not read again (red team E)
                    with self.watch.replying_lock:
                        self.watch.replying.discard(self)

    def _rearm(self) -> None:
        """(Under the lock, after the exchange moved.) A new phase starts its deadline."""
        phase = self.exchange.waiting_for()
        if phase != self.phase:
            self.phase, self.since, self.mark = phase, time.monotonic(), self.exchange.consumed

    def overdue(self, now: float) -> bool:
        # a connection busy under its lock is reading what came, or waiting for the hub to
        # say whose a token is (People: 10 s at most): not slow, and Deadlines' one thread
        # must not wait on it (a slow hub held every other connection's cut with it)
        if not self.lock.acquire(blocking=False):
            return False
        try:
            if self.ended:
                return False
            read = self.exchange.consumed - self.mark
            due = self.watch.deadlines.due(self.phase, self.since, read)
        finally:
            self.lock.release()
        return due is not None and now > due

    def cut(self) -> None:
        """Close a connection whose client is too slow: with a 408 when its request was
        started and the server has not begun to answer it (a keep-alive connection that
        sent nothing more is closed without a word, as servers do)."""
        with self.lock:
            started = self.phase == "body" or (self.phase == "head" and self.exchange.received)
            unanswered = not self.exchange.answering
        if started and unanswered:
            # without waiting: a client that left an earlier answer unread has no room for it,
            # and a wait here held Deadlines' one thread, every other connection's cut with it
            with contextlib.suppress(OSError):
                self.a.send(_forbidden("the request came too slowly", 408), socket.MSG_DONTWAIT)
        self.stop()

    def stop(self) -> None:
        """End both directions (from any thread: each pump's recv returns, and it ends)."""
        for end in (self.a, self.b):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def _refuse(self, reason: str, status: int = 403) -> NoReturn:
        kernel, person = self.asking
        if status == 503:
            # without waiting, as the 408: a stranger's client that reads nothing (the flood
            # this answers) must not hold this thread or the slot for SEND_SECONDS
            with contextlib.suppress(OSError):
                self.a.send(_forbidden(reason, status), socket.MSG_DONTWAIT)
            raise OSError(reason)  # ends both directions, gives the slot back
        if self.socket is not None:
            kernel, person = self.socket.kernel, self.socket.person
            self.a.sendall(self.x.close_frame(reason, masked=False))
        else:
            self.a.sendall(_forbidden(reason, status))
        if status == 403 or self.socket is not None:
            self.watch.refused(person, kernel, reason)
        raise OSError(reason)  # ends both directions

    def _from_client(self) -> None:
        held = bytearray()  # the client's bytes h11 has not read yet
        while data := self.a.recv(65536):
            if self.socket is None and not self.raw:
                held += data
                data = self._requests(held, data)  # what follows a 101, if any
                if not data:
                    continue
            if self.socket is not None:
                self._client_frames(data)
            else:
                self.b.sendall(data)

    def _requests(self, held: bytearray, data: bytes) -> bytes:
        """Read the client's requests; send on what has been read. While the server has yet
        to answer, the client's next bytes wait (a pipelined upgrade is read only once the
        request before it is answered). Returns the bytes past a 101."""
        while True:
            with self.lock:
                if self.exchange.switched:
                    leftover = bytes(held)
                    held.clear()
                    return leftover
                try:
                    self._read_requests(data)
                except self.x.Refused as exc:
                    self._refuse(exc.reason, exc.status)
                self._rearm()
                data = b""
                ready = len(held) - self.exchange.unread()
                chunk = bytes(held[:ready])
                del held[:ready]
                paused = self.exchange.paused and not self.ended
            if chunk:
                self.b.sendall(chunk)
            if not paused:
                return b""
            with self.lock:
                while self.exchange.paused and not self.ended and not self.exchange.switched:
                    self.changed.wait()

    def _read_requests(self, data: bytes) -> None:
        for request in self.exchange.client_events(data):
            self.upgrade, self.asked, self.asking = None, None, (None, None)
            self.x.check_request(request, self.watch.server_user)
            kernel = self.x.kernel_of(request.target)
            call = None if kernel else self.x.kernel_call(request.method, request.target)
            tokens = self.x.credentials(request, self.watch.server_user)
            try:
                person = self.watch.person_of(tokens) if tokens else None
                failed = None
            except (OSError, ValueError) as exc:  # fail closed: nobody's
                person, failed = None, exc
            if kernel is None and call is None:
                self._sort(person)
                continue
            self.asking = (kernel or (call.kernel if call else None), person)
            if failed is not None:
                raise self.x.Refused(f"the hub could not say who this is ({failed})", 403)
            if kernel is not None:
                self.upgrade = (kernel, person)
            if person is None:
                what = "opens" if call is None else f"is {_PAST[call.action]}"
                raise self.x.Refused(f"a kernel {what} only with a person's own credential", 403)
            self._sort(person)
            if call is not None:
                self.asked = Asked(person, self.watch.learned)

    def _sort(self, person: str | None) -> None:
        """(Under the lock.) Count this connection as its current request is: a person's
        (the hub confirmed its credential; looked up in People's cache after the first
        time) or nobody's, which takes one of Watch.anonymous's places; none free: 503."""
        if person is not None:
            if self.anonymous:
                self.anonymous = False
                self.watch.anonymous.release()
        elif not self.anonymous:
            if not self.watch.anonymous.acquire(blocking=False):
                raise self.x.Refused(BUSY, 503)
            self.anonymous = True

    def _client_frames(self, data: bytes) -> None:
        try:
            events = self.socket.from_client(data, draft=True)
        except self.x.Refused as exc:
            self._refuse(exc.reason)
        if events:
            for event in events:
                event["path"] = event["path"] or self.watch.paths.get(event["kernel"])
                if event["event"] == "execute" and not self.watch.first_use(
                    event["kernel"], event["msg_id"]
                ):
                    self._refuse(REUSED)
            if not self.watch.recorder.record(events):
                print(f"netbridge: {FULL}", file=sys.stderr, flush=True)
                self._refuse(FULL)
        if self.socket.client.closed:  # nothing after a close goes on, whoever would read it
            data = data[: len(data) - self.socket.client.dropped]
        if data:
            self.b.sendall(data)

    def _from_server(self) -> None:
        while data := self.b.recv(65536):
            if self.socket is not None:
                self._server_frames(data)
            elif self.raw:
                self.a.sendall(data)
            else:
                with self.lock:
                    try:
                        rest = self.exchange.server_bytes(data)
                    except self.x.Refused:
                        return
                    if self.exchange.calls:
                        self._kernel_calls()
                    if self.exchange.sessions:
                        self.watch.learn_paths(self.exchange.sessions)
                        self.exchange.sessions = []
                    if self.exchange.seen:
                        self.watch.learn(self.exchange.seen)
                        self.exchange.seen = []
                    if self.exchange.switched:
                        self._switch()
                    self._rearm()
                    self.changed.notify_all()
                self.a.sendall(data)
                if rest and self.socket is not None:
                    self._outcomes(rest)

    def _kernel_calls(self) -> None:
        """(Under the lock.) Record the kernel calls the workspace answered with success
        (after the fact: the call is the workspace's to carry out or not)."""
        events = []
        for call, models in self.exchange.calls:
            if self.asked is not None:
                events += self.watch.kernel_events(call, models, self.asked)
        self.exchange.calls, self.asked = [], None
        if events:
            self.watch.recorder.record(events, always=True)

    def _switch(self) -> None:
        if self.upgrade is None:
            self.raw = True
            return
        kernel, person = self.upgrade
        assert person is not None  # refused before it reached the server
        self.socket = self.x.KernelSocket(
            kernel, person, self.exchange.subprotocol, code_full=self.watch.code_full
        )
        with self.watch.replying_lock:
            self.watch.replying.add(self)

    def _server_frames(self, data: bytes) -> None:
        # on first, read later: only what a person sends must be recorded before it goes on
        # (reading first delayed every reply by the parse: ~0.7 ms of a 7 ms `pass`); an
        # outcome waits for the batch its execution is in
        self.a.sendall(data)
        self._outcomes(data)

    def _outcomes(self, data: bytes) -> None:
        self.unread.append((time.time(), data))
        self.queued += len(data)
        if self.queued - self.skimmed > SKIM_LATER or len(self.unread) > SKIM_CHUNKS:
            self.watch.read_replies()  # every connection's: their outcomes stay in order
        if self.unreadable:
            raise OSError("the workspace's frames could not be read")

    def read_replies(self, found: list[tuple[float, str, str, str]]) -> bool:
        """Read the workspace's frames that wait, adding (when it passed, kernel, msg_id,
        outcome) of each reply to `found`; False if they cannot be read (its frames are out
        of step: the connection is to end). Watch.read_replies calls it."""
        with self.skimming:
            while self.unread:
                at, data = self.unread.popleft()
                self.skimmed += len(data)
                if self.unreadable:
                    continue
                try:
                    outcomes = self.socket.from_server(data)
                except self.x.Refused:
                    self.unreadable = True
                    continue
                found += ((at, self.socket.kernel, msg_id, outcome) for msg_id, outcome in outcomes)
            return not self.unreadable


def _serve(
    server: socket.socket,
    connect: Callable[[], socket.socket],
    limit: int,
    idle: float | None,
    join: Callable[[socket.socket, socket.socket, Callable[[], None]], _Joined] = _Joined,
) -> None:
    """Accept on `server`; join each connection to a new one made by `connect`. At most
    `limit` connections at once (a workspace cannot make root run threads or hold the hub's
    descriptors without end); a connection quiet for `idle` seconds is closed."""
    slots = threading.BoundedSemaphore(limit)
    while True:
        try:
            client, _ = server.accept()
        except OSError:
            if server.fileno() == -1:
                return  # closed: the bridge is ending (or a test's is)
            time.sleep(0.1)
            continue
        if not slots.acquire(blocking=False):
            client.close()
            continue
        try:
            upstream = connect()
        except OSError:
            client.close()  # the other end is not listening (yet): the caller retries
            slots.release()
            continue
        for end in (client, upstream):
            end.settimeout(idle)
        try:
            join(client, upstream, slots.release).start()
        except RuntimeError:  # no thread to be had: drop this one, keep serving
            client.close()
            upstream.close()
            slots.release()


def _recording(args: argparse.Namespace, spool_mode: int = 0o600) -> tuple[Recorder, Watch]:
    """The recorder of this bridge (site packages: h11, websockets, tornado's cookie parser
    and the spool's writer come from the installation)."""
    from dossierhub.state.directory import WORKSPACE_PREFIX
    from dossierhub.state.executions import write_batch
    from dossierhub.state.home import Home

    home = Home(Path(args.home))
    relay_id = f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{os.getpid()}"
    recorder = Recorder(
        lambda batch, events: write_batch(home, args.dossier, batch, events, mode=spool_mode),
        relay_id,
    )
    people = People(args.hub_api, args.auth_cache_seconds, WORKSPACE_PREFIX)
    watch = Watch(args, recorder, people)
    watch.deadlines.start()
    return recorder, watch


def _address(value: str) -> tuple[str, int]:
    host, colon, port = value.rpartition(":")
    if not colon or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{value!r} is not HOST:PORT")
    return host, int(port)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m dossierhub.workspaces.netbridge")
    # one machine: the sandbox's process, its start, the server's port, the hub's API port
    parser.add_argument("--pid", type=int)
    parser.add_argument("--started")
    parser.add_argument("--port", type=int)
    parser.add_argument("--hub", type=int)
    # a pod: where the recorder listens, where the server does (the pod's loopback)
    parser.add_argument("--listen", type=_address)
    parser.add_argument("--upstream", type=_address)
    # the recorder (all of them, or none: the plain pump)
    parser.add_argument("--home")
    parser.add_argument("--dossier")
    parser.add_argument("--hub-api")
    parser.add_argument("--code", choices=("hash", "full"), default="hash")
    parser.add_argument("--auth-cache-seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    sandbox = (args.pid, args.started, args.port, args.hub)
    if args.listen or args.upstream:
        if any(given is not None for given in sandbox):
            parser.error("--listen/--upstream (a pod) take no --pid, --started, --port, --hub")
        if not (args.listen and args.upstream and args.home):
            # a pod's only way in records, or there is no reason for it to be there
            parser.error("a pod's recorder needs --listen, --upstream and --home")
        if args.upstream[0] != "127.0.0.1":
            parser.error("--upstream must be 127.0.0.1:PORT: the pod's server listens there only")
    elif any(given is None for given in sandbox):
        parser.error("--pid, --started, --port and --hub are needed (or --listen for a pod)")
    if args.home and not (args.dossier and args.hub_api):
        parser.error("--home needs --dossier and --hub-api")
    return args


def serve_pod(args: argparse.Namespace) -> int:
    """Pod mode: the recorder as the pod's only way in (see the module's docstring). There is
    no sandbox to watch: it runs until SIGTERM (the kubelet's stop), then spools what it
    holds. Batches are group-readable: their folder's group is the service's (apply gives it
    with the setgid bit), which reads and removes them and is not root on a cluster."""
    recorder, watch = _recording(args, spool_mode=0o640)
    threading.Thread(target=recorder.run, daemon=True).start()
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    host, port = args.listen
    server = _listener(port, host)
    join = lambda a, b, release: _Watched(a, b, release, watch)  # noqa: E731
    connect = _connector(args.upstream[1])
    threading.Thread(
        target=_serve, args=(server, connect, INBOUND_LIMIT, None, join), daemon=True
    ).start()
    print(
        f"netbridge: {host}:{port} -> 127.0.0.1:{args.upstream[1]} (recording executions)",
        flush=True,
    )
    try:
        while not stopping.wait(1.0):
            pass
    finally:
        server.close()
        recorder.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
    threading.stack_size(256 * 1024)
    if args.listen:
        return serve_pod(args)
    # the namespace is held first, then its process checked: a PID reused in between is caught
    netns = os.open(f"/proc/{args.pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    if start_time(args.pid) != args.started:
        print("netbridge: the sandbox is gone", file=sys.stderr)
        return 1
    inside = Sandboxed(netns)
    inside.start()
    inside.ready.wait()
    if inside.failed is not None:
        print(f"netbridge: {inside.failed}", file=sys.stderr)
        return 1
    join: Callable[[socket.socket, socket.socket, Callable[[], None]], _Joined] = _Joined
    recorder = None
    if args.home:
        recorder, watch = _recording(args)
        threading.Thread(target=recorder.run, daemon=True).start()
        join = lambda a, b, release: _Watched(a, b, release, watch)  # noqa: E731
        # the spawner's stop and a machine's shutdown: what is in memory is spooled first
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    outside = _listener(args.port)  # this thread stays in the machine's namespace
    hub_inside = inside.call(lambda: _listener(args.hub))
    assert isinstance(hub_inside, socket.socket)
    to_server = _connector(args.port)
    threading.Thread(
        target=_serve,
        args=(outside, lambda: inside.call(to_server), INBOUND_LIMIT, None, join),
        daemon=True,
    ).start()
    threading.Thread(
        target=_serve,
        args=(hub_inside, _connector(args.hub), HUB_LIMIT, HUB_IDLE_SECONDS),
        daemon=True,
    ).start()
    what = " (recording executions)" if recorder else ""
    print(
        f"netbridge: 127.0.0.1:{args.port} -> sandbox, sandbox -> hub :{args.hub}{what}", flush=True
    )
    try:
        while start_time(args.pid) == args.started:
            time.sleep(0.5)
    finally:
        if recorder is not None:
            recorder.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
