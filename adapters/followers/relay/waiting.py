"""What the relay waits on: a pause that a stop cuts short, the first of several events, and the
LISTEN on the recorders' NOTIFY channels that wakes the leader as soon as a save commits."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from adapters.followers.relay.errors import DATABASE_ERRORS
from adapters.servers.outage import Outage

log = logging.getLogger(__name__)


async def pause(stopping: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less if ``stopping`` is set."""
    try:
        await asyncio.wait_for(stopping.wait(), timeout=seconds)
    except asyncio.TimeoutError:
        pass


async def first_of(events: Sequence[asyncio.Event], timeout: float) -> None:
    """Until one of ``events`` is set, or ``timeout`` passes."""
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


class CommitListener:
    """LISTENs on every Application's NOTIFY channel and sets ``wake`` whenever a save commits.

    :attr:`listening` is true while the LISTEN connection is up (else only the relay's idle poll
    finds new events). A database outage is retried with backoff until ``stopping`` is set."""

    def __init__(self, applications: Sequence[Any], connection_params: dict[str, Any], retry_max: float) -> None:
        self.applications = applications
        self.connection_params = connection_params
        self.retry_max = retry_max
        self.listening = False

    async def run(self, stopping: asyncio.Event, wake: asyncio.Event) -> None:
        retry = Outage("relay: database (listening for commits)", "relay", log, first=1.0, cap=self.retry_max)
        while not stopping.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(**self.connection_params, autocommit=True,
                                                                 connect_timeout=5) as conn:
                    for app in self.applications:
                        await conn.execute(sql.SQL("LISTEN {0}").format(sql.Identifier(app.recorder.channel_name)))
                    self.listening = True
                    retry.succeeded()
                    wake.set()  # anything committed before LISTEN took effect is found by one poll
                    async for _ in conn.notifies():
                        wake.set()
                pause_for = 1.0
            except DATABASE_ERRORS as exc:
                pause_for = retry.failed(exc)  # meanwhile the idle poll finds new events
            finally:
                self.listening = False
            await pause(stopping, pause_for)
