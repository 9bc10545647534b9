"""The relay: every event of every Application, from its notification log to NATS JetStream.

For each Application it reads the notification log after its own tracking position (kept in
Postgres, table ``relay_tracking``), publishes each event and waits for JetStream's ack before the
next one, then advances the tracking position after each batch. Consequences:

* nothing is lost: the position only moves past events JetStream has acknowledged;
* nothing is reordered: one event is in flight per Application at a time, and a relay publishes an
  event only once the one before it is on the stream;
* nothing is duplicated, at any delay: ``Nats-Msg-Id`` is ``<ledger>:<application>:<notification
  id>``, so a publish repeated within the stream's duplicate window (15 min) is dropped by the
  stream; and before it publishes anything (when it starts, takes over the lead, reconnects to NATS
  or recovers from any error) a relay reads the stream's last message of each Application
  (``chargeledger.<application>.>``) and, when it is this ledger's and ahead of the tracking
  position, moves the position there (:meth:`Relay.sync`). So the events a relay published but did
  not record before it died (up to a batch) are never published again, however late the next relay
  starts. ``<ledger>`` is a random id the database is given once (table ``ledger_identity``): a
  database recreated from empty numbers its events from 1 again, and without it the stream would
  drop its first events as repeats of the old database's.

**One leader.** Any number of relays may run (``chargeledger relay``, and one in every gateway):
only the one holding a Postgres session-level advisory lock (:data:`RELAY_LOCK`, on a connection of
its own) publishes; the others are standbys and try to take the lock every ``standby_interval``
(1 s). Postgres lets the lock go when the leader's session ends, however the leader died (a kill -9
closes its sockets), so a standby takes over within about a second. The leader watches its lock
connection (:class:`Lease`): when that connection breaks, or cannot be confirmed for
``lease_timeout``, it stops publishing at once (checked before every publish). A relay competes
for the lock only once NATS has accepted it as the relay (it made or updated the stream), so a
process with another role's NATS user never takes the lead from one that could publish.

**Outages.** Nothing stops it but :meth:`Relay.stop`: a database or NATS outage of any length, an
error in a batch, even an unexpected exception, is logged (``... unavailable ...; retrying in``,
then ``... back after``) and retried with a growing pause (``retry_first``, doubled up to
``retry_max``). The counters a metrics exporter reads are in :meth:`Relay.metrics`.

It does not wait on a timer for new events: it LISTENs on the channels the recorder NOTIFYs in
every save's transaction, so a commit wakes it at once (a start reaches its gateway in
milliseconds, not a poll interval later). A slow poll (``idle_sleep``, 1 s) stays as the fallback
for a notification missed while the listening connection was being re-established.

Subjects are ``chargeledger.<application>.<aggregate type>.<event name>``. The body is the event's
stored bytes, verbatim (the same bytes an auditor reads in Postgres); the headers carry the ids.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import nats
import nats.errors
import nats.js.errors
import psycopg
from eventsourcing.persistence import InfrastructureFactory, Notification, PersistenceError, Tracking
from eventsourcing.utils import Environment
from nats.js.api import StorageType, StreamConfig
from psycopg import sql

from adapters.servers.nats_users import RELAY, STREAM, SUBJECT_PREFIX, connect_options
from adapters.servers.outage import Outage
from adapters.postgres.env import lock_schema

log = logging.getLogger(__name__)

DUPLICATE_WINDOW = 15 * 60.0  # seconds; far longer than any publish retry loop
RELAY_LOCK = 7_402_002  # the session-level advisory lock whose holder is the one relay that publishes
NATS_ERRORS = (nats.errors.Error, asyncio.TimeoutError, OSError)
DATABASE_ERRORS = (psycopg.Error, PersistenceError)
PUBLISH_ERRORS = NATS_ERRORS  # the name earlier code imported


def subject_for(application: str, topic: str) -> str:
    """``domain.session:ChargingSession.Settled`` -> ``chargeledger.Sessions.ChargingSession.Settled``."""
    qualname = topic.rsplit(":", 1)[-1]
    return f"{SUBJECT_PREFIX}.{application}.{qualname}"


def message_id(ledger: str, application: str, notification_id: int) -> str:
    return f"{ledger}:{application}:{notification_id}"


def notification_of(msg_id: str, ledger: str, application: str) -> int | None:
    """The notification id a ``Nats-Msg-Id`` names, if it is ``ledger``'s event of ``application``."""
    parts = msg_id.split(":")
    if len(parts) != 3 or parts[:2] != [ledger, application] or not parts[2].isdigit():
        return None
    return int(parts[2])


def ledger_identity(recorder: Any) -> str:
    """This database's ledger id, made on first use: the first 12 hex digits of a random UUID."""
    with recorder.datastore.transaction(commit=True) as cur:
        lock_schema(cur)
        cur.execute("CREATE TABLE IF NOT EXISTS ledger_identity (id text PRIMARY KEY, "
                    "created_at timestamptz NOT NULL DEFAULT now())")
        cur.execute("LOCK TABLE ledger_identity IN EXCLUSIVE MODE")  # two relays starting at once agree
        cur.execute("INSERT INTO ledger_identity (id) SELECT left(replace(gen_random_uuid()::text, '-', ''), 12) "
                    "WHERE NOT EXISTS (SELECT 1 FROM ledger_identity)")
        cur.execute("SELECT id FROM ledger_identity")
        return str(cur.fetchone()["id"])


def headers_for(ledger: str, application: str, n: Notification) -> dict[str, str]:
    return {
        "Nats-Msg-Id": message_id(ledger, application, n.id),
        "Chargeledger-Application": application,
        "Chargeledger-Notification-Id": str(n.id),
        "Chargeledger-Originator-Id": str(n.originator_id),
        "Chargeledger-Originator-Version": str(n.originator_version),
        "Chargeledger-Topic": n.topic,
    }


async def ensure_stream(js: Any) -> None:
    """Make the stream, or bring its configuration up to date (``DUPLICATE_WINDOW`` is read here)."""
    config = StreamConfig(name=STREAM, subjects=[f"{SUBJECT_PREFIX}.>"], storage=StorageType.FILE,
                          duplicate_window=DUPLICATE_WINDOW)
    try:
        await js.add_stream(config)
    except nats.js.errors.BadRequestError:
        await js.update_stream(config)


async def stream_exists(js: Any) -> bool:
    try:
        await js.stream_info(STREAM)
    except nats.js.errors.NotFoundError:
        return False
    return True


async def wait_for_stream(js: Any, pause: float = 0.5) -> None:
    """Until the relay has made the stream (a follower's NATS user may not create it)."""
    if not await stream_exists(js):
        log.warning("stream %s does not exist yet; waiting for the relay to create it", STREAM)
        while not await stream_exists(js):
            await asyncio.sleep(pause)


class Stopped(Exception):
    """The relay was stopped while it waited for NATS."""


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


class Relay:
    def __init__(self, applications: Sequence[Any], tracking_env: dict[str, str], nats_url: str,
                 *, batch_size: int = 500, idle_sleep: float = 1.0, standby_interval: float = 1.0,
                 retry_first: float = 0.5, retry_max: float = 10.0, lease_check: float = 0.5,
                 lease_timeout: float = 10.0) -> None:
        self.applications = list(applications)
        factory = InfrastructureFactory.construct(Environment("Relay", tracking_env))
        self.tracking = factory.tracking_recorder()
        self.ledger_id = ledger_identity(self.tracking)
        self.nats_url = nats_url
        self.batch_size = batch_size
        self.idle_sleep = idle_sleep
        self.standby_interval = standby_interval
        self.retry_first, self.retry_max = retry_first, retry_max
        self.lease_check, self.lease_timeout = lease_check, lease_timeout
        # counters (metrics)
        self.published = 0  # events this relay published and JetStream acknowledged
        self.errors = 0  # failed attempts (database, NATS, or unexpected), each retried
        self.synced = 0  # times the stream was found ahead of the tracking position, which was moved up to it
        self.takeovers = 0  # times this relay became the leader
        self.is_leader = False
        self.listening = False  # the LISTEN connection is up (else only the idle poll finds new events)
        self.stop_requested = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._resync: asyncio.Event | None = None

    # ---- state for callers ----------------------------------------------------------------------
    def position(self, application: str) -> int:
        return self.tracking.max_tracking_id(application) or 0

    def caught_up(self) -> bool:
        return all(self.position(app.name) >= (app.recorder.max_notification_id() or 0)
                   for app in self.applications)

    def lag(self) -> dict[str, int]:
        """Per Application, how many notification ids the relay's position is behind the log's head."""
        return {app.name: (app.recorder.max_notification_id() or 0) - self.position(app.name)
                for app in self.applications}

    def metrics(self) -> dict[str, Any]:
        """What a metrics exporter reads: counters, and the lag per Application (None if the database is down)."""
        try:
            lag: dict[str, int] | None = self.lag()
        except DATABASE_ERRORS:
            lag = None
        return {"relay.published": self.published, "relay.errors": self.errors, "relay.synced": self.synced,
                "relay.takeovers": self.takeovers, "relay.is_leader": int(self.is_leader), "relay.lag": lag}

    def stop(self) -> None:
        """Stop :meth:`run` (from any thread); a leader lets its lock go, so a standby takes over at once."""
        self.stop_requested = True
        loop, stopping = self._loop, self._stopping
        if loop is None or stopping is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            stopping.set()
        else:
            try:
                loop.call_soon_threadsafe(stopping.set)
            except RuntimeError:  # its loop closed meanwhile: run() has returned
                pass

    def close(self) -> None:
        self.tracking.datastore.close()

    # ---- the loop -------------------------------------------------------------------------------
    async def run(self) -> None:
        """Relay until stopped: standby until this relay holds the leader's lock, then publish while
        it holds it. Every failure is logged and retried; it returns only after :meth:`stop`."""
        self._loop = asyncio.get_running_loop()
        self._stopping, self._wake, self._resync = asyncio.Event(), asyncio.Event(), asyncio.Event()
        if self.stop_requested:
            return
        listener = asyncio.create_task(self._listen(), name="relay-listen")
        nats_retry = Outage("relay: NATS", "relay", log, first=self.retry_first, cap=self.retry_max)
        bug_retry = Outage("relay: relay loop", "relay", log, first=self.retry_first, cap=self.retry_max)
        try:
            while not self._stopping.is_set():
                try:
                    async with self._nats_session() as js:
                        nats_retry.succeeded()
                        await self._serve(js)
                    bug_retry.succeeded()
                except Stopped:
                    break
                except NATS_ERRORS as exc:
                    self.errors += 1
                    await self._pause(nats_retry.failed(exc))
                except Exception as exc:  # noqa: BLE001 - a bug must not end the relay either: logged, retried
                    self.errors += 1
                    await self._pause(bug_retry.failed(exc, unexpected=True))
        finally:
            self.is_leader = False
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)

    @asynccontextmanager
    async def _nats_session(self) -> AsyncIterator[Any]:
        """A NATS connection that NATS accepted as the relay's (the stream made or updated).

        ``pending_size=0``: a publish while the connection is down fails at once instead of waiting
        in the client's buffer to be sent after the reconnect, when this relay may no longer lead.
        A reconnect asks for a :meth:`sync` before the next publish."""
        assert self._stopping is not None
        reported: set[str] = set()  # the kinds of error logged since the last (re)connect
        closing = False

        async def reconnected() -> None:
            reported.clear()
            log.warning("relay: NATS reconnected; reading the stream's last messages before publishing")
            if self._resync is not None:
                self._resync.set()

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
            self.nats_url, max_reconnect_attempts=-1, reconnect_time_wait=0.25, allow_reconnect=True,
            connect_timeout=2, pending_size=0, reconnected_cb=reconnected, disconnected_cb=disconnected,
            error_cb=error, **connect_options(RELAY)))
        stopped = asyncio.ensure_future(self._stopping.wait())
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
            js = nc.jetstream(timeout=2)
            await ensure_stream(js)
            yield js
        finally:
            closing = True
            try:
                await nc.close()
            except NATS_ERRORS:
                pass

    async def _serve(self, js: Any) -> None:
        """Standby, then leader, then standby again, ... until stopped. NATS errors end it (the
        caller reconnects); the lock is let go first, so a standby may take over meanwhile."""
        assert self._stopping is not None
        while not self._stopping.is_set():
            lease = await self._acquire()
            if lease is None:
                return
            try:
                await self._lead(js, lease)
            finally:
                self.is_leader = False
                await lease.release()

    async def _acquire(self) -> Lease | None:
        """Wait as a standby until this relay holds :data:`RELAY_LOCK` (None: stopped meanwhile)."""
        assert self._stopping is not None
        retry = Outage("relay: database (leader's lock)", "relay", log, first=self.retry_first, cap=self.retry_max)
        conn: psycopg.AsyncConnection[Any] | None = None
        waiting = False
        while not self._stopping.is_set():
            try:
                if conn is None:
                    conn = await psycopg.AsyncConnection.connect(
                        **self._connection_params(), autocommit=True, connect_timeout=5,
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
                pause = self.standby_interval
            except DATABASE_ERRORS as exc:
                self.errors += 1
                pause = retry.failed(exc)
                if conn is not None:
                    await close_quietly(conn)
                    conn = None
            await self._pause(pause)
        if conn is not None:
            await close_quietly(conn)
        return None

    async def _lead(self, js: Any, lease: Lease) -> None:
        """Publish while this relay holds the lock. Database errors are retried here (the lease
        usually goes with them); NATS errors propagate to the caller."""
        assert self._stopping is not None and self._wake is not None and self._resync is not None
        self.is_leader = True
        self.takeovers += 1
        log.warning("relay: leading (this process holds the leader's lock); ledger %s", self.ledger_id)
        watcher = asyncio.create_task(lease.watch(), name="relay-lease")
        retry = Outage("relay: database", "relay", log, first=self.retry_first, cap=self.retry_max)
        self._resync.set()
        try:
            while lease.held and not self._stopping.is_set():
                self._wake.clear()  # before looking: a commit during the look wakes the next wait
                try:
                    moved = await self._relay_all(js, lease)
                    retry.succeeded()
                except DATABASE_ERRORS as exc:
                    self.errors += 1
                    self._resync.set()
                    await self._pause(retry.failed(exc))
                    continue
                if not moved:
                    await self._idle()
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            if lease.lost is None and not lease.held:
                log.warning("relay: the leader's lock could not be confirmed for %.0f s; publishing stopped",
                            lease.timeout)

    async def _relay_all(self, js: Any, lease: Lease) -> int:
        """One batch of every Application (after a :meth:`sync` if one is due). Returns events published."""
        assert self._resync is not None
        moved = 0
        for app in self.applications:
            if self._resync.is_set():
                self._resync.clear()
                await self.sync(js)
            moved += await self.relay_batch(js, app, lease)
        return moved

    async def sync(self, js: Any) -> None:
        """Move each Application's position up to this ledger's last event already on the stream.

        A relay that published part of a batch and died before recording it left those events on
        the stream and its position behind them; without this, the next leader would publish them
        again, and a second copy is dropped only within the stream's duplicate window."""
        for app in self.applications:
            try:
                last = await js.get_last_msg(STREAM, f"{SUBJECT_PREFIX}.{app.name}.>")
            except nats.js.errors.NotFoundError:
                continue
            on_stream = notification_of((last.headers or {}).get("Nats-Msg-Id", ""), self.ledger_id, app.name)
            if on_stream is None:
                continue  # another ledger's event, or none of ours yet
            position = await asyncio.to_thread(self.position, app.name)
            if on_stream > position:
                await asyncio.to_thread(self.tracking.insert_tracking, Tracking(app.name, on_stream))
                self.synced += 1
                log.warning("relay: %s: events up to #%d were already on the stream but recorded only up to "
                            "#%d (a relay stopped mid-batch); position moved to #%d, none published again",
                            app.name, on_stream, position, on_stream)

    async def relay_batch(self, js: Any, app: Any, lease: Lease) -> int:
        """Publish the next batch of one Application's events (stopping at once if the lease is lost
        or a sync is due). Returns how many went out."""
        assert self._resync is not None
        start = await asyncio.to_thread(self.position, app.name)
        notifications = await asyncio.to_thread(
            app.recorder.select_notifications, start, self.batch_size, inclusive_of_start=False
        )
        last, sent = start, 0
        try:
            for n in notifications:
                if not lease.held or self._resync.is_set():
                    break
                await js.publish(subject_for(app.name, n.topic), n.state,
                                 headers=headers_for(self.ledger_id, app.name, n))
                last, sent = n.id, sent + 1
                self.published += 1
        finally:
            if last > start:  # what was acknowledged stays acknowledged, even if the batch broke off
                await asyncio.to_thread(self.tracking.insert_tracking, Tracking(app.name, last))
        return sent

    # ---- waiting ------------------------------------------------------------------------------------
    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if stopped."""
        assert self._stopping is not None
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
        except asyncio.TimeoutError:
            pass

    async def _idle(self) -> None:
        """Until a commit, a stop, a NATS reconnect, or ``idle_sleep`` passes."""
        assert self._stopping is not None and self._wake is not None and self._resync is not None
        waits = [asyncio.ensure_future(e.wait()) for e in (self._wake, self._stopping, self._resync)]
        try:
            await asyncio.wait(waits, timeout=self.idle_sleep, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    def _connection_params(self) -> dict[str, Any]:
        kwargs = self.tracking.datastore.pool.kwargs
        return {k: kwargs[k] for k in ("host", "port", "dbname", "user", "password") if kwargs.get(k) is not None}

    async def _listen(self) -> None:
        """Set ``_wake`` whenever a save commits in any Application (its recorder's NOTIFY)."""
        assert self._stopping is not None and self._wake is not None
        retry = Outage("relay: database (listening for commits)", "relay", log, first=1.0, cap=self.retry_max)
        while not self._stopping.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(**self._connection_params(), autocommit=True,
                                                                 connect_timeout=5) as conn:
                    for app in self.applications:
                        await conn.execute(sql.SQL("LISTEN {0}").format(sql.Identifier(app.recorder.channel_name)))
                    self.listening = True
                    retry.succeeded()
                    self._wake.set()  # anything committed before LISTEN took effect is found by one poll
                    async for _ in conn.notifies():
                        self._wake.set()
                pause = 1.0
            except DATABASE_ERRORS as exc:
                pause = retry.failed(exc)  # meanwhile the idle poll finds new events
            finally:
                self.listening = False
            await self._pause(pause)


def keep_running(relay: Relay, pause: float = 1.0) -> None:
    """Run ``relay`` in this thread (with an event loop of its own) until :meth:`Relay.stop`. Should
    its loop ever end otherwise (:meth:`Relay.run` retries every error itself, so only something
    like a cancellation could), that is logged and it starts again after ``pause``."""
    while not relay.stop_requested:
        try:
            asyncio.run(relay.run())
        except BaseException:  # noqa: BLE001 - whatever ended it, the relay thread must not die silently
            log.exception("relay thread: the relay stopped with an error; restarting in %.0f s", pause)
        else:
            if not relay.stop_requested:
                log.error("relay thread: the relay ended without being stopped; restarting in %.0f s", pause)
        if not relay.stop_requested:
            time.sleep(pause)
