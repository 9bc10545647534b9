"""How a gateway process runs: a garbage collector that makes no full collection in the middle of a
reconnect storm, and a GIL handed back to the event loop within half a millisecond.

**The collector.**
A gateway holds tens of thousands of connections, each a few dozen objects CPython's cyclic collector
tracks (the link, its transport, socket, decoder, handles). A full collection (generation 2) walks every
one of them at once while holding the GIL, and CPython starts one whenever the objects that survived
since the last grew by a quarter: exactly what a reconnect storm does, several times over. Measured
(``BENCH_GC`` in ``bench/pile_link_parts.py``, 9,000 piles online and a storm of 10,000): 19 full
collections of 120-290 ms each, and every heartbeat of the piles online waited behind them (p99 214 ms
during the storm against 8 ms on the bare server).

So a gateway process (``chargeledger gateway`` / ``serve --role gateway``, and the bench's) runs
:class:`FullCollections`:

* once the login facts are preloaded, what the start made (modules, every pile's facts) is collected
  once and frozen (:func:`gc.freeze`): never walked again. Nothing frozen is lost: an object that is
  no longer referenced is still freed by its reference count; only a cycle among frozen objects would
  stay, and facts hold none;
* full collections are made by this loop instead of by allocation: every ``every`` seconds, put off
  while logins arrive faster than ``storm_rate`` a second, but never more than ``max_defer`` seconds;
* the young generations (0 and 1) are collected as always, by allocation.

**The GIL.** The event loop answers every heartbeat with a ``send`` that lets go of the GIL; the pool's
threads, loading and saving piles for the logins, take it, and CPython gives it back only when the loop
has asked for it for a whole switch interval (5 ms by default). Under a storm a loop iteration answering
a hundred heartbeats could wait that long a hundred times: ``send`` was a quarter of the loop's samples
under py-spy. The gateway process sets the interval to :data:`SWITCH_INTERVAL`.

Tests that run a gateway in their own process do not use it: the thresholds and the interval are the
process's.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("chargeledger.pile_link")

EVERY = 300.0  # s between full collections when nothing else is going on
MAX_DEFER = 1800.0  # a storm that never ends still gets one this often
STORM_RATE = 20.0  # logins/s above which the gateway is in a storm (a fleet's usual reconnects are far fewer)
TICK = 10.0  # s between looks
NEVER = 1 << 30  # generation 2's threshold: never reached by allocation
SWITCH_INTERVAL = 0.0005  # s a thread holds the GIL while the event loop waits for it


class FullCollections:
    def __init__(self, logins: Callable[[], int], stats: Counter[str], *, every: float = EVERY,
                 max_defer: float = MAX_DEFER, storm_rate: float = STORM_RATE, tick: float = TICK) -> None:
        """``logins``: how many logins the gateway has answered so far (a counter that only grows)."""
        self.logins = logins
        self.stats = stats
        self.every, self.max_defer, self.storm_rate, self.tick = every, max_defer, storm_rate, tick

    async def run(self, ready: Awaitable[object]) -> None:
        """Until cancelled: freeze what the start made once ``ready`` is done, then collect generation 2
        by the clock. Cancelled: the thresholds and the frozen objects are given back."""
        thresholds = gc.get_threshold()
        gc.set_threshold(thresholds[0], thresholds[1], NEVER)
        try:
            await ready
            self.collect()
            gc.freeze()
            self.stats["gc_frozen"] = gc.get_freeze_count()
            log.info("gateway: %d objects of the start frozen; full collections every %.0f s, not during a storm",
                     gc.get_freeze_count(), self.every)
            await self.collect_by_the_clock()
        finally:
            gc.unfreeze()
            gc.set_threshold(*thresholds)

    async def collect_by_the_clock(self) -> None:
        loop = asyncio.get_running_loop()
        last, seen = loop.time(), self.logins()
        while True:
            await asyncio.sleep(self.tick)
            now, count = loop.time(), self.logins()
            storm = (count - seen) / self.tick > self.storm_rate
            seen = count
            due = now - last >= self.every
            if due and (not storm or now - last >= self.max_defer):
                self.collect()
                last = loop.time()
            elif due:
                self.stats["gc_full_deferred"] += 1

    def collect(self) -> None:
        began = time.perf_counter()
        found = gc.collect()
        took = time.perf_counter() - began
        self.stats["gc_full"] += 1
        self.stats["gc_full_ms"] += int(took * 1000)
        log.debug("gateway: full collection in %.0f ms, %d unreachable objects", took * 1000, found)


async def tuned(gateway: Any) -> None:
    """Until cancelled, the process tuned for ``gateway`` (a :class:`~pile_link.gateway.Gateway` or a
    :class:`~pile_link.shards.ShardedGateway`, every shard's engine): the switch interval, and
    :class:`FullCollections` counting the logins of every engine."""
    engines = list(getattr(gateway, "engines", {"": gateway}).values())
    ready = asyncio.gather(*(engine.login_facts.preloaded.wait() for engine in engines))
    interval = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL)
    try:
        await FullCollections(lambda: sum(engine.login_facts.asked for engine in engines), gateway.stats).run(ready)
    finally:
        sys.setswitchinterval(interval)
