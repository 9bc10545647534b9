"""Figures that need a query, read at most once per ``ttl`` whatever the scrape rate.

A role registers one :class:`Cached` per source (the relay's lag, the views' positions, the books,
the outbox): the first scrape after ``ttl`` runs ``read`` (one short batch of indexed queries), the
others get the same families. A source that fails (the database away) yields no stale figures, only
``chargeledger_metrics_source_up{source}`` at 0, and the failure is logged once until it reads again:
an alarm on that gauge says the figures are missing, rather than a graph going flat on old values.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

log = logging.getLogger("chargeledger.metrics")

TTL = 5.0  # seconds; Prometheus scrapes every 15 s by default, so each scrape reads once at most


class Cached(Collector):
    def __init__(self, source: str, read: Callable[[], Iterable[Metric]], ttl: float = TTL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.source = source
        self.read = read
        self.ttl = ttl
        self.clock = clock
        self.reads = 0  # how many times ``read`` ran (tests: a burst of scrapes reads once)
        self._lock = threading.Lock()
        self._families: list[Metric] = []
        self._up = False
        self._at: float | None = None

    def collect(self) -> Iterator[Metric]:
        with self._lock:  # two scrapes at once read once
            now = self.clock()
            if self._at is None or now - self._at >= self.ttl:
                self._refresh(now)
            families, up = list(self._families), self._up
        yield from families
        gauge = GaugeMetricFamily("chargeledger_metrics_source_up", "1 if the source's last read worked",
                                  labels=["source"])
        gauge.add_metric([self.source], 1.0 if up else 0.0)
        yield gauge

    def _refresh(self, now: float) -> None:
        self._at = now
        self.reads += 1
        try:
            self._families = list(self.read())
        except Exception as error:  # noqa: BLE001 - a scrape must answer; the gauge says what is missing
            if self._up or self.reads == 1:
                log.warning("metrics: %s unreadable (%s: %s); its figures are left out", self.source,
                            type(error).__name__, error)
            self._families, self._up = [], False
        else:
            if not self._up and self.reads > 1:
                log.info("metrics: %s readable again", self.source)
            self._up = True
