"""One relay publishes: the holder of :data:`RELAY_LOCK`, a Postgres session-level advisory lock.

:class:`LeaderElection` waits as a standby until this process holds the lock, on a connection of its
own; the :class:`Lease` it returns is the leader's hold on it, watched for as long as it leads."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import psycopg

from adapters.followers.relay.errors import DATABASE_ERRORS
from adapters.followers.relay.waiting import pause
from adapters.servers.outage import Outage

log = logging.getLogger(__name__)

RELAY_LOCK = 7_402_002  # the session-level advisory lock whose holder is the one relay that publishes


class Lease:
    """The leader's hold on :data:`RELAY_LOCK`: the connection whose session holds it.

    :meth:`watch` reads that connection's socket (so a server that ends the session, a restart or a
    ``pg_terminate_backend``, is noticed at once) and confirms the session with ``SELECT 1`` every
    ``check_interval``. :attr:`held` is false from the moment the connection failed, or once no
    confirmation came for ``timeout`` (a silent network partition)."""

    def __init__(self, conn: psycopg.AsyncConnection[Any], check_interval: float, timeout: float) -> None:
        self.conn = conn
        self.check_interval = check_interval
        self.timeout = timeout
        self.confirmed_at = time.monotonic()
        self.lost: str | None = None

    @property
    def held(self) -> bool:
        return self.lost is None and time.monotonic() - self.confirmed_at < self.timeout

    async def watch(self) -> None:
        try:
            while True:
                async for _ in self.conn.notifies(timeout=self.check_interval):
                    pass
                await asyncio.wait_for(self.conn.execute("SELECT 1"), self.timeout)
                self.confirmed_at = time.monotonic()
        except (*DATABASE_ERRORS, OSError, asyncio.TimeoutError) as exc:
            self.lost = f"{type(exc).__name__}: {exc}"
            log.warning("relay: the leader's lock connection failed (%s); publishing stopped", self.lost)

    async def release(self) -> None:
        """Let the lock go (closing the session releases it)."""
        await close_quietly(self.conn)


async def close_quietly(conn: psycopg.AsyncConnection[Any]) -> None:
    """Close a connection that may already be broken."""
    try:
        await conn.close()
    except (*DATABASE_ERRORS, OSError):
        pass


class LeaderElection:
    """The standby's side: try to take :data:`RELAY_LOCK` every ``standby_interval`` until it is held.

    A database failure is retried with a growing pause (``retry_first`` doubled up to ``retry_max``)
    and reported to ``on_error`` (the relay counts it)."""

    def __init__(self, connection_params: dict[str, Any], on_error: Callable[[], None], *, standby_interval: float,
                 lease_check: float, lease_timeout: float, retry_first: float, retry_max: float) -> None:
        self.connection_params = connection_params
        self.on_error = on_error
        self.standby_interval = standby_interval
        self.lease_check, self.lease_timeout = lease_check, lease_timeout
        self.retry_first, self.retry_max = retry_first, retry_max

    async def acquire(self, stopping: asyncio.Event) -> Lease | None:
        """Wait as a standby until this relay holds :data:`RELAY_LOCK` (None: stopped meanwhile)."""
        retry = Outage("relay: database (leader's lock)", "relay", log, first=self.retry_first, cap=self.retry_max)
        conn: psycopg.AsyncConnection[Any] | None = None
        waiting = False
        while not stopping.is_set():
            try:
                if conn is None:
                    conn = await psycopg.AsyncConnection.connect(
                        **self.connection_params, autocommit=True, connect_timeout=5,
                        application_name=f"chargeledger relay {os.getpid()}",
                        keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=3)
                cursor = await conn.execute("SELECT pg_try_advisory_lock(%s)", (RELAY_LOCK,))
                row = await cursor.fetchone()
                retry.succeeded()
                if row is not None and row[0]:
                    lease, conn = Lease(conn, self.lease_check, self.lease_timeout), None
                    return lease
                if not waiting:
                    log.info("relay: standby (another relay holds the leader's lock); trying every %.1f s",
                             self.standby_interval)
                    waiting = True
                pause_for = self.standby_interval
            except DATABASE_ERRORS as exc:
                self.on_error()
                pause_for = retry.failed(exc)
                if conn is not None:
                    await close_quietly(conn)
                    conn = None
            await pause(stopping, pause_for)
        if conn is not None:
            await close_quietly(conn)
        return None
