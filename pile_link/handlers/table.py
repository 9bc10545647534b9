"""The gateway's handler table: which coroutine handles each frame type a pile sends.

One :class:`~pile_link.ykc.routing.Routes` table for the platform side (uplink, odd frame types),
the same shape as the simulated pile's (:data:`pile_link.simulator.handlers.routes`). The modules of
this package fill it by decorating their handlers; :class:`~pile_link.link.PileLink` is given it and
looks each decoded message up in it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pile_link.link import PileLink
from pile_link.ykc import Frame
from pile_link.ykc.routing import Routes

Handler = Callable[[PileLink, Frame, Any], Awaitable[None]]
routes: Routes[Handler] = Routes("platform")  # what piles send, and who handles it
