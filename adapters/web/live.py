"""Pages kept live by server-sent events: the loop the piles list and a pile's page share.

A live page names, for its stream, a function that renders its live parts now: ``sections(request,
who)`` returns ``(event, html)`` pairs, each part of the page that swaps itself with the event of its
name (htmx's SSE extension: ``sse-connect`` on the page, ``sse-swap="<event>"`` and
``hx-swap="outerHTML"`` on the part). :func:`stream` reads it every ``WebSettings.stream_poll``
seconds and sends only the parts whose HTML changed since it last sent them (all of them at first).
It checks the session at every read, as a page would (logged out or disabled: ``signed-out``, and the
stream ends); a part gone out of the caller's scope (``NotFound``) ends it too. A stream ends after
``stream_lifetime`` (the browser reconnects), and a process holds at most ``max_streams`` of them
(503 beyond).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from adapters.api.auth import AuthError, Principal
from adapters.api.errors import ApiError
from adapters.web.session import operator, settings_of
from domain.errors import NotFound

Sections = Callable[[Request, Principal], list[tuple[str, str]]]  # (event, html) of each live part, now


def sse(event: str, html: str) -> str:
    """One server-sent event whose data is ``html`` (each line its own ``data:`` field)."""
    return f"event: {event}\n" + "".join(f"data: {line}\n" for line in html.splitlines() or [""]) + "\n"


def changed(parts: list[tuple[str, str]], shown: dict[str, str]) -> list[str]:
    """The events of the parts whose HTML differs from what was sent last (``shown``, updated)."""
    events = []
    for event, html in parts:
        if shown.get(event) != html:
            shown[event] = html
            events.append(sse(event, html))
    return events


def stream(request: Request, sections: Sections) -> StreamingResponse:
    """The live stream of a page whose parts ``sections`` renders (see the module's docstring)."""
    settings = settings_of(request)
    if request.app.state.web_streams >= settings.max_streams:
        raise ApiError(503, "too_many_streams", "too many live pages are open; reload later")

    async def events() -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        ends, shown = loop.time() + settings.stream_lifetime, {}  # type: ignore[var-annotated]
        request.app.state.web_streams += 1  # counted here, where the finally below is sure to run
        try:
            while loop.time() < ends and not await request.is_disconnected():
                try:
                    current = await operator(request)
                    parts: list[Any] = await run_in_threadpool(sections, request, current)
                except AuthError:
                    yield "event: signed-out\ndata: \n\n"
                    return
                except NotFound:  # out of scope now (an agent's station taken away): nothing more to show
                    return
                for event in changed(parts, shown):
                    yield event
                yield ": tick\n\n"
                await asyncio.sleep(settings.stream_poll)
        finally:
            request.app.state.web_streams -= 1

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
