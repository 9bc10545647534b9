"""Stations: the list, a new station, one station with its piles, and a new pile at a station.

Lists read the API's queries (``stations_rows``, ``piles_rows``: the catalogue and live-status views in
the caller's scope); one station is read from the ledger through the API's scope check (404 outside
it); creating runs the API's own commands (``new_station``, ``new_pile``), validated by its models.
"""

from __future__ import annotations

from collections import Counter

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from adapters.api.auth import TENANT_ADMIN
from adapters.api.operator.deps import check_station, require
from adapters.api.operator.registry import (PileRequest, StationRequest, new_pile, new_station, piles_rows,
                                            station_filter, stations_rows)
from adapters.web.forms import Invalid, path_id, validated
from adapters.web.render import render, see_other, url
from adapters.web.session import Operator, posted
from domain.errors import DomainError, NotFound

router = APIRouter()
STATION_FIELDS = ("name", "address", "latitude", "longitude", "timezone")
PILE_FIELDS = ("pile_no", "kind", "gun_count")
ZONES = ("Asia/Shanghai", "Asia/Urumqi", "Asia/Hong_Kong", "Asia/Macau", "Asia/Taipei")


def station_list(request: Request, who: Operator) -> Response:
    stations = stations_rows(request, who)
    piles = piles_rows(request, who)
    counts = Counter(pile["station_id"] for pile in piles)
    return render(request, "stations/list.html", who, nav="/stations", stations=stations, pile_counts=counts)


@router.get("/stations")
async def stations(request: Request, who: Operator) -> Response:
    return await run_in_threadpool(station_list, request, who)


def station_form(request: Request, who: Operator, status: int = 200, form: dict[str, str] | None = None,
                 errors: dict[str, str] | None = None, refused: str | None = None) -> Response:
    return render(request, "stations/new.html", who, nav="/stations", status=status, zones=[(z, z) for z in ZONES],
                  form=form or {"timezone": "Asia/Shanghai"}, errors=errors or {}, refused=refused)


@router.get("/stations/new")
async def new_station_form(request: Request, who: Operator) -> Response:
    require(who, TENANT_ADMIN)
    return station_form(request, who)


@router.post("/stations")
async def create_station(request: Request, who: Operator) -> Response:
    form = posted(request)
    try:
        body = validated(StationRequest, form, STATION_FIELDS)
        station_id = await run_in_threadpool(new_station, request, who, body)
    except Invalid as exc:
        return station_form(request, who, 422, form, exc.fields)
    except NotFound:
        raise
    except DomainError as exc:
        return station_form(request, who, 409, form, refused=exc.message)
    return see_other(url(f"/stations/{station_id}"))


def station_page(request: Request, who: Operator, station: str) -> Response:
    current = check_station(request, who, path_id(station, "station"))
    piles = piles_rows(request, who, *station_filter(current.id))
    return render(request, "stations/one.html", who, nav="/stations", station=current, piles=piles,
                  zone=current.timezone)


@router.get("/stations/{station}")
async def station(request: Request, who: Operator, station: str) -> Response:
    return await run_in_threadpool(station_page, request, who, station)


def pile_form(request: Request, who: Operator, station: str, status: int = 200, form: dict[str, str] | None = None,
              errors: dict[str, str] | None = None, refused: str | None = None) -> Response:
    current = check_station(request, who, path_id(station, "station"))
    return render(request, "stations/new_pile.html", who, nav="/stations", status=status, station=current,
                  form=form or {"kind": "DC", "gun_count": "2"}, errors=errors or {}, refused=refused)


@router.get("/stations/{station}/piles/new")
async def new_pile_form(request: Request, who: Operator, station: str) -> Response:
    require(who, TENANT_ADMIN)
    return await run_in_threadpool(pile_form, request, who, station)


@router.post("/stations/{station}/piles")
async def register_pile(request: Request, who: Operator, station: str) -> Response:
    form = posted(request)
    station_id = path_id(station, "station")
    try:
        body = validated(PileRequest, form, PILE_FIELDS)
        await run_in_threadpool(new_pile, request, who, station_id, body)
    except Invalid as exc:
        return await run_in_threadpool(pile_form, request, who, station, 422, form, exc.fields)
    except NotFound:
        raise
    except DomainError as exc:
        return await run_in_threadpool(pile_form, request, who, station, 409, form, None, exc.message)
    return see_other(url(f"/stations/{station_id}"))
