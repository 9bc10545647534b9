"""Retrying with backoff through an outage of any length, and saying so in the log.

A long-running role (the relay, the gateway's write-behind and NATS follower, the watchdog, the
projections) never gives up on Postgres or NATS: each thing it retries has an :class:`Outage`, which
says how long to pause before the next attempt (doubling from ``first`` up to ``cap``), logs a
warning when failures begin (``<name> unavailable (...); retrying in N s``), every ``report_every``
failures while they last, and once when the dependency works again (``<name> back after N s``), and
counts both in the role's stats (``<key>_failures``, ``<key>_recoveries``). An error that is not an
outage but a bug (``unexpected``) is logged with its traceback, and retried the same way.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import TypeVar

import eventsourcing.persistence
import psycopg
import psycopg_pool

# What says "the database is not there" (down, restarting, unreachable, a timeout), as opposed to a
# statement the database refused for what it is: the first is waited out, the second is a failure.
T = TypeVar("T")
DATABASE_OUTAGE = (psycopg.OperationalError, psycopg.InterfaceError, psycopg_pool.PoolTimeout,
                   eventsourcing.persistence.OperationalError, eventsourcing.persistence.InterfaceError)


class Outage:
    def __init__(self, name: str, key: str, log: logging.Logger, stats: Counter[str] | None = None, *,
                 first: float = 0.5, cap: float = 30.0, report_every: int = 10) -> None:
        self.name = name  # what is retried, for the log ("writing readings")
        self.key = key  # its stats' prefix ("readings_write")
        self.log = log
        self.stats = stats if stats is not None else Counter()
        self.first = first
        self.cap = cap
        self.report_every = report_every
        self.failures = 0  # in a row
        self.since = 0.0  # time.monotonic() of the first failure in a row

    @property
    def ongoing(self) -> bool:
        return self.failures > 0

    def failed(self, error: BaseException, unexpected: bool = False) -> float:
        """Note a failed attempt; returns the pause before the next one."""
        self.failures += 1
        self.stats[f"{self.key}_failures"] += 1
        pause = min(self.cap, self.first * 2 ** min(self.failures - 1, 30))
        if self.failures == 1:
            self.since = time.monotonic()
        if unexpected:
            self.log.error("%s failed (attempt %d); retrying in %.1f s", self.name, self.failures, pause,
                           exc_info=error)
        elif self.failures == 1:
            self.log.warning("%s unavailable (%s: %s); retrying in %.1f s", self.name, type(error).__name__, error,
                             pause)
        elif self.failures % self.report_every == 0:
            self.log.warning("%s still unavailable after %.0f s and %d attempts (%s: %s); next try in %.1f s",
                             self.name, time.monotonic() - self.since, self.failures, type(error).__name__, error,
                             pause)
        return pause

    def succeeded(self) -> None:
        """Note an attempt that worked: ends an outage (logged with its length)."""
        if self.failures:
            self.stats[f"{self.key}_recoveries"] += 1
            self.log.warning("%s back after %.1f s (%d failed attempts)", self.name,
                             time.monotonic() - self.since, self.failures)
        self.failures = 0


def when_up(name: str, log: logging.Logger, make: Callable[[], T], stopping: threading.Event | None = None) -> T | None:
    """``make()``, tried again with backoff (and logged as an :class:`Outage`) while the database is
    not there: a role started during an outage waits for it. None if ``stopping`` is set meanwhile."""
    outage = Outage(name, name.replace(" ", "_"), log)
    stopping = stopping or threading.Event()
    while not stopping.is_set():
        try:
            made = make()
        except DATABASE_OUTAGE as error:
            stopping.wait(outage.failed(error))
            continue
        outage.succeeded()
        return made
    return None
