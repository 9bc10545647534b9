"""The gateway process's runtime (pile_link/runtime.py): full collections by the clock, none in a storm."""

from __future__ import annotations

import asyncio
import gc
import sys
from collections import Counter
from types import SimpleNamespace

from pile_link.runtime import NEVER, SWITCH_INTERVAL, FullCollections, tuned


async def until(predicate: object, limit: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not predicate():  # type: ignore[operator]
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


def test_full_collections_wait_for_the_start_then_come_by_the_clock_and_the_process_is_given_back() -> None:
    before, frozen_before = gc.get_threshold(), gc.get_freeze_count()
    stats: Counter[str] = Counter()

    async def scenario() -> None:
        ready = asyncio.Event()
        collections = FullCollections(lambda: 0, stats, every=0.05, tick=0.01)
        task = asyncio.create_task(collections.run(ready.wait()))
        await asyncio.sleep(0.05)
        assert gc.get_threshold()[2] == NEVER  # from the start: no full collection by allocation
        assert stats["gc_full"] == 0  # nothing frozen or collected before the start is over
        ready.set()
        await until(lambda: stats["gc_full"] >= 3)  # the one before freezing, then by the clock
        assert stats["gc_frozen"] > 0
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    assert gc.get_threshold() == before and gc.get_freeze_count() == frozen_before


def test_a_storm_puts_the_full_collection_off_but_not_for_ever() -> None:
    stats: Counter[str] = Counter()
    logins = [0]

    async def scenario() -> None:
        collections = FullCollections(lambda: logins[0], stats, every=0.05, max_defer=2.0, storm_rate=100.0,
                                      tick=0.01)

        async def storm() -> None:  # 10 logins a tick: 1,000 a second, above the storm rate
            while True:
                logins[0] += 10
                await asyncio.sleep(0.01)

        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        storming = asyncio.create_task(storm())
        task = asyncio.create_task(collections.run(done))
        await until(lambda: stats["gc_full_deferred"] >= 3)
        assert stats["gc_full"] == 1  # only the one before freezing: the storm put the next off
        await until(lambda: stats["gc_full"] >= 2)  # ... until max_defer
        storming.cancel()
        deferred = stats["gc_full_deferred"]
        full = stats["gc_full"]
        await until(lambda: stats["gc_full"] >= full + 2)  # the storm over: by the clock again
        assert stats["gc_full_deferred"] <= deferred + 1
        task.cancel()
        await asyncio.gather(task, storming, return_exceptions=True)

    asyncio.run(scenario())


def test_tuned_sets_the_switch_interval_while_it_runs_and_counts_every_engines_logins() -> None:
    before = sys.getswitchinterval()
    engines = {name: SimpleNamespace(login_facts=SimpleNamespace(preloaded=asyncio.Event(), asked=0))
               for name in ("main", "s2")}
    gateway = SimpleNamespace(engines=engines, stats=Counter())

    async def scenario() -> None:
        for engine in engines.values():
            engine.login_facts.preloaded = asyncio.Event()
        task = asyncio.create_task(tuned(gateway))
        await asyncio.sleep(0.02)
        assert sys.getswitchinterval() == SWITCH_INTERVAL
        engines["main"].login_facts.preloaded.set()
        await asyncio.sleep(0.02)
        assert gateway.stats["gc_full"] == 0  # one shard's facts are not all the start
        engines["s2"].login_facts.preloaded.set()
        await until(lambda: gateway.stats["gc_full"] == 1)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    assert sys.getswitchinterval() == before
