"""Simulated time: a speed factor so an hour of charging can pass in a minute, or in a second.

Two kinds of time meet in the simulator and are kept apart on purpose:

* **simulated time** (``SimClock.now()``) drives everything the pile *measures*: the charging
  curve, the energy per tariff tier, the times written into 0x13 and 0x3B. It runs ``speed``
  times faster than real time from a chosen start instant, so a run can be replayed with the same
  tier boundaries by passing the same ``start``.
* **real time** drives everything the *link* needs: heartbeats, reply timeouts, record retries,
  reconnect delays. The platform enforces those in real seconds, so a sped-up pile must not send
  heartbeats 60 times too often or give up on a reply 60 times too early.

Times are naive datetimes on the pile's wall clock (China time), as YKC carries them.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

CHINA = ZoneInfo("Asia/Shanghai")


def china_now() -> datetime:
    """The current wall-clock time in China, naive, to the second."""
    return datetime.now(CHINA).replace(tzinfo=None, microsecond=0)


class SimClock:
    """Simulated wall clock: ``start`` at creation, advancing ``speed`` simulated seconds per real second."""

    def __init__(self, speed: float = 1.0, start: datetime | None = None) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be positive, got {speed!r}")
        if start is not None and start.tzinfo is not None:
            raise ValueError("start is the pile's naive local wall-clock time (China time)")
        self.speed = float(speed)
        self.start = start if start is not None else china_now()
        self._t0: float | None = None

    def _loop_time(self) -> float:
        loop = asyncio.get_running_loop()
        if self._t0 is None:
            self._t0 = loop.time()  # the clock starts on first use inside the event loop
        return loop.time()

    def elapsed(self) -> float:
        """Simulated seconds since the start."""
        now = self._loop_time()
        assert self._t0 is not None
        return (now - self._t0) * self.speed

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.elapsed())

    def real_seconds(self, sim_seconds: float) -> float:
        return sim_seconds / self.speed

    async def sleep(self, sim_seconds: float) -> None:
        """Sleep for a span of simulated time."""
        await asyncio.sleep(max(0.0, sim_seconds / self.speed))

    async def sleep_until(self, sim_elapsed: float) -> None:
        """Sleep until ``elapsed()`` reaches ``sim_elapsed``; yield once even when already late."""
        await asyncio.sleep(max(0.0, (sim_elapsed - self.elapsed()) / self.speed))
