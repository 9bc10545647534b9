"""The one table of the door's handlers; each module of this package registers its interfaces on it."""

from __future__ import annotations

from adapters.interconnect.tcec.routing import Handlers

handlers = Handlers()
