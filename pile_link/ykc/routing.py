"""Which code handles which YKC message: one registry shape for both ends of the link.

The gateway's handlers (``pile_link/handlers/``, run by ``pile_link/link.py``) take what piles send
(uplink, odd frame types); the simulated pile's (``pile_link/simulator/handlers.py``) take what the
platform sends (downlink, even types). Each side keeps one :class:`Routes` table, filled by
decorating its handlers::

    routes = Routes("platform")

    @routes.handles(Heartbeat)
    async def on_heartbeat(link, frame, msg): ...

    handler = routes.get(msg)  # None: nothing handles this message here

A table refuses a message its side never receives (a platform handler for a downlink frame, and
the reverse) and a second handler for one message class, both when the module is imported, so a
mistake cannot wait for the first frame of that type in production.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, Literal, TypeVar

from pile_link.ykc.base import Message

H = TypeVar("H", bound=Callable[..., object])
Side = Literal["platform", "pile"]


class Routes(Generic[H]):
    """Handlers by message class for one side of the link."""

    def __init__(self, side: Side) -> None:
        if side not in ("platform", "pile"):
            raise ValueError(f"a side is 'platform' or 'pile', not {side!r}")
        self.side = side
        self._by_class: dict[type[Message], H] = {}

    def handles(self, cls: type[Message]) -> Callable[[H], H]:
        """Register the decorated function as this side's handler of ``cls``."""
        uplink = cls.TYPE % 2 == 1  # YKC: charger -> platform frames have odd type codes
        if uplink != (self.side == "platform"):
            sender = "piles" if uplink else "the platform"
            raise ValueError(f"0x{cls.TYPE:02X} {cls.__name__} is sent by {sender}; the {self.side} side "
                             "never receives it")
        if cls in self._by_class:
            raise ValueError(f"0x{cls.TYPE:02X} {cls.__name__} already has a handler on the {self.side} side: "
                             f"{self._by_class[cls].__qualname__}")

        def register(fn: H) -> H:
            self._by_class[cls] = fn
            return fn

        return register

    def get(self, msg: Message) -> H | None:
        return self._by_class.get(type(msg))

    def __contains__(self, cls: object) -> bool:
        return cls in self._by_class

    def __iter__(self) -> Iterator[type[Message]]:
        return iter(self._by_class)

    def __len__(self) -> int:
        return len(self._by_class)
