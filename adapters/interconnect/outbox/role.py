"""``chargeledger tcec-outbox``: follow, schedule and send, in one loop, until told to stop.

Each step catches the follower up with the logs, enqueues what the clock makes due, then sends every
due row, and asks peers about our drivers' roaming charges that wait for an answer
(``customer/reconcile.py``); once an hour it prunes the rows answered more than 30 days ago (``store/outbox.py::KEEP``).
Any number of processes may run it at once (the follower takes turns on its tracking rows,
the schedule's keys are unique, senders lease the rows they take); one is enough. A step that fails
(the database away) is logged and the next one tries again; nothing is lost, since everything waits
in the tables.

With ``pull_every``, the role also pulls the catalogue of every enabled infrastructure peer that often
(``customer/catalogue.py::Pulls``), in a thread of its own so a slow peer does not hold back the pushes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import psycopg

from adapters.interconnect.customer.catalogue import Pulls
from adapters.interconnect.customer.reconcile import Reconciler
from adapters.interconnect.customer.sessions import RoamingSessions
from adapters.interconnect.outbox.follower import Follower
from adapters.interconnect.outbox.schedule import Schedule
from adapters.interconnect.outbox.sender import RetryPolicy, Sender
from adapters.interconnect.store.directory import Store
from adapters.interconnect.tcec.peer import Peer
from domain.clock import utcnow

log = logging.getLogger("chargeledger.interconnect.outbox")
PRUNE_EVERY = timedelta(hours=1)


class OutboxRole:
    def __init__(self, ledger: Any, database_url: str, store: Store, *,
                 http_for: Callable[[Peer], httpx.Client] | None = None, policy: RetryPolicy = RetryPolicy(),
                 clock: Callable[[], datetime] = utcnow, pull_every: timedelta | None = None) -> None:
        self.follower = Follower(ledger, database_url)
        self.pulls = Pulls(store, pull_every, http_for=http_for, clock=clock) if pull_every else None
        self.schedule = Schedule(ledger, store)
        self.sender = Sender(store, http_for=http_for, policy=policy)
        self.roaming = Reconciler(ledger, database_url, RoamingSessions(ledger, store, http_for=http_for))
        self.store, self.clock = store, clock
        self.pruned_at: datetime | None = None

    def step(self, now: datetime | None = None) -> dict[str, int]:
        now = now or self.clock()
        read = self.follower.catch_up() + self.roaming.catch_up()
        scheduled = self.schedule.run(now)
        answered = self.sender.sweep(now)
        asked = self.roaming.sweep(now)
        if self.pruned_at is None or now - self.pruned_at >= PRUNE_EVERY:
            self.pruned_at = now
            self.store.outbox.prune(now)
        return {"events": read, "scheduled": scheduled, "answered": answered, "roaming_asked": asked}

    def run_forever(self, stop: threading.Event, interval: float = 1.0) -> None:
        pulling = None
        if self.pulls is not None:
            pulling = threading.Thread(target=self.pulls.run_forever, args=(stop, interval), name="tcec-pulls",
                                       daemon=True)
            pulling.start()
        try:
            self._send_forever(stop, interval)
        finally:
            stop.set()
            if pulling is not None:
                pulling.join(timeout=60)

    def _send_forever(self, stop: threading.Event, interval: float) -> None:
        while not stop.is_set():
            try:
                done = self.step()
                if any(done.values()):
                    log.info("T/CEC outbox: %s", done)
            except psycopg.OperationalError as error:
                log.warning("T/CEC outbox: database unavailable (%s); trying again", type(error).__name__)
            except Exception:  # noqa: BLE001 - one bad step must not end the role
                log.exception("T/CEC outbox: a step failed; trying again")
            stop.wait(interval)

    def close(self) -> None:
        self.sender.close()
        if self.pulls is not None:
            self.pulls.close()
        self.roaming.sessions.close()
