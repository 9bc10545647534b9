"""Retrying with backoff through an outage of any length, and saying so in the log.

A long-running role (the gateway's write-behind, its NATS follower, the watchdog) never gives up on
Postgres or NATS: each thing it retries has an :class:`Outage`, which says how long to pause before
the next attempt (doubling from ``first`` up to ``cap``), logs a warning when failures begin, every
``report_every`` failures while they last, and once when the dependency works again (with how long
it was down), and counts both in the role's stats (``<key>_failures``, ``<key>_recoveries``).
"""

from __future__ import annotations

import logging
import time
from collections import Counter


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

    def failed(self, error: BaseException) -> float:
        """Note a failed attempt; returns the pause before the next one."""
        self.failures += 1
        self.stats[f"{self.key}_failures"] += 1
        pause = min(self.cap, self.first * 2 ** min(self.failures - 1, 30))
        if self.failures == 1:
            self.since = time.monotonic()
            self.log.warning("%s failed (%s: %s); retrying with backoff", self.name, type(error).__name__, error)
        elif self.failures % self.report_every == 0:
            self.log.warning("%s still failing after %.0f s and %d attempts (%s: %s); next try in %.1f s",
                             self.name, time.monotonic() - self.since, self.failures, type(error).__name__, error,
                             pause)
        return pause

    def succeeded(self) -> None:
        """Note an attempt that worked: ends an outage (logged with its length)."""
        if self.failures:
            self.stats[f"{self.key}_recoveries"] += 1
            self.log.warning("%s recovered after %.1f s and %d failed attempts", self.name,
                             time.monotonic() - self.since, self.failures)
        self.failures = 0
