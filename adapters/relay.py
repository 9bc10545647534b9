"""The relay: every event of every Application, from its notification log to NATS JetStream.

For each Application it reads the notification log after its own tracking position (kept in
Postgres, table ``relay_tracking``), publishes each event and waits for JetStream's ack before the
next one, then advances the tracking position. Consequences:

* nothing is lost: the position only moves past events JetStream has acknowledged;
* nothing is duplicated: ``Nats-Msg-Id`` is ``<ledger>:<application>:<notification id>``, so a
  publish that is repeated after a crash or an outage (before the position moved) is dropped by the
  stream's duplicate window. ``<ledger>`` is a random id the database is given once (table
  ``ledger_identity``): a database recreated from empty numbers its events from 1 again, and without
  it the stream would drop its first events as repeats of the old database's;
* nothing is reordered: one event is in flight per Application at a time.

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
from collections.abc import Sequence
from typing import Any

import nats
import nats.errors
import nats.js.errors
import psycopg
from psycopg import sql
from eventsourcing.persistence import InfrastructureFactory, Notification, Tracking
from eventsourcing.utils import Environment
from nats.js.api import StorageType, StreamConfig

from adapters.nats_auth import RELAY, STREAM, SUBJECT_PREFIX, connect_options
from adapters.postgres import lock_schema

log = logging.getLogger(__name__)

DUPLICATE_WINDOW = 15 * 60.0  # seconds; far longer than any publish retry loop
PUBLISH_ERRORS = (nats.errors.Error, asyncio.TimeoutError, OSError)


def subject_for(application: str, topic: str) -> str:
    """``domain.session:ChargingSession.Settled`` -> ``chargeledger.Sessions.ChargingSession.Settled``."""
    qualname = topic.rsplit(":", 1)[-1]
    return f"{SUBJECT_PREFIX}.{application}.{qualname}"


def message_id(ledger: str, application: str, notification_id: int) -> str:
    return f"{ledger}:{application}:{notification_id}"


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


class Relay:
    def __init__(self, applications: Sequence[Any], tracking_env: dict[str, str], nats_url: str,
                 *, batch_size: int = 500, idle_sleep: float = 1.0) -> None:
        self.applications = list(applications)
        factory = InfrastructureFactory.construct(Environment("Relay", tracking_env))
        self.tracking = factory.tracking_recorder()
        self.ledger_id = ledger_identity(self.tracking)
        self.nats_url = nats_url
        self.batch_size = batch_size
        self.idle_sleep = idle_sleep
        self.published = 0
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self.listening = False  # the LISTEN connection is up (else only the idle poll finds new events)

    def position(self, application: str) -> int:
        return self.tracking.max_tracking_id(application) or 0

    def caught_up(self) -> bool:
        return all(self.position(app.name) >= (app.recorder.max_notification_id() or 0)
                   for app in self.applications)

    def stop(self) -> None:
        self._stopping.set()

    async def _listen(self) -> None:
        """Set ``_wake`` whenever a save commits in any Application (its recorder's NOTIFY)."""
        kwargs = self.applications[0].recorder.datastore.pool.kwargs
        params = {k: kwargs[k] for k in ("host", "port", "dbname", "user", "password") if kwargs.get(k) is not None}
        while not self._stopping.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(**params, autocommit=True) as conn:
                    for app in self.applications:
                        await conn.execute(sql.SQL("LISTEN {0}").format(sql.Identifier(app.recorder.channel_name)))
                    self.listening = True
                    self._wake.set()  # anything committed before LISTEN took effect is found by one poll
                    async for _ in conn.notifies():
                        self._wake.set()
            except (psycopg.Error, OSError) as exc:
                log.warning("relay: listening for commits failed (%s: %s); polling until it is back",
                            type(exc).__name__, exc)
            finally:
                self.listening = False
            await asyncio.sleep(1.0)

    async def run(self) -> None:
        """Relay until stopped, reconnecting to NATS for as long as it takes."""
        nc = await nats.connect(self.nats_url, max_reconnect_attempts=-1, reconnect_time_wait=0.25,
                                allow_reconnect=True, connect_timeout=2, **connect_options(RELAY))
        js = nc.jetstream(timeout=2)
        stream_ready = False
        listener = asyncio.create_task(self._listen(), name="relay-listen")
        try:
            while not self._stopping.is_set():
                self._wake.clear()  # before looking: a commit during the look wakes the next wait
                try:
                    if not stream_ready:
                        await ensure_stream(js)
                        stream_ready = True
                    moved = 0
                    for app in self.applications:
                        moved += await self.relay_batch(js, app)
                except PUBLISH_ERRORS as exc:
                    log.warning("relay: NATS unavailable (%s: %s); retrying", type(exc).__name__, exc)
                    stream_ready = False
                    moved = 0
                    await asyncio.sleep(0.25)
                if not moved:
                    await self._idle()
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
            await nc.close()

    async def _idle(self) -> None:
        """Until a commit, a stop, or ``idle_sleep`` passes."""
        waits = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(self._stopping.wait())]
        try:
            await asyncio.wait(waits, timeout=self.idle_sleep, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def relay_batch(self, js: Any, app: Any) -> int:
        """Publish the next batch of one Application's events. Returns how many went out."""
        start = self.position(app.name)
        notifications = await asyncio.to_thread(
            app.recorder.select_notifications, start, self.batch_size, inclusive_of_start=False
        )
        last = start
        try:
            for n in notifications:
                await js.publish(subject_for(app.name, n.topic), n.state, headers=headers_for(self.ledger_id, app.name, n))
                last = n.id
                self.published += 1
        finally:
            if last > start:  # what was acknowledged stays acknowledged, even if the batch broke off
                await asyncio.to_thread(self.tracking.insert_tracking, Tracking(app.name, last))
        return len(notifications)
