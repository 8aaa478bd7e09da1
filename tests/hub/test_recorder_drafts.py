"""What the recording path holds for a person's messages (issue 16, red team D): an execute
event is recorded before its frame goes on and formatted (time, hash, first line) in the
recorder's batch, off the message's path; a fragmented message is assembled by the bridge's
own frame reader. What a draft holds until that batch, what the batch spools, what a message
in fragments holds. Real readers (execwatch on browser-made frames), the bridge's real
Recorder, the real spool writer. About a second."""

from __future__ import annotations

import gc
import hashlib
import json
import tracemalloc
import uuid

from jupyter_server.services.kernels.connection.base import serialize_msg_to_ws_v1
from websockets.frames import BINARY, CONT, Frame

from dossierhub.state.executions import batch_of, spooled, write_batch
from dossierhub.state.home import Home
from dossierhub.workspaces import execwatch, netbridge
from dossierhub.workspaces.execwatch import V1, KernelSocket

KERNEL = "0b6a4f1e-7d0c-4c55-9f53-2a1d3c4b5e6f"
MIB = 1024 * 1024


def execute_frame(code: str, msg_id: str, cell: str | None = None) -> bytes:
    """A browser's v1 execute_request frame (masked, as JupyterLab sends it)."""
    header = {"msg_id": msg_id, "msg_type": "execute_request", "session": "s", "version": "5.3"}
    content = {"code": code, "silent": False, "user_expressions": {}}
    metadata = {"cellId": cell} if cell is not None else {}
    msg = {"header": header, "parent_header": {}, "metadata": metadata, "content": content}
    payload = serialize_msg_to_ws_v1(msg, "shell", lambda part: json.dumps(part).encode())
    return Frame(BINARY, payload).serialize(mask=True)


def send_large(reader: KernelSocket, recorder: netbridge.Recorder, i: int) -> None:
    """One 4 MiB execution read and recorded as the bridge does (its frame and code are
    dropped here once read: only what the recorder keeps stays); odd ones short code with a
    4 MiB cell id (a draft kept it whole until its batch)."""
    if i % 2:
        frame = execute_frame(f"run({i})\n#" + "x" * 4 * MIB, f"m{i}")
    else:
        frame = execute_frame(f"run({i})", f"m{i}", cell="c" * 4 * MIB)
    events = reader.from_client(frame, draft=True)
    assert recorder.record(events)


def test_large_executions_waiting_for_their_batch_do_not_hold_their_code(tmp_path):
    """A member floods the kernel with 10 MiB executions over a few connections: each draft
    waited for the recorder's batch (every 2 s or 200 events; up to 10,000 while it lags)
    holding its whole code to hash, so the root bridge could be made to hold gigabytes, and
    an OOM kill takes the unspooled records of executions that already went on with it.
    Before drafts an event held its hash and first line; so it must again for large code."""
    home = Home(tmp_path)
    home.execution_spool_root.parent.mkdir()
    recorder = netbridge.Recorder(
        lambda batch, events: write_batch(home, "armoede", batch, events), "relay"
    )
    reader = KernelSocket(KERNEL, "a.jansen", V1, code_full=False)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(6):
            send_large(reader, recorder, i)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < MIB, f"6 executions waiting for their batch hold {held / MIB:.1f} MiB"
    recorder.flush()
    (path,) = spooled(home)
    events = json.loads(path.read_text())["events"]
    assert [e["first_line"] for e in events] == [f"run({i})" for i in range(6)]
    code = "run(5)\n#" + "x" * 4 * MIB
    assert events[5]["code_sha256"] == hashlib.sha256(code.encode()).hexdigest()
    assert events[4]["cell_id"] == "c" * execwatch.CLAIM


def test_a_batch_of_drafts_with_outcomes_spools_as_the_service_reads_it(tmp_path):
    """Drafts and outcomes racing the batch: an outcome that comes before the batch is in
    the event, one that comes after is an outcome event of the next batch; every execution
    is spooled once, formatted, in order; the service's reader takes both batches."""
    home = Home(tmp_path)
    home.execution_spool_root.parent.mkdir()
    written: list[tuple[str, list]] = []

    def write(batch: str, events: list) -> None:
        written.append((batch, [dict(e) for e in events]))
        write_batch(home, "armoede", batch, events)

    recorder = netbridge.Recorder(write, "relay")
    reader = KernelSocket(KERNEL, "a.jansen", V1, code_full=True)
    ids = [uuid.uuid4().hex for _ in range(3)]
    for n, msg_id in enumerate(ids):
        assert recorder.record(reader.from_client(execute_frame(f"x = {n}", msg_id), draft=True))
    recorder.outcome(KERNEL, ids[0], "ok")
    recorder.flush()
    recorder.outcome(KERNEL, ids[1], "error")
    recorder.outcome(KERNEL, ids[1], "ok")  # a second reply changes nothing
    recorder.flush()
    (first, one), (second, two) = written
    assert [e["msg_id"] for e in one] == ids and [e["outcome"] for e in one] == ["ok", None, None]
    assert [e["code"] for e in one] == ["x = 0", "x = 1", "x = 2"]
    assert all("_pending" not in e and isinstance(e["at"], str) for e in one)
    assert [(e["event"], e["msg_id"], e["outcome"]) for e in two] == [("outcome", ids[1], "error")]
    batch_of("armoede", first, one)
    batch_of("armoede", second, two)


def frames_held(fragments: int, size: int) -> int:
    """The bytes a bridge's frame reader holds for a message of `fragments` masked
    continuation frames of `size` bytes each, fed in 64 KiB reads as the bridge gets them."""
    one = Frame(BINARY, b"y" * size, fin=False).serialize(mask=True)
    more = bytearray(Frame(CONT, b"y" * size, fin=False).serialize(mask=True)) * 4500
    frames = execwatch.Frames(execwatch.MAX_MESSAGE)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        assert frames.feed(one) == []
        for _ in range(fragments // 4500):  # tracemalloc slows each frame: few
            assert frames.feed(more) == []
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_a_message_in_tiny_or_empty_fragments_holds_no_more_than_its_bytes():
    """A message in 1-byte fragments held ~40 bytes a fragment (10 MiB of them: 400 MB of the
    root bridge for 70 MB sent); empty fragments, which no size limit counts, held 8 bytes
    each without end. tornado keeps a fragmented message's bytes only."""
    assert frames_held(4_500, 1) < 15_000
    assert frames_held(4_500, 0) < 8_000


def test_a_batch_whose_formatting_fails_is_kept_and_spooled_later(tmp_path, monkeypatch):
    """The recorder formats drafts in its batch: were that to raise (a MemoryError under a
    flood), the batch was lost, though its executions had gone on, and the recorder's thread
    ended. Now it is kept as an unwritable batch is: executions are refused meanwhile, and
    the next flush spools it whole."""
    home = Home(tmp_path)
    home.execution_spool_root.parent.mkdir()
    recorder = netbridge.Recorder(
        lambda batch, events: write_batch(home, "armoede", batch, events), "relay"
    )
    reader = KernelSocket(KERNEL, "a.jansen", V1, code_full=False)
    assert recorder.record(reader.from_client(execute_frame("x = 1", "m1"), draft=True))
    real, failed = execwatch.finish, []

    def out_of_memory(event: dict) -> dict:
        if not failed:
            failed.append(event["msg_id"])
            raise MemoryError
        return real(event)

    monkeypatch.setattr(execwatch, "finish", out_of_memory)
    recorder.flush()
    assert failed == ["m1"] and not spooled(home)
    assert not recorder.record(reader.from_client(execute_frame("x = 2", "m2"), draft=True))
    recorder.flush()
    (path,) = spooled(home)
    (event,) = json.loads(path.read_text())["events"]
    assert (event["msg_id"], event["first_line"]) == ("m1", "x = 1")
    assert recorder.record(reader.from_client(execute_frame("x = 3", "m3"), draft=True))
