"""What a pile's connection needs from the process that serves it.

:class:`~pile_link.link.PileLink` handles one connection's frames; the YKC gateway
(:class:`~pile_link.gateway.Gateway`) accepts connections, owns the shared parts (the ledger, the
thread pool, the write-behind queues, the counters) and sends commands. The link depends on this
protocol rather than on the Gateway class, so the two modules do not import each other and a test
(or another server) can serve a link with anything that has these members.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from domain.start_rules import StartRules
from pile_link.boundary import Refusal

PileLink = Any  # pile_link.link.PileLink, which imports this module


class Queue(Protocol):
    """A write-behind queue: items are written to the ledger in batches, in order."""

    def add(self, item: Any) -> None: ...


class Frames(Protocol):
    """The frame log (pile_link/frame_log.py): what a logged-in pile's link read and wrote, queued."""

    def frame_in(self, pile_no: str, at: float, frame: Any, refused: bool) -> None: ...

    def frame_out(self, pile_no: str, data: bytes) -> None: ...

    def bad_frame(self, pile_no: str, error: Any) -> None: ...


class LinkContext(Protocol):
    ledger: Any  # domain.ledger.Ledger
    gateway_id: str
    clock: Callable[[], datetime]
    login_deadline: float  # seconds a new connection has to log in
    card_start_rules: StartRules  # what a start by card or VIN at the pile holds
    stats: Counter[str]
    readings: Queue  # meter readings (0x13) on their way to the ledger
    pile_changes: Queue  # (pile_no, change) pairs: connects, faults, disconnects
    frames: Frames  # every frame in and out after login, for the console's pile page
    login_facts: Any  # pile_link.pile_facts.LoginFacts: what a login needs, read for many logins at once
    stop_requested: set[str]  # trade numbers whose stop was asked of the pile (balance protection)

    def loop_time(self) -> float: ...

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        """Run a blocking ledger call off the event loop."""

    async def bind(self, link: PileLink, pile_no: str) -> LinkContext:
        """At login: the context that serves ``pile_no`` (its shard's; ``link.gateway`` from then on).
        Raises NotFound for a pile no shard served here knows."""

    def link_accepted(self, link: PileLink) -> None:
        """A connection was made (before any frame): the gateway counts it and its sweep watches it."""

    async def link_opened(self, link: PileLink) -> None: ...

    async def link_closed(self, link: PileLink, reason: str) -> None: ...

    def frame_refused(self, pile_no: str, refusal: Refusal, frame_type: int) -> None: ...

    def tariff_for_pile(self, pile_no: str) -> Any: ...

    def station_timezone(self, station_id: UUID) -> str: ...

    def deliver_owed_until_done(self, link: PileLink) -> Awaitable[None]: ...
