"""Which handler answers which T/CEC interface: one table, filled by decorating the handlers.

::

    handlers = Handlers()

    @handlers.handles("query_token")
    def query_token(call: Call) -> TokenResponse: ...

A handler gets a :class:`Call` (the authenticated peer, the decoded request, our clock, and the
services the door was built with) and returns the answer's business object, or raises
:class:`Refusal` for a protocol refusal (Ret 4004 with the reason, -1 busy...). Business outcomes
(``SuccStat``/``FailReason``) are part of the answer, not refusals.

A name the standard does not list (a provincial regulator's own interface) is registered with its
:class:`~.interfaces.Interface`; a second handler for one name is refused when the module is imported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from adapters.interconnect.tcec.envelope import Ret
from adapters.interconnect.tcec.interfaces import INTERFACES, Interface
from adapters.interconnect.tcec.models.base import Model
from adapters.interconnect.tcec.peer import Peer


class Refusal(Exception):
    """A handler's protocol refusal: answered with ``ret`` and ``msg``, signed, Data empty."""

    def __init__(self, ret: Ret, msg: str) -> None:
        super().__init__(msg)
        self.ret, self.msg = ret, msg


@dataclass(frozen=True)
class Call:
    peer: Peer
    request: Any  # the interface's request model
    interface: Interface
    now: datetime
    services: Any  # what the door was built with (adapters.interconnect.service.Services)


Handler = Callable[[Call], Model]


class Handlers(Mapping[str, Interface]):
    """Handlers by interface name; as a mapping, the interfaces served (what the pipeline decodes)."""

    def __init__(self) -> None:
        self._routes: dict[str, tuple[Interface, Handler]] = {}

    def handles(self, name: str, interface: Interface | None = None) -> Callable[[Handler], Handler]:
        if interface is None:
            if name not in INTERFACES:
                raise ValueError(f"{name} is not a T/CEC 102 interface: register it with its Interface")
            interface = INTERFACES[name]
        if interface.name != name:
            raise ValueError(f"the Interface given for {name} is {interface.name}")
        if name in self._routes:
            raise ValueError(f"{name} already has a handler: {self._routes[name][1].__qualname__}")

        def register(fn: Handler) -> Handler:
            self._routes[name] = (interface, fn)
            return fn

        return register

    def handler(self, name: str) -> Handler:
        return self._routes[name][1]

    def __getitem__(self, name: str) -> Interface:
        return self._routes[name][0]

    def __iter__(self) -> Iterator[str]:
        return iter(self._routes)

    def __len__(self) -> int:
        return len(self._routes)
