"""Piles with their guns' live status, kept live by server-sent events.

The page and its stream read the API's query (``piles_rows``: the live-status view in the caller's
scope). The stream (``/console/piles/live``, the loop of :mod:`adapters.web.live`, which a pile's own
page shares) reads it again every ``WebSettings.stream_poll`` seconds and sends each pile row whose
rendering changed, as the event ``pile-<number>`` whose data is the row's new HTML (the row swaps
itself, ``sse-swap``). A pile registered after the page loaded appears on the next load.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from adapters.api.auth import Principal
from adapters.api.operator.registry import piles_rows, station_filter, stations_rows
from adapters.web.forms import path_id
from adapters.web.live import stream
from adapters.web.render import fragment, render
from adapters.web.session import Operator

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


def rows(request: Request, who: Principal, station_id: UUID | None) -> list[tuple[str, str]]:
    """The live part of the list: each pile's row, as the event ``pile-<number>`` (adapters/web/live.py)."""
    stations = stations_rows(request, who)
    names = {s["station_id"]: s["name"] for s in stations}
    return [(f"pile-{pile['pile_no']}",
             fragment(request, "piles/row.html", pile=pile, zones=zones(stations), names=names))
            for pile in piles_rows(request, who, *station_filter(station_id))]


@router.get("/piles/live")
async def live(request: Request, who: Operator) -> StreamingResponse:
    station_id, _ = await run_in_threadpool(station_choice, request, who)
    return stream(request, lambda request, current: rows(request, current, station_id))
