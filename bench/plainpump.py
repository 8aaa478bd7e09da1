"""A plain pump into a workspace's sandbox, for bench_attribution.py: netbridge's own pump
(its Sandboxed thread, listener, connector and accept loop), without the recorder, from a port
of the machine to the server's port in the sandbox. netbridge itself uses one port number for
both ends, so a second one cannot run beside the workspace's own bridge.

    python -I bench/plainpump.py PID STARTED OUTSIDE INSIDE

Standard library and netbridge only: it starts in half a second. Prints "ready" once it
listens; runs until killed.
"""

from __future__ import annotations

import argparse
import os
import sys

from dossierhub.workspaces import netbridge


def pump(pid: int, started: str, outside: int, inside: int) -> int:
    """Join 127.0.0.1:`outside` of the machine to 127.0.0.1:`inside` in the sandbox of `pid`
    (TCP_NODELAY on both ends, as netbridge's own listener and connector set it)."""
    netns = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    if netbridge.start_time(pid) != started:
        print("pump: the sandbox is gone", file=sys.stderr)
        return 1
    sandboxed = netbridge.Sandboxed(netns)
    sandboxed.start()
    sandboxed.ready.wait()
    if sandboxed.failed is not None:
        print(f"pump: {sandboxed.failed}", file=sys.stderr)
        return 1
    listener = netbridge._listener(outside)
    to_server = netbridge._connector(inside)
    print("ready", flush=True)
    netbridge._serve(listener, lambda: sandboxed.call(to_server), netbridge.INBOUND_LIMIT, None)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("pid", type=int)
    parser.add_argument("started")
    parser.add_argument("outside", type=int)
    parser.add_argument("inside", type=int)
    args = parser.parse_args()
    return pump(args.pid, args.started, args.outside, args.inside)


if __name__ == "__main__":
    sys.exit(main())
