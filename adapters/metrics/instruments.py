"""Every metric chargeledger exports, defined once, on one registry per process.

Names follow Prometheus' conventions (``_total`` counters, ``_seconds`` histograms, base units);
labels are bounded: a frame's label is its message class name (a fixed set, ``unknown`` for a type
the codec does not know), a decode error's its codec code (``pile_link/ykc/errors.py``), a
command's its kind. Gauges that a process knows in memory (connected piles, the relay's state) and
those that need a query are custom collectors registered by the role (``register``), never
computed here. What each metric means and the alarm to set on it: docs/operations.md.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry()  # the process's one registry; /metrics serves it
ProcessCollector(registry=REGISTRY)  # memory, CPU, open files: the per-connection memory budget
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

ROLE = Gauge("chargeledger_role_info", "1 for the role this process runs (serve --role, or the command)",
             ["role"], registry=REGISTRY)

# ---- the pile link (pile_link/link.py, pile_link/delivery.py) -------------------------------------
FRAMES_IN = Counter("chargeledger_frames_in_total", "YKC frames read from piles, by message", ["frame"],
                    registry=REGISTRY)
FRAMES_OUT = Counter("chargeledger_frames_out_total", "YKC frames written to piles, by message", ["frame"],
                     registry=REGISTRY)
DECODE_ERRORS = Counter("chargeledger_decode_errors_total", "bytes from piles that are no frame or no message, "
                        "by codec code", ["code"], registry=REGISTRY)
FRAME_HANDLING = Histogram("chargeledger_frame_handling_seconds", "from a frame read to its handler done "
                           "(ledger calls included), by message", ["frame"], registry=REGISTRY,
                           buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
COMMAND_LATENCY = Histogram("chargeledger_command_latency_seconds", "from a command event's commit to its frame "
                            "written to the pile, on the gateway holding the pile, by command", ["command"],
                            registry=REGISTRY, buckets=(.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60))

# When the command event now being handled was committed (set by the gateway's command follower for
# the task that handles it; a frame sent from what a pile is owed at login is no command's latency).
COMMAND_COMMITTED: ContextVar[float | None] = ContextVar("command_committed", default=None)


def command_event(committed: datetime | None) -> None:
    """The command event this task now handles was committed at ``committed`` (aware; None: no
    command event, nothing this task sends now is a command's latency)."""
    COMMAND_COMMITTED.set(committed.timestamp() if committed is not None else None)


def command_sent(command: str) -> None:
    """The frame of ``command`` was written: observe its latency if a command event caused it."""
    committed = COMMAND_COMMITTED.get()
    if committed is not None:
        COMMAND_LATENCY.labels(command).observe(max(0.0, time.time() - committed))


def register(collector: Collector) -> Collector:
    """Add a role's collector to the process's registry (``unregister`` takes it away again)."""
    REGISTRY.register(collector)
    return collector


def unregister(collector: Collector) -> None:
    try:
        REGISTRY.unregister(collector)
    except KeyError:  # never registered, or already gone
        pass
