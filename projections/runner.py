"""Catch-up and follow: every view, fed from the Applications' notification logs in batches.

One :class:`Projections` reads each Application's log once per batch (from the lowest position of
the views that follow it), decodes only the events some view handles, and hands each view the
events after its own position, one transaction per view and batch (rows + tracking, see
:mod:`projections.base`). Views are independent: each can be rebuilt alone, and a view that fails
holds back only itself:

* a batch a view fails on is split in two and each half applied in turn, down to the one event it
  fails on, so the view keeps everything before that event and the failure names it;
* that (view, application) is then left out of the following batches (the other views move on)
  and tried again after a backoff (1 s, doubled per attempt, at most 5 min), from where it stands;
* the failure is logged and recorded in ``projection_health`` (:mod:`projections.health`), and
  cleared by the batch that finally applies the event.

``chargeledger projections run`` follows the logs forever (polling every 50 ms when idle), while it
holds the projections' leader lock (any number may run: the others stand by and one takes over within
about a second of the leader's death);
``chargeledger projections rebuild`` drops every view and catches up from zero;
``chargeledger projections status`` shows each view's position and any failure
(adapters/cli/projections.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eventsourcing.persistence import InfrastructureFactory
from eventsourcing.utils import Environment

from adapters.postgres.leader_lock import LeaderLock
from adapters.servers.outage import DATABASE_OUTAGE, Outage
from projections import health
from projections.alarms import Alarms
from projections.base import Item, StaleBatch, View, ViewRecorder, storable_text
from projections.books import Books
from projections.catalogue import Catalogue
from projections.live_status import LiveStatus
from projections.operation_log import OperationLog
from projections.orders import Orders
from projections.power import PowerCurve
from projections.revenue import Revenue
from projections.roaming_orders import RoamingOrders

log = logging.getLogger(__name__)

VIEWS: tuple[type[View], ...] = (Catalogue, LiveStatus, Orders, Revenue, Alarms, OperationLog, PowerCurve,
                                 RoamingOrders, Books)
BATCH_SIZE = 5000  # measured: 1,000 -> 5,000 doubles catch-up (fewer commits, readings folded)
RETRY_FIRST = 1.0  # seconds before a failing view is tried again; doubled per attempt
RETRY_MAX = 300.0


class ViewFailed(Exception):
    """A view could not apply ``item`` (None: a batch with no event of its own, e.g. the database is down)."""

    def __init__(self, item: Item | None, error: Exception) -> None:
        super().__init__(f"{type(error).__name__}: {error}")
        self.item, self.error = item, error


@dataclass
class Failing:
    """A (view, application) held back in this process: attempts so far, when to try again (clock)."""

    attempts: int
    retry_at: float


class Projections:
    def __init__(self, applications: Sequence[Any], env: Mapping[str, str],
                 views: Sequence[type[View]] = VIEWS, *, batch_size: int = BATCH_SIZE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.applications = list(applications)
        factory = InfrastructureFactory.construct(Environment("Projections", dict(env)))
        self.datastore = factory.datastore  # type: ignore[attr-defined]
        self.recorders = {cls.name: ViewRecorder(self.datastore, cls()) for cls in views}
        for recorder in self.recorders.values():
            recorder.create_table()
        self.batch_size = batch_size
        self.clock = clock
        self.processed = 0  # events handed to views, counted once per view
        self.failing: dict[tuple[str, str], Failing] = {}
        self._positions: dict[tuple[str, str], int | None] = {}

    def close(self) -> None:
        self.datastore.close()

    def __enter__(self) -> Projections:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- positions ---------------------------------------------------------------------------
    def position(self, view: str, application: str) -> int | None:
        key = (view, application)
        if key not in self._positions:
            self._positions[key] = self.recorders[view].max_tracking_id(application)
        return self._positions[key]

    def caught_up(self) -> bool:
        self._positions.clear()
        for app in self.applications:
            head = app.recorder.max_notification_id() or 0
            for name, recorder in self.recorders.items():
                if app.name in recorder.view.follows() and (self.position(name, app.name) or 0) < head:
                    return False
        return True

    # ---- processing --------------------------------------------------------------------------
    def catch_up(self) -> int:
        """Process batches until every view has seen every event recorded so far. Returns notifications read."""
        total = 0
        while True:
            moved = sum(self.step(app) for app in self.applications)
            total += moved
            if not moved:
                return total

    def step(self, app: Any) -> int:
        """One batch of one Application's log for every view that follows it and is not waiting out a
        failure. Returns notifications read."""
        following = [(name, r) for name, r in self.recorders.items()
                     if app.name in r.view.follows() and self.due(name, app.name)]
        if not following:
            return 0
        positions = {name: self.position(name, app.name) for name, _ in following}
        start = min((p or 0) for p in positions.values())
        notifications = app.recorder.select_notifications(start, self.batch_size, inclusive_of_start=False)
        if not notifications:
            return 0
        wanted = set().union(*(r.view.follows()[app.name] for _, r in following))
        decoded = {n.id: decode(app, n) for n in notifications if n.topic.rsplit(":", 1)[-1] in wanted}
        last = notifications[-1].id
        for name, recorder in following:
            expected = positions[name]
            if (expected or 0) >= last:
                continue
            names = recorder.view.follows()[app.name]
            items = [i for nid, i in decoded.items() if nid > (expected or 0) and i.name in names]
            try:
                self.apply(recorder, app.name, expected, last, items)
            except StaleBatch:
                log.info("%s: another process advanced %s; re-reading the position", name, app.name)
                self._positions.pop((name, app.name), None)
            except ViewFailed as failure:
                self.held_back(name, app.name, failure)
            else:
                self.failing.pop((name, app.name), None)
        return len(notifications)

    def apply(self, recorder: ViewRecorder, application: str, expected: int | None, last: int,
              items: list[Item]) -> None:
        """Apply ``items`` and move the view from ``expected`` to ``last``.

        A batch that fails is split in two and the halves applied in turn, down to the one event the
        view fails on: everything before it is kept, and :class:`ViewFailed` names it.
        """
        try:
            recorder.record_batch(application, expected, last, items)
        except (StaleBatch, *DATABASE_OUTAGE):
            raise  # an outage is no view's failure: every view waits it out (run_forever)
        except Exception as error:  # noqa: BLE001 - whatever a view raises holds back that view alone
            if len(items) <= 1:
                raise ViewFailed(items[0] if items else None, error) from error
            half = len(items) // 2
            middle = items[half].notification_id - 1  # every item of the first half is at or before it
            self.apply(recorder, application, expected, middle, items[:half])
            self.apply(recorder, application, middle, last, items[half:])
            return
        self._positions[(recorder.view.name, application)] = last
        self.processed += len(items)

    # ---- failures ----------------------------------------------------------------------------
    def due(self, view: str, application: str) -> bool:
        failing = self.failing.get((view, application))
        return failing is None or self.clock() >= failing.retry_at

    def held_back(self, view: str, application: str, failure: ViewFailed) -> None:
        """Wait before trying this view on this log again; log and record why (projection_health)."""
        key = (view, application)
        self._positions.pop(key, None)  # re-read: the halves before the failing event may have moved it
        attempts = self.failing[key].attempts + 1 if key in self.failing else 1
        retry_in = min(RETRY_MAX, RETRY_FIRST * 2 ** (attempts - 1))
        self.failing[key] = Failing(attempts, self.clock() + retry_in)
        item = failure.item
        where = f"{application} #{item.notification_id} {item.name}" if item else application
        log.error("projections: view %s is held back at %s (attempt %d; next in %.0f s): %s", view, where,
                  attempts, retry_in, failure, exc_info=failure.error)
        try:
            row = {"view": view, "application": application, "position": self.position(view, application),
                   "notification_id": item.notification_id if item else None, "event": item.name if item else None,
                   "error": storable_text(str(failure)), "retry_in": retry_in}
            with self.datastore.transaction(commit=True) as cur:
                cur.execute(health.RECORD, row)
        except Exception:  # noqa: BLE001 - the log above still says it; the next attempt writes it again
            log.exception("projections: could not record the failure of view %s", view)

    def run_forever(self, stop: threading.Event, idle_sleep: float = 0.05, *, lock: LeaderLock | None = None,
                    standby_interval: float = 1.0) -> None:
        """Follow the logs until ``stop`` is set. A view that fails waits on its own (see the module);
        the database down (or any failure of the logs themselves) pauses every view, with backoff
        (0.5 s doubling to 30 s), logged when it begins and when it ends: the projections never stop.

        With ``lock`` (``projections run``), only the process holding it applies batches; the others
        stand by and try it every ``standby_interval`` (adapters/postgres/leader_lock.py)."""
        outage = Outage("projections: database", "projections_database", log)
        standing_by = False
        while not stop.is_set():
            if lock is not None and not lock.held():
                if not lock.try_acquire():
                    if not standing_by:
                        log.info("projections: standby (another process leads); trying every %.1f s",
                                 standby_interval)
                        standing_by = True
                    stop.wait(standby_interval)
                    continue
                log.warning("projections: leading (takeover %d)", lock.takeovers)
                standing_by = False
                self._positions.clear()  # the last leader moved them
            try:
                moved = self.catch_up()
            except Exception as error:  # noqa: BLE001 - keep following; what was not applied is retried
                self._positions.clear()
                stop.wait(outage.failed(error, unexpected=not isinstance(error, DATABASE_OUTAGE)))
                continue
            outage.succeeded()
            if not moved:
                stop.wait(idle_sleep)
        if lock is not None:
            lock.release()

    def rebuild(self, views: Sequence[str] | None = None) -> int:
        """Drop the named views (all by default) and catch up from zero. Returns notifications read.

        Alarm acknowledgements and operator credentials are not projection tables and survive.
        """
        for name in views or list(self.recorders):
            recorder = self.recorders[name]
            recorder.drop()
            recorder.create_table()
        self._positions.clear()
        self.failing.clear()  # a rebuilt view is tried at once, whatever failed before
        return self.catch_up()


def decode(app: Any, notification: Any) -> Item:
    """The notification as the views see it. One that cannot be decoded is kept with the reason, so
    that only the views that handle it are held back (:class:`projections.base.UndecodableEvent`)."""
    name = notification.topic.rsplit(":", 1)[-1]
    try:
        return Item(app.name, notification.id, name, app.mapper.to_domain_event(notification))
    except Exception as error:  # noqa: BLE001 - any decoding failure; the views that need it report it
        return Item(app.name, notification.id, name, None, undecodable=f"{type(error).__name__}: {error}")
