"""The relay's NATS connection: one that NATS accepted as the relay's (the stream made or updated), and
the window its publishes go through.

``NATS_URL`` may name several servers (a cluster's nodes, comma-separated): the client connects to any
and, when that node dies, reconnects to another. The client keeps reconnecting for as long as it takes; each kind of error is logged once until it
connects again; a stop ends the wait for a first connection (:class:`Stopped`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import nats

from adapters.followers.relay.errors import NATS_ERRORS, Stopped
from adapters.followers.relay.stream import ensure_stream
from adapters.followers.relay.window import PublishWindow
from adapters.servers.nats_users import RELAY, connect_options, server_options

log = logging.getLogger(__name__)


@asynccontextmanager
async def relay_connection(nats_url: str, stopping: asyncio.Event, on_reconnect: Callable[[], None], *,
                           window: int, ack_timeout: float, replicas: int | None
                           ) -> AsyncIterator[tuple[Any, PublishWindow]]:
    """JetStream on a connection as the relay's NATS user, the stream made or brought up to date (its
    replicas ``replicas``, or as :func:`~adapters.followers.relay.stream.replicas_for` finds), and a
    :class:`PublishWindow` of ``window`` events on it (every shard's relay: the window's guard is per
    shard and Application, so shards publishing on the one stream do not disturb each other).

    ``pending_size=0``: a publish while the connection is down fails at once instead of waiting
    in the client's buffer to be sent after the reconnect, when this relay may no longer lead.
    A reconnect calls ``on_reconnect`` (the relay then syncs before its next publish)."""
    reported: set[str] = set()  # the kinds of error logged since the last (re)connect
    closing = False

    async def reconnected() -> None:
        reported.clear()
        log.warning("relay: NATS reconnected; reading the stream's last messages before publishing")
        on_reconnect()

    async def disconnected() -> None:
        if not closing:
            log.warning("relay: NATS disconnected")

    async def error(exc: Exception) -> None:
        # the client retries every 0.25 s: each kind of error (refused, a permissions violation of
        # a NATS_URL that is not the relay's user, ...) is logged once until it connects again
        kind = type(exc).__name__
        log.log(logging.DEBUG if kind in reported else logging.WARNING,
                "relay: NATS unavailable (%s: %s); the client keeps trying", kind, exc)
        reported.add(kind)

    # the client keeps trying to connect for as long as it takes; a stop ends the wait
    connecting = asyncio.ensure_future(nats.connect(
        **server_options(nats_url), max_reconnect_attempts=-1, reconnect_time_wait=0.25, allow_reconnect=True,
        connect_timeout=2, pending_size=0, reconnected_cb=reconnected, disconnected_cb=disconnected,
        error_cb=error, **connect_options(RELAY)))
    stopped = asyncio.ensure_future(stopping.wait())
    await asyncio.wait([connecting, stopped], return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if not connecting.done():
        connecting.cancel()
        await asyncio.gather(connecting, return_exceptions=True)
        raise Stopped
    nc = connecting.result()
    if reported:
        log.warning("relay: NATS connected")
        reported.clear()
    try:
        js = nc.jetstream(timeout=max(2.0, ack_timeout))
        await ensure_stream(js, nc._server_info, replicas)
        yield js, await PublishWindow(nc, window, ack_timeout).open()
    finally:
        closing = True
        try:
            await nc.close()
        except NATS_ERRORS:
            pass
