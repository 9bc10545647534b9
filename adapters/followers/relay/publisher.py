"""The relay itself: standby until it leads, then publish every Application's events in order.

See the package's docstring (:mod:`adapters.followers.relay`) for what it guarantees and why."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import nats.js.errors
from eventsourcing.persistence import InfrastructureFactory, Tracking
from eventsourcing.utils import Environment

from adapters.followers.relay.connection import relay_connection
from adapters.followers.relay.errors import DATABASE_ERRORS, NATS_ERRORS, Stopped
from adapters.followers.relay.leader import LeaderElection, Lease
from adapters.followers.relay.stream import (
    MAIN_SHARD,
    guard_subject,
    headers_for,
    ledger_identity,
    notification_of,
    qualified_ledger,
    replicas_setting,
    subject_for,
)
from adapters.followers.relay.waiting import CommitListener, first_of, pause
from adapters.followers.relay.window import ATOMIC_PUBLISH_DISABLED, MAX_BATCH, Outgoing, PublishWindow, Refused
from adapters.servers.nats_users import STREAM
from adapters.servers.outage import Outage

log = logging.getLogger(__name__)

WINDOW_SETTING = "RELAY_WINDOW"  # events published in one atomic batch, ahead of its acknowledgement
DEFAULT_WINDOW = 500


def tracking_recorder(tracking_env: Any) -> Any:
    """The relay's positions (its tracking table, "Relay") in the database of ``tracking_env``."""
    return InfrastructureFactory.construct(Environment("Relay", tracking_env)).tracking_recorder()


def relay_lag(applications: Sequence[Any], tracking: Any) -> dict[str, int]:
    """Per Application, how many notification ids the relay's recorded position is behind the log's head
    (whichever relay process leads: the position is the database's; ``cluster status`` reads it too)."""
    return {app.name: (app.recorder.max_notification_id() or 0) - (tracking.max_tracking_id(app.name) or 0)
            for app in applications}


def window_setting() -> int:
    """``RELAY_WINDOW`` (1 waits for each acknowledgement, as the relay did before the window; at most
    1,000, nats-server's largest atomic batch), else 500."""
    value = os.environ.get(WINDOW_SETTING, "").strip()
    if not value:
        return DEFAULT_WINDOW
    if not value.isdigit() or not 1 <= int(value) <= MAX_BATCH:
        raise ValueError(f"{WINDOW_SETTING}={value!r}: the publish window is a number of events, 1 to {MAX_BATCH}")
    return int(value)


class Relay:
    def __init__(self, applications: Sequence[Any], tracking_env: dict[str, str], nats_url: str,
                 *, batch_size: int = 1000, idle_sleep: float = 1.0, standby_interval: float = 1.0,
                 retry_first: float = 0.5, retry_max: float = 10.0, lease_check: float = 0.5,
                 lease_timeout: float = 10.0, window: int | None = None, ack_timeout: float = 5.0,
                 replicas: int | None = None, shard: str = MAIN_SHARD) -> None:
        self.applications = list(applications)
        self.tracking = tracking_recorder(tracking_env)
        self.shard = shard  # qualifies the subjects and message ids of a shard other than main (docs/shards.md)
        self.ledger_id = qualified_ledger(ledger_identity(self.tracking), shard)
        self.nats_url = nats_url
        self.batch_size = batch_size
        self.window = window_setting() if window is None else window
        self.ack_timeout = ack_timeout
        self.replicas = replicas_setting() if replicas is None else replicas  # None: the deployment decides
        self.idle_sleep = idle_sleep
        self.retry_first, self.retry_max = retry_first, retry_max
        # Postgres connections of its own (the leader's lock, the LISTEN), to the tracking database
        pool_kwargs = self.tracking.datastore.pool.kwargs
        params = {k: pool_kwargs[k] for k in ("host", "port", "dbname", "user", "password")
                  if pool_kwargs.get(k) is not None}
        self.election = LeaderElection(params, self._count_error, standby_interval=standby_interval,
                                       lease_check=lease_check, lease_timeout=lease_timeout,
                                       retry_first=retry_first, retry_max=retry_max)
        self.commits = CommitListener(self.applications, params, retry_max)
        # counters (metrics)
        self.published = 0  # events this relay published and JetStream acknowledged
        self.errors = 0  # failed attempts (database, NATS, or unexpected), each retried
        self.refused = 0  # windows the stream cut short (an event lost in flight), each sent again from the gap
        self.synced = 0  # times the stream was found ahead of the tracking position, which was moved up to it
        self.takeovers = 0  # times this relay became the leader
        self.is_leader = False
        self.stop_requested = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._resync: asyncio.Event | None = None
        # per Application, the stream's last sequence on its guard (guard_subject), as this relay last learnt it
        self._last_on: dict[str, int] | None = None

    # ---- state for callers ----------------------------------------------------------------------
    @property
    def listening(self) -> bool:
        """The LISTEN connection is up (else only the idle poll finds new events)."""
        return self.commits.listening

    def position(self, application: str) -> int:
        return self.tracking.max_tracking_id(application) or 0

    def caught_up(self) -> bool:
        return all(self.position(app.name) >= (app.recorder.max_notification_id() or 0)
                   for app in self.applications)

    def lag(self) -> dict[str, int]:
        """Per Application, how many notification ids the relay's position is behind the log's head."""
        return relay_lag(self.applications, self.tracking)

    def metrics(self) -> dict[str, Any]:
        """What a metrics exporter reads: counters, and the lag per Application (None if the database is down)."""
        try:
            lag: dict[str, int] | None = self.lag()
        except DATABASE_ERRORS:
            lag = None
        return {"relay.published": self.published, "relay.errors": self.errors, "relay.synced": self.synced,
                "relay.refused": self.refused,
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

    def _count_error(self) -> None:
        self.errors += 1

    # ---- the loop -------------------------------------------------------------------------------
    async def run(self) -> None:
        """Relay until stopped: standby until this relay holds the leader's lock, then publish while
        it holds it. Every failure is logged and retried; it returns only after :meth:`stop`."""
        self._loop = asyncio.get_running_loop()
        self._stopping, self._wake, self._resync = asyncio.Event(), asyncio.Event(), asyncio.Event()
        if self.stop_requested:
            return
        listener = asyncio.create_task(self.commits.run(self._stopping, self._wake), name="relay-listen")
        nats_retry = Outage("relay: NATS", "relay", log, first=self.retry_first, cap=self.retry_max)
        bug_retry = Outage("relay: relay loop", "relay", log, first=self.retry_first, cap=self.retry_max)
        try:
            while not self._stopping.is_set():
                try:
                    async with relay_connection(self.nats_url, self._stopping, self._resync.set, window=self.window,
                                                ack_timeout=self.ack_timeout, replicas=self.replicas
                                                ) as (js, window):
                        nats_retry.succeeded()
                        await self._serve(js, window)
                    bug_retry.succeeded()
                except Stopped:
                    break
                except NATS_ERRORS as exc:
                    self.errors += 1
                    await pause(self._stopping, nats_retry.failed(exc))
                except Exception as exc:  # noqa: BLE001 - a bug must not end the relay either: logged, retried
                    self.errors += 1
                    await pause(self._stopping, bug_retry.failed(exc, unexpected=True))
        finally:
            self.is_leader = False
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)

    async def _serve(self, js: Any, window: PublishWindow) -> None:
        """Standby, then leader, then standby again, ... until stopped. NATS errors end it (the
        caller reconnects); the lock is let go first, so a standby may take over meanwhile."""
        assert self._stopping is not None
        while not self._stopping.is_set():
            lease = await self.election.acquire(self._stopping)
            if lease is None:
                return
            try:
                await self._lead(js, window, lease)
            finally:
                self.is_leader = False
                await lease.release()

    async def _lead(self, js: Any, window: PublishWindow, lease: Lease) -> None:
        """Publish while this relay holds the lock. Database errors are retried here (the lease
        usually goes with them); NATS errors propagate to the caller."""
        assert self._stopping is not None and self._wake is not None and self._resync is not None
        self.is_leader = True
        self.takeovers += 1
        log.warning("relay: leading (this process holds the leader's lock); ledger %s", self.ledger_id)
        watcher = asyncio.create_task(lease.watch(), name="relay-lease")
        retry = Outage("relay: database", "relay", log, first=self.retry_first, cap=self.retry_max)
        refusals = Outage("relay: the stream (publishes refused)", "relay", log, first=0.05, cap=self.retry_max)
        self._resync.set()
        try:
            while lease.held and not self._stopping.is_set():
                self._wake.clear()  # before looking: a commit during the look wakes the next wait
                try:
                    moved = await self._relay_all(js, window, lease)
                    retry.succeeded()
                    refusals.succeeded()
                except DATABASE_ERRORS as exc:
                    self.errors += 1
                    self._resync.set()
                    await pause(self._stopping, retry.failed(exc))
                    continue
                except Refused as exc:  # the connection works: sync and send again almost at once
                    if exc.code == ATOMIC_PUBLISH_DISABLED:
                        # a relay from before the atomic windows updated the stream without allow_atomic:
                        # a NATS error ends this connection, and the next one brings the stream up to date
                        raise
                    self.errors += 1
                    self.refused += 1
                    self._resync.set()
                    await pause(self._stopping, refusals.failed(exc))
                    continue
                if not moved:
                    # until a commit, a stop, a NATS reconnect, or idle_sleep passes
                    await first_of((self._wake, self._stopping, self._resync), self.idle_sleep)
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            if lease.lost is None and not lease.held:
                log.warning("relay: the leader's lock could not be confirmed for %.0f s; publishing stopped",
                            lease.timeout)

    async def _relay_all(self, js: Any, window: PublishWindow, lease: Lease) -> int:
        """One batch of every Application (after a :meth:`sync` if one is due). Returns events published."""
        assert self._resync is not None
        moved = 0
        for app in self.applications:
            if self._resync.is_set():
                self._resync.clear()
                await self.sync(js)
            moved += await self.relay_batch(window, app, lease)
        return moved

    async def sync(self, js: Any) -> None:
        """Move each Application's position up to this ledger's last event already on the stream.

        A relay that published part of a batch and died before recording it left those events on
        the stream and its position behind them; without this, the next leader would publish them
        again, and a second copy is dropped only within the stream's duplicate window. It also reads
        the sequence of that last message, which the window's next batch expects on its guard."""
        last_on: dict[str, int] = {}
        self._last_on = None
        for app in self.applications:
            try:
                last = await js.get_last_msg(STREAM, guard_subject(app.name, self.shard))
            except nats.js.errors.NotFoundError:
                last_on[app.name] = 0  # nothing on this shard's subjects of the Application yet
                continue
            last_on[app.name] = last.seq
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
        self._last_on = last_on

    async def relay_batch(self, window: PublishWindow, app: Any, lease: Lease) -> int:
        """Publish the next batch of one Application's events through the window (stopping at once if
        the lease is lost or a sync is due), and record the position up to the longest acknowledged
        prefix, even when the window broke off. Returns how many went out."""
        assert self._resync is not None and self._last_on is not None
        last_on = self._last_on
        resync = self._resync
        start = await asyncio.to_thread(self.position, app.name)
        notifications = await asyncio.to_thread(
            app.recorder.select_notifications, start, self.batch_size, inclusive_of_start=False
        )
        acknowledged = [start, 0]  # the last notification id acknowledged with all before it, how many

        def took(event: Outgoing, sequence: int) -> None:
            acknowledged[0], acknowledged[1] = event.notification_id, acknowledged[1] + 1
            self.published += 1

        events = (Outgoing(subject_for(app.name, n.topic, self.shard), n.state,
                           headers_for(self.ledger_id, app.name, n), n.id) for n in notifications)
        try:
            last_on[app.name] = await window.publish(
                events, guard_subject(app.name, self.shard), last_on[app.name],
                lambda: lease.held and not resync.is_set(), took)
        except BaseException:
            self._last_on = None
            resync.set()  # the stream's last message and sequence are read again before the next publish
            raise
        finally:
            if acknowledged[0] > start:  # what was acknowledged stays acknowledged, even if the batch broke off
                await asyncio.to_thread(self.tracking.insert_tracking, Tracking(app.name, acknowledged[0]))
        return acknowledged[1]


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
