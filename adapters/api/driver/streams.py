"""Live session streams (server-sent events): their framing, and the streams each driver may hold open."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any
from uuid import UUID

from fastapi.responses import StreamingResponse

from adapters.api.driver.identity import DriverPrincipal
from adapters.api.errors import ApiError


def sse(event: str, data: Any, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


class StreamSlots:
    """The live streams each driver holds open in this process; one beyond ``limit`` is refused (429)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: dict[tuple[UUID, str], int] = {}
        self.lock = threading.Lock()

    def count(self, driver: DriverPrincipal) -> int:
        with self.lock:
            return self.open.get((driver.tenant_id, driver.driver_id), 0)

    def take(self, driver: DriverPrincipal) -> Callable[[], None]:
        """A slot for one stream, or ApiError 429; returns its release (safe to call more than once)."""
        key = (driver.tenant_id, driver.driver_id)
        with self.lock:
            if self.open.get(key, 0) >= self.limit:
                raise ApiError(429, "too_many_streams", f"at most {self.limit} live streams at once; close one",
                               limit=self.limit)
            self.open[key] = self.open.get(key, 0) + 1
        released = threading.Event()

        def release() -> None:
            with self.lock:
                if released.is_set():
                    return
                released.set()
                left = self.open[key] - 1
                if left:
                    self.open[key] = left
                else:
                    del self.open[key]

        return release


class SlotStream(StreamingResponse):
    """A streaming response that gives its slot back when it ends, however it ends (done, dropped, error)."""

    def __init__(self, content: AsyncIterator[str], release: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.release = release

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.release()
