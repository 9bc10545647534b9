"""What the gateway writes to the ledger behind the piles' backs, in batches: :class:`WriteBehind`
(readings, link status, offline sessions: one transaction per tick, in order, through outages),
:class:`PilesLoadedFirst` (the link status write, its piles read in one query and not kept after) and
:class:`Coalesced` (a catch-up shared by everyone who asks while one is waiting).

Both run their blocking work in the gateway's thread pool (``gateway.run``; a WriteBehind may be given
a ``run`` of its own, as the frame log's is) and count in its ``stats``; nothing else of the gateway is
used.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from adapters.servers.outage import Outage
from domain.registry import Pile
from pile_link.pile_facts import load_piles

log = logging.getLogger("chargeledger.pile_link")

MAX_WRITE_ATTEMPTS = 20  # a write-behind batch the database refuses (while up) is tried this often


class WriteBehind:
    """Observations of many piles, written to the ledger in one transaction per tick.

    Used for what needs no answer to the pile: realtime readings and link status (online,
    offline, gun status). Items keep their order: flushes are serialised, and a flush carries every
    item queued before it. ``write(batch)`` returns, per item, None or the domain error that refused it.

    A batch whose write fails goes back to the head of the queue. While the database cannot be
    reached (``reachable()`` says no), it waits there for as long as the outage lasts, retried with
    backoff (logged when the outage begins and ends); a batch the database refuses while it is up
    is tried ``MAX_WRITE_ATTEMPTS`` times, then dropped, logged and counted (``<name>_dropped``), so
    it cannot hold back what is queued behind it for ever. ``max_pending`` bounds what an outage
    keeps: beyond it the oldest items go (counted as ``<name>_shed``). Readings can afford it: each
    carries the session's energy so far, so a later one still brings the total up to date.

    ``gather()``, when given, is asked at each flush, while no write is in flight, for items kept
    elsewhere (the frame log's heartbeat counts), which join the end of the queue.
    """

    def __init__(self, gateway: Any, name: str, write: Callable[[list[Any]], list[Exception | None]],
                 after: Callable[[list[Any]], Awaitable[None]] | None = None, interval: float = 0.05,
                 max_batch: int = 500, refused: Callable[[Any, Exception], None] | None = None,
                 reachable: Callable[[], bool] | None = None, max_pending: int | None = None,
                 run: Callable[..., Awaitable[Any]] | None = None, gather: Callable[[], list[Any]] | None = None
                 ) -> None:
        self.gateway = gateway
        self.run_blocking = run or gateway.run
        self.gather = gather
        self.name = name
        self.write = write
        self.after = after
        self.refused = refused
        self.reachable = reachable
        self.max_pending = max_pending
        self.failures = 0  # consecutive failed writes of the batch at the head of the queue, the database up
        self.outage = Outage(f"writing {name}", f"{name}_write", log, gateway.stats, cap=5.0)
        self.pause = 0.5  # before the next try, after a failed write
        self.interval = interval
        self.max_batch = max_batch
        self.pending: list[Any] = []
        self.in_flight: asyncio.Future[Any] | None = None
        self.lock = asyncio.Lock()
        self.wakeup = asyncio.Event()

    def add(self, item: Any) -> None:
        self.pending.append(item)
        if self.max_pending is not None and len(self.pending) > self.max_pending:
            shed = len(self.pending) - self.max_pending
            del self.pending[:shed]
            self.gateway.stats[f"{self.name}_shed"] += shed
        if len(self.pending) >= self.max_batch:
            self.wakeup.set()

    async def flush(self) -> None:
        """Write everything queued so far (and wait for a flush already in flight); raises if a
        write fails, with its batch back at the head of the queue."""
        async with self.lock:
            if self.in_flight is not None and not self.in_flight.done():
                await asyncio.wait([self.in_flight])  # a write whose flush was cancelled (the gateway stopping)
            if self.gather is not None:  # nothing is being written now
                self.pending.extend(self.gather())
            while self.pending:
                batch, self.pending = self.pending[: self.max_batch], self.pending[self.max_batch:]
                # shielded: a flush cancelled while the write waits for a worker must not unqueue it
                self.in_flight = asyncio.ensure_future(self.run_blocking(self.write, batch))
                try:
                    outcomes = await asyncio.shield(self.in_flight)
                except asyncio.CancelledError:
                    self.in_flight.add_done_callback(lambda done: done.cancelled() or done.exception())
                    raise
                except Exception as error:
                    self.pause = self.outage.failed(error)
                    await self.requeue(batch)
                    raise
                self.failures = 0
                self.outage.succeeded()
                self.gateway.stats[self.name] += len(batch)
                for item, outcome in zip(batch, outcomes):
                    if outcome is not None:
                        self.gateway.stats[f"{self.name}_refused"] += 1
                        log.warning("%s refused: %s (%s)", self.name, outcome, item[0] if isinstance(item, tuple)
                                    else item.get("trade_no"))
                        if self.refused is not None:
                            self.refused(item, outcome)
                if self.after is not None:
                    await self.after(batch)

    async def requeue(self, batch: list[Any]) -> None:
        if self.reachable is not None and not await self.run_blocking(self.reachable):
            self.pending[:0] = batch  # the database is away: the batch waits, however long that takes
            return
        self.failures += 1
        if self.failures < MAX_WRITE_ATTEMPTS:
            self.pending[:0] = batch
            return
        self.failures = 0
        self.gateway.stats[f"{self.name}_dropped"] += len(batch)
        log.error("%s: %d items dropped after %d failed writes", self.name, len(batch), MAX_WRITE_ATTEMPTS)

    async def run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self.wakeup.wait(), self.interval)
            except asyncio.TimeoutError:
                pass
            self.wakeup.clear()
            try:
                await self.flush()
            except Exception:  # noqa: BLE001 - the items stay queued; tried again after a pause
                await asyncio.sleep(self.pause)


class PilesLoadedFirst:
    """``Ledger.record_pile_changes`` (``write``) with the batch's piles not in the registry's cache read
    first, all in one query (:func:`pile_link.pile_facts.load_piles`), then let go of once written.

    The write itself is unchanged: it brings every pile up to date with the store (one query), applies
    the changes and saves them version-checked. Loaded one by one, a pile not cached costs two queries
    (its snapshot, its events): a reconnect storm's ``Connected`` events made a thousand a second. And
    what is cached stays: a gateway kept the aggregate of every pile that ever logged in (most of its
    memory per connection) for writes that come seldom once a pile is in (a gun's status when it changes,
    a disconnect). So the batch's piles are evicted after the write; the next change of a pile reads it
    again, in its batch's one query.
    """

    def __init__(self, registry: Any, write: Callable[[list[Any]], list[Exception | None]]) -> None:
        self.registry = registry  # domain.applications.Registry
        self.write = write

    def __call__(self, batch: list[tuple[str, Callable[[Pile], Any]]]) -> list[Exception | None]:
        registry = self.registry
        pile_ids = list(dict.fromkeys(Pile.create_id(pile_no) for pile_no, _ in batch))
        cache = registry.repository.cache
        missing = [pile_id for pile_id in pile_ids if not registry.is_cached(pile_id)]
        if cache is not None and missing:
            for pile_id, pile in load_piles(registry, missing).items():
                if isinstance(pile, Pile):  # not one: the write refuses its changes as before
                    cache.put(pile_id, pile)
        try:
            return self.write(batch)
        finally:
            for pile_id in pile_ids:
                registry.evict(pile_id)


class Coalesced:
    """A blocking catch-up run in the gateway's pool, shared: a caller waits for a run that began after
    it asked, and callers that ask while one run waits for its turn share that run (a thousand piles
    logging in at once make two or three catch-ups, not a thousand)."""

    def __init__(self, gateway: Any, fn: Callable[[], Any]) -> None:
        self.gateway = gateway
        self.fn = fn
        self.current: asyncio.Future[Any] | None = None
        self.next: asyncio.Future[Any] | None = None

    async def __call__(self) -> Any:
        if self.next is None:
            self.next = asyncio.ensure_future(self._after(self.current))
        return await asyncio.shield(self.next)

    async def _after(self, previous: asyncio.Future[Any] | None) -> Any:
        if previous is not None:
            await asyncio.wait([previous])
        self.current, self.next = self.next, None
        return await self.gateway.run(self.fn)
