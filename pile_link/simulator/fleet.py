"""A fleet of simulated piles sharing one clock, one seed and one event log.

::

    async with Fleet("127.0.0.1", 8768, piles=[PileSpec("32010600019236", guns=2)], seed=7, speed=60) as fleet:
        pile = fleet.pile("32010600019236")
        pile.plug(1)
        started = await fleet.events.wait_for("charging_started", pile=pile.pile_no)
        ...

Each pile gets its own ``random.Random`` seeded from ``(seed, pile number)``: adding a pile does
not change what the others draw, and the same seed and speed replay the same charges.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable
from datetime import datetime
from types import TracebackType

from pile_link.simulator.clock import SimClock
from pile_link.simulator.events import EventLog
from pile_link.simulator.pile import PileConfig, PileSpec, SimPile, SimulatorError


def pile_numbers(first: str, count: int) -> list[str]:
    """``count`` consecutive 14-digit pile numbers from ``first``."""
    if len(first) != 14 or not first.isdigit():
        raise ValueError(f"a pile number is 14 digits, got {first!r}")
    start = int(first)
    if start + count > 10**14:
        raise ValueError("pile numbers would overflow 14 digits")
    return [f"{start + i:014d}" for i in range(count)]


def generate_specs(
    count: int, *, guns: int = 1, seed: int = 0, first_pile: str = "99000000000001", quirky: float = 0.0,
    plugged: bool = False, max_power_w: int | None = None,
) -> list[PileSpec]:
    """Specs for ``count`` piles; a seeded fraction ``quirky`` of them send high-byte-first CRCs."""
    if not 0.0 <= quirky <= 1.0:
        raise ValueError(f"quirky is a fraction 0..1, got {quirky}")
    rng = random.Random(f"{seed}/quirky")
    return [
        PileSpec(no, guns=guns, crc_order="be" if rng.random() < quirky else "le", plugged=plugged,
                 max_power_w=max_power_w)
        for no in pile_numbers(first_pile, count)
    ]


class Fleet:
    """N piles × M guns on one asyncio loop. Start with ``await fleet.start()`` or ``async with``."""

    def __init__(
        self,
        host: str,
        port: int,
        piles: Iterable[PileSpec],
        *,
        seed: int = 0,
        speed: float = 1.0,
        start: datetime | None = None,
        config: PileConfig | None = None,
        keep_events: int = 200_000,
    ) -> None:
        self.host, self.port, self.seed = host, port, seed
        self.clock = SimClock(speed, start)
        self.events = EventLog(keep_events)
        self.config = config or PileConfig()
        self.piles: list[SimPile] = []
        self._by_no: dict[str, SimPile] = {}
        for spec in piles:
            if spec.pile_no in self._by_no:
                raise ValueError(f"pile {spec.pile_no} listed twice")
            pile = SimPile(spec, host, port, clock=self.clock, log=self.events,
                           rng=random.Random(f"{seed}/{spec.pile_no}"), config=self.config)
            self.piles.append(pile)
            self._by_no[spec.pile_no] = pile

    def pile(self, pile_no: str) -> SimPile:
        try:
            return self._by_no[pile_no]
        except KeyError:
            raise SimulatorError(f"no pile {pile_no} in this fleet") from None

    async def start(self, *, wait: bool = True, timeout: float = 30.0) -> None:
        """Connect every pile; with ``wait``, return once all are logged in (or raise)."""
        for pile in self.piles:
            pile.start()
        if wait:
            await asyncio.gather(*(pile.wait_online(timeout) for pile in self.piles))

    async def drain(self, timeout: float) -> list[str]:
        """Take every pile out of service (:meth:`SimPile.drain`: no new start, every charge stopped at
        the pile) and wait until every record has been confirmed (0x40) or ``timeout`` real seconds
        passed. Returns what is still unconfirmed, as ``"<pile>-<gun> <trade number>"`` (empty: drained)."""
        for pile in self.piles:
            pile.drain()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not all(pile.drained for pile in self.piles) and loop.time() < deadline:
            await asyncio.sleep(0.1)
        return self.unconfirmed()

    def unconfirmed(self) -> list[str]:
        """Records no 0x40 confirmed yet, as ``"<pile>-<gun> <trade number>"``."""
        return [f"{pile.pile_no}-{p.record.gun_no} {trade_no}"
                for pile in self.piles for trade_no, p in pile.records.items()]

    async def close(self) -> None:
        await asyncio.gather(*(pile.close() for pile in self.piles), return_exceptions=True)

    async def __aenter__(self) -> Fleet:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def summary(self) -> dict[str, int]:
        """Counts an operator wants at the end of a run."""
        kinds = ("login_ok", "login_failed", "charging_started", "charging_stopped", "record_sent",
                 "record_confirmed", "record_rejected", "disconnected", "frame_error")
        counts = {k: 0 for k in kinds}
        for event in self.events:
            if event.kind in counts:
                counts[event.kind] += 1
        counts["records_unconfirmed"] = sum(len(p.records) for p in self.piles)
        counts["online"] = sum(1 for p in self.piles if p.online)
        return counts
