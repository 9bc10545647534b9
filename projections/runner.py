"""Catch-up and follow: every view, fed from the Applications' notification logs in batches.

One :class:`Projections` reads each Application's log once per batch (from the lowest position of
the views that follow it), decodes only the events some view handles, and hands each view the
events after its own position, one transaction per view and batch (rows + tracking, see
:mod:`projections.base`). Views are independent: each can be rebuilt alone, and a view that fails
holds back only itself.

``chargeledger projections run`` follows the logs forever (polling every 50 ms when idle);
``chargeledger projections rebuild`` drops every view and catches up from zero.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from eventsourcing.persistence import InfrastructureFactory
from eventsourcing.utils import Environment

from projections.alarms import Alarms
from projections.base import Item, StaleBatch, View, ViewRecorder
from projections.catalogue import Catalogue
from projections.live_status import LiveStatus
from projections.operation_log import OperationLog
from projections.orders import Orders
from projections.revenue import Revenue

log = logging.getLogger(__name__)

VIEWS: tuple[type[View], ...] = (Catalogue, LiveStatus, Orders, Revenue, Alarms, OperationLog)
BATCH_SIZE = 5000  # measured: 1,000 -> 5,000 doubles catch-up (fewer commits, readings folded)


class Projections:
    def __init__(self, applications: Sequence[Any], env: Mapping[str, str],
                 views: Sequence[type[View]] = VIEWS, *, batch_size: int = BATCH_SIZE) -> None:
        self.applications = list(applications)
        factory = InfrastructureFactory.construct(Environment("Projections", dict(env)))
        self.datastore = factory.datastore  # type: ignore[attr-defined]
        self.recorders = {cls.name: ViewRecorder(self.datastore, cls()) for cls in views}
        for recorder in self.recorders.values():
            recorder.create_table()
        self.batch_size = batch_size
        self.processed = 0  # events handed to views, counted once per view
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
        """One batch of one Application's log for every view that follows it. Returns notifications read."""
        following = [(name, r) for name, r in self.recorders.items() if app.name in r.view.follows()]
        if not following:
            return 0
        positions = {name: self.position(name, app.name) for name, _ in following}
        start = min((p or 0) for p in positions.values())
        notifications = app.recorder.select_notifications(start, self.batch_size, inclusive_of_start=False)
        if not notifications:
            return 0
        wanted = set().union(*(r.view.follows()[app.name] for _, r in following))
        decoded: dict[int, Item] = {}
        for n in notifications:
            name = n.topic.rsplit(":", 1)[-1]
            if name in wanted:
                decoded[n.id] = Item(app.name, n.id, name, app.mapper.to_domain_event(n))
        last = notifications[-1].id
        for name, recorder in following:
            expected = positions[name]
            if (expected or 0) >= last:
                continue
            names = recorder.view.follows()[app.name]
            items = [i for nid, i in decoded.items() if nid > (expected or 0) and i.name in names]
            try:
                recorder.record_batch(app.name, expected, last, items)
            except StaleBatch:
                log.info("%s: another process advanced %s; re-reading the position", name, app.name)
                self._positions.pop((name, app.name), None)
                continue
            self._positions[(name, app.name)] = last
            self.processed += len(items)
        return len(notifications)

    def run_forever(self, stop: threading.Event, idle_sleep: float = 0.05) -> None:
        """Follow the logs until ``stop`` is set; a failing batch is retried after a pause."""
        while not stop.is_set():
            try:
                moved = self.catch_up()
            except Exception:  # noqa: BLE001 - keep following; the batch rolled back and will be retried
                log.exception("projections: batch failed; retrying")
                self._positions.clear()
                moved = 0
                stop.wait(1.0)
            if not moved:
                stop.wait(idle_sleep)

    def rebuild(self, views: Sequence[str] | None = None) -> int:
        """Drop the named views (all by default) and catch up from zero. Returns notifications read.

        Alarm acknowledgements and operator credentials are not projection tables and survive.
        """
        for name in views or list(self.recorders):
            recorder = self.recorders[name]
            recorder.drop()
            recorder.create_table()
        self._positions.clear()
        return self.catch_up()


# ---- CLI: chargeledger projections run|rebuild -------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("run", "rebuild"),
                        help="run: follow the ledger forever; rebuild: drop every view and catch up from zero")
    parser.add_argument("--view", action="append", choices=[v.name for v in VIEWS],
                        help="rebuild only this view (repeatable)")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)


def run(args: argparse.Namespace) -> int:
    """Run the projections against ``args.database_url`` (set by app.py once the servers are up)."""
    from adapters.postgres import eventsourcing_env
    from domain.ledger import Ledger

    env = eventsourcing_env(args.database_url)
    ledger = Ledger(env)
    projections = Projections(ledger.applications, env, batch_size=args.batch_size)
    try:
        if args.action == "rebuild":
            started = time.monotonic()
            count = projections.rebuild(args.view)
            print(f"rebuilt {', '.join(args.view or projections.recorders)}: {count} notifications "
                  f"in {time.monotonic() - started:.1f} s")
            return 0
        stop = threading.Event()
        try:
            projections.run_forever(stop)
        except KeyboardInterrupt:
            stop.set()
        return 0
    finally:
        projections.close()
        ledger.close()
