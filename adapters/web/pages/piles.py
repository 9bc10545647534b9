"""Piles with their guns' live status, kept live by server-sent events.

The page and its stream read the API's query (``piles_rows``: the live-status view in the caller's
scope). The stream (``/console/piles/live``, htmx's SSE extension) reads it again every
``WebSettings.stream_poll`` seconds and sends each pile row whose rendering changed, as the event
``pile-<number>`` whose data is the row's new HTML (the row swaps itself, ``sse-swap``). It checks
the session at every read, as a page would (logged out or disabled: the stream ends), ends after
``stream_lifetime`` (the browser reconnects), and a process holds at most ``max_streams`` of them.
A pile registered after the page loaded appears on the next load.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from adapters.api.auth import AuthError, Principal
from adapters.api.errors import ApiError
from adapters.api.operator.registry import piles_rows, station_filter, stations_rows
from adapters.web.forms import path_id
from adapters.web.render import fragment, render
from adapters.web.session import Operator, operator, settings_of

router = APIRouter()


def station_choice(request: Request, who: Principal) -> tuple[UUID | None, list[dict[str, Any]]]:
    """The ``station`` filter of the query string (one of the caller's stations, else 404) and the stations."""
    stations = stations_rows(request, who)
    asked = request.query_params.get("station") or None
    if asked is None:
        return None, stations
    station_id = path_id(asked, "station")
    if station_id not in {s["station_id"] for s in stations}:
        path_id("not a station", "station")  # 404, as a station outside the scope is
    return station_id, stations


def zones(stations: list[dict[str, Any]]) -> dict[Any, str]:
    return {s["station_id"]: s["timezone"] for s in stations}


def piles_page(request: Request, who: Principal) -> Response:
    station_id, stations = station_choice(request, who)
    piles = piles_rows(request, who, *station_filter(station_id))
    return render(request, "piles/list.html", who, nav="/piles", piles=piles, stations=stations,
                  station_id=station_id, zones=zones(stations), names={s["station_id"]: s["name"] for s in stations})


@router.get("/piles")
async def piles(request: Request, who: Operator) -> Response:
    return await run_in_threadpool(piles_page, request, who)


def sse(event: str, html: str) -> str:
    """One server-sent event whose data is ``html`` (each line its own ``data:`` field)."""
    return f"event: {event}\n" + "".join(f"data: {line}\n" for line in html.splitlines() or [""]) + "\n"


def changed_rows(request: Request, who: Principal, station_id: UUID | None, shown: dict[str, str]) -> list[str]:
    stations = stations_rows(request, who)
    names = {s["station_id"]: s["name"] for s in stations}
    events = []
    for pile in piles_rows(request, who, *station_filter(station_id)):
        html = fragment(request, "piles/row.html", pile=pile, zones=zones(stations), names=names)
        if shown.get(pile["pile_no"]) != html:
            shown[pile["pile_no"]] = html
            events.append(sse(f"pile-{pile['pile_no']}", html))
    return events


@router.get("/piles/live")
async def live(request: Request, who: Operator) -> StreamingResponse:
    station_id, _ = await run_in_threadpool(station_choice, request, who)
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
                except AuthError:
                    yield "event: signed-out\ndata: \n\n"
                    return
                for event in await run_in_threadpool(changed_rows, request, current, station_id, shown):
                    yield event
                yield ": tick\n\n"
                await asyncio.sleep(settings.stream_poll)
        finally:
            request.app.state.web_streams -= 1

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
