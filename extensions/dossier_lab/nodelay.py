"""Kernel websockets that send each message at once (TCP_NODELAY).

A `pass` execution answers with four small messages in a burst (status busy, execute_input,
execute_reply, status idle). Tornado leaves Nagle's algorithm on for websockets, so after the
first message the server holds the rest until the browser acknowledges it, and the browser
delays that acknowledgement by Linux's 40 ms minimum: every execution took ~40 ms longer than
the kernel did (measured: 48 ms per `pass` over a direct websocket, 5.5 ms with this class;
bench/bench_attribution.py). Messages are frames already: waiting to coalesce them saves no
packets worth having.
"""

from __future__ import annotations

import asyncio

from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection


class NoDelayConnection(ZMQChannelsWebsocketConnection):
    """jupyter_server's kernel websocket connection with Nagle's algorithm off."""

    def connect(self) -> asyncio.Future[None] | None:
        self.websocket_handler.set_nodelay(True)  # open(): the websocket is up
        return super().connect()


def use_nodelay(settings: dict) -> bool:
    """Make the server's kernel websockets NoDelayConnection, unless its configuration chose
    a connection class of its own (then that one is left alone). True when it was set."""
    configured = settings.get("kernel_websocket_connection_class")
    if configured not in (None, ZMQChannelsWebsocketConnection):
        return False
    settings["kernel_websocket_connection_class"] = NoDelayConnection
    return True
