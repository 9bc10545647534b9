"""The structured event log: what every simulated pile saw and did, in order.

Tests drive the simulator by waiting on it ("the pile received 0x34", "the record was
confirmed"); the CLI prints it. One log per fleet, shared by all piles: an event is appended
synchronously, waiters are woken, subscribers (the console) are called.

Event kinds (``Event.kind``), with the main ``data`` keys:

=====================  ==========================================================================
connected              -
login_ok / login_failed  result
disconnected           reason
model_verified         model_no, matches
model_received         model_no, via ("0x0A" or "0x58")
time_synced            time
plugged / unplugged    -
remote_start           trade_no, balance_fen (0x34 received)
start_replied          trade_no, result, fail_reason (0x33 sent)
card_swiped            card (0x31 sent) / card_accepted, card_refused: trade_no, balance_fen, fail_reason
charging_started       trade_no, trade_type
realtime               trade_no, status, power_w, voltage_dv, current_da, soc_pct, energy, amount
remote_stop            (0x36 received) / stop_replied: result, fail_reason
charging_stopped       trade_no, stop_reason, energy, amount
record_sent            trade_no, attempt, energy, amount / record_confirmed, record_rejected: trade_no
fault / fault_cleared  bit, name
heartbeat_lost         missed
frame_error            code, reason, hex
draining               records (held when the drain began) / pending_start_dropped: -
=====================  ==========================================================================
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Event:
    """One notable thing. ``sim_time`` is the pile's wall clock, ``real_s`` seconds since the fleet started."""

    index: int
    real_s: float
    sim_time: datetime
    pile_no: str
    gun: int | None
    kind: str
    data: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def matches(self, kind: str | None, pile_no: str | None, gun: int | None, where: dict[str, Any]) -> bool:
        if kind is not None and self.kind != kind:
            return False
        if pile_no is not None and self.pile_no != pile_no:
            return False
        if gun is not None and self.gun != gun:
            return False
        return all(self.data.get(k) == v for k, v in where.items())


Subscriber = Callable[[Event], None]


class EventLog:
    """Append-only, bounded (``keep`` most recent events), awaitable.

    ``wait_for`` looks at events from index ``after`` on (default: from the beginning), so a test
    that waits for something that already happened does not hang: remember ``log.mark()`` before
    acting and wait with ``after=mark``.
    """

    def __init__(self, keep: int = 200_000) -> None:
        self._events: deque[Event] = deque(maxlen=keep)
        self._next = 0
        self._changed = asyncio.Event()
        self._subscribers: list[Subscriber] = []
        self._t0: float | None = None

    def subscribe(self, fn: Subscriber) -> None:
        self._subscribers.append(fn)

    def mark(self) -> int:
        """The index the next event will get."""
        return self._next

    def __len__(self) -> int:
        return self._next

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(list(self._events))

    def emit(self, sim_time: datetime, pile_no: str, gun: int | None, kind: str, **data: Any) -> Event:
        loop = asyncio.get_running_loop()
        if self._t0 is None:
            self._t0 = loop.time()
        event = Event(self._next, loop.time() - self._t0, sim_time, pile_no, gun, kind, data)
        self._next += 1
        self._events.append(event)
        self._changed.set()
        for fn in self._subscribers:
            fn(event)
        return event

    def find(
        self, kind: str | None = None, *, pile: str | None = None, gun: int | None = None, after: int = 0, **where: Any
    ) -> list[Event]:
        """Every kept event from index ``after`` on that matches."""
        return [e for e in self._events if e.index >= after and e.matches(kind, pile, gun, where)]

    async def wait_for(
        self,
        kind: str | None = None,
        *,
        pile: str | None = None,
        gun: int | None = None,
        after: int = 0,
        timeout: float = 10.0,
        **where: Any,
    ) -> Event:
        """The first event from index ``after`` on that matches; raises TimeoutError after ``timeout`` real s."""

        async def first() -> Event:
            start = after
            while True:
                for e in self._events:
                    if e.index >= start and e.matches(kind, pile, gun, where):
                        return e
                start = self._next
                self._changed.clear()
                await self._changed.wait()

        try:
            return await asyncio.wait_for(first(), timeout)
        except TimeoutError:
            wanted = ", ".join(f"{k}={v!r}" for k, v in {"kind": kind, "pile": pile, "gun": gun, **where}.items() if v)
            raise TimeoutError(f"no event ({wanted}) within {timeout} s") from None
