"""Tariffs (计费规则): the list, one tariff, the 48-slot strip editor (create, revise), assigning a
tariff to a station and pushing it to a pile.

Reads: the list is the API's catalogue query (``tariffs_rows``); one tariff is read from the
ledger through the API's scope check (``check_tariff``: another tenant's is 404), its stations
and their piles through ``stations_rows`` / ``piles_rows``. Writes are the API's commands:
``new_tariff``, ``tariff_revision``, ``station_tariff`` and ``command_pile(..., push_tariff)``.
The editor's form is read by ``tariff_form`` into the API's request models. Agents read tariffs
(as the API lets them) and push them to their piles; creating, revising and assigning are a tenant
admin's.
"""

from __future__ import annotations

from collections import Counter

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool

from adapters.api.shards import ledger_of
from adapters.api import inputs as t
from adapters.api.auth import TENANT_ADMIN, Principal
from adapters.api.operator.commands import command_pile
from adapters.api.operator.deps import check_station, check_tariff, require
from adapters.api.operator.registry import piles_rows, station_filter, stations_rows
from adapters.api.operator.tariffs import (TariffAssignment, TariffRequest, TariffRevision, new_tariff,
                                           station_tariff, tariff_revision, tariffs_rows)
from adapters.web.forms import Invalid, path_id
from adapters.web.pages import tariff_form
from adapters.web.render import render, see_other, url
from adapters.web.session import Operator, posted
from domain.errors import DomainError, NotFound
from domain.tariff import TIERS

router = APIRouter()
NAV = "/tariffs"
PILE_NO = TypeAdapter(t.PileNo)


def tier_rows(schedule: dict[str, Any]) -> list[dict[str, Any]]:
    """Each tier's prices as yuan/kWh text and its hours in the day."""
    slots = schedule["slots"]
    return [{"tier": tier, "electricity": tariff_form.short_price(schedule["prices"][tier]["electricity"]),
             "service": tariff_form.short_price(schedule["prices"][tier]["service"]),
             "hours": slots.count(i) / 2} for i, tier in enumerate(TIERS)]


def tariff_list(request: Request, who: Principal) -> Response:
    tariffs = tariffs_rows(request, who)
    stations = stations_rows(request, who)
    using = Counter(s["tariff_id"] for s in stations)
    rows = [{**t, "slots": tariff_form.slots_of(t["schedule"]), "tiers": tier_rows(t["schedule"]),
             "stations": using.get(t["tariff_id"], 0)} for t in tariffs]
    return render(request, "tariffs/list.html", who, nav=NAV, tariffs=rows)


@router.get("/tariffs")
async def tariffs(request: Request, who: Operator) -> Response:
    return await run_in_threadpool(tariff_list, request, who)


# ---- the editor ------------------------------------------------------------------------------------------
def editor(request: Request, who: Principal, form: dict[str, str], *, tariff: Any = None, status: int = 200,
           errors: dict[str, str] | None = None, refused: str | None = None) -> Response:
    return render(request, "tariffs/form.html", who, nav=NAV, status=status, form=form, errors=errors or {},
                  refused=refused, tariff=tariff, cells=tariff_form.strip(form), tiers=TIERS,
                  kinds=tariff_form.KINDS)


@router.get("/tariffs/new")
async def new_tariff_form(request: Request, who: Operator) -> Response:
    require(who, TENANT_ADMIN)
    return editor(request, who, tariff_form.form_of(None))


def refused_at_field(error: DomainError) -> tuple[dict[str, str], str | None]:
    """A domain refusal shown at the field it names, else above the form."""
    field = tariff_form.field_of_refusal(error)
    return ({field: error.message}, None) if field else ({}, error.message)


@router.post("/tariffs")
async def create_tariff(request: Request, who: Operator) -> Response:
    require(who, TENANT_ADMIN)
    form = posted(request)
    try:
        body = tariff_form.read(TariffRequest, form, with_name=True)
        tariff_id = await run_in_threadpool(new_tariff, request, who, body)
    except Invalid as exc:
        return editor(request, who, form, status=422, errors=exc.fields)
    except NotFound:
        raise
    except DomainError as exc:
        errors, refused = refused_at_field(exc)
        return editor(request, who, form, status=422 if errors else 409, errors=errors, refused=refused)
    return see_other(url(f"/tariffs/{tariff_id}", saved=1))


def current(request: Request, who: Principal, tariff: str) -> Any:
    return check_tariff(request, who, path_id(tariff, "tariff"))


@router.get("/tariffs/{tariff}/revise")
async def revise_form(request: Request, who: Operator, tariff: str) -> Response:
    require(who, TENANT_ADMIN)
    found = await run_in_threadpool(current, request, who, tariff)
    return editor(request, who, tariff_form.form_of(found.schedule_dict, found.name), tariff=found)


@router.post("/tariffs/{tariff}")
async def revise(request: Request, who: Operator, tariff: str) -> Response:
    require(who, TENANT_ADMIN)
    found = await run_in_threadpool(current, request, who, tariff)
    form = {**posted(request), "name": found.name}
    try:
        body = tariff_form.read(TariffRevision, form, with_name=False)
        await run_in_threadpool(tariff_revision, request, who, found.id, body)
    except Invalid as exc:
        return editor(request, who, form, tariff=found, status=422, errors=exc.fields)
    except NotFound:
        raise
    except DomainError as exc:
        errors, refused = refused_at_field(exc)
        return editor(request, who, form, tariff=found, status=422 if errors else 409, errors=errors,
                      refused=refused)
    return see_other(url(f"/tariffs/{found.id}", saved=1))


# ---- one tariff: where it is used, assigning it, pushing it ----------------------------------------------
def tariff_page(request: Request, who: Principal, tariff: str, status: int = 200, refused: str | None = None
                ) -> Response:
    found = current(request, who, tariff)
    stations = stations_rows(request, who)
    using = [s for s in stations if s["tariff_id"] == found.id]
    piles = [p for s in using for p in piles_rows(request, who, *station_filter(s["station_id"]))]
    query = request.query_params
    return render(request, "tariffs/one.html", who, nav=NAV, status=status, tariff=found,
                  slots=tariff_form.slots_of(found.schedule_dict), tiers=tier_rows(found.schedule_dict),
                  using=using, piles=piles, names={s["station_id"]: s["name"] for s in stations},
                  others=[s for s in stations if s["tariff_id"] != found.id and s["tenant_id"] == found.tenant_id],
                  refused=refused, saved=query.get("saved") == "1",
                  assigned=check_station(request, who, path_id(query["assigned"], "station")).name
                  if query.get("assigned") else None,
                  pushed=query.get("pushed"))


@router.get("/tariffs/{tariff}")
async def tariff(request: Request, who: Operator, tariff: str) -> Response:
    return await run_in_threadpool(tariff_page, request, who, tariff)


def assign(request: Request, who: Principal, tariff: str) -> Response:
    found = current(request, who, tariff)
    station_id = path_id(posted(request).get("station", ""), "station")
    try:
        station_tariff(request, who, station_id, TariffAssignment(tariff_id=found.id))
    except NotFound:
        raise
    except DomainError as exc:
        return tariff_page(request, who, tariff, 409, exc.message)
    return see_other(url(f"/tariffs/{found.id}", assigned=str(station_id)))


@router.post("/tariffs/{tariff}/assign")
async def assign_to_station(request: Request, who: Operator, tariff: str) -> Response:
    require(who, TENANT_ADMIN)
    return await run_in_threadpool(assign, request, who, tariff)


def push(request: Request, who: Principal, tariff: str) -> Response:
    found = current(request, who, tariff)
    try:
        pile_no = PILE_NO.validate_python(posted(request).get("pile_no", ""))
    except ValidationError:
        raise NotFound("no such pile") from None
    try:
        command_pile(request, who, pile_no, ledger_of(request).push_tariff)
    except NotFound:
        raise
    except DomainError as exc:
        return tariff_page(request, who, tariff, 409, exc.message)
    return see_other(url(f"/tariffs/{found.id}", pushed=pile_no))


@router.post("/tariffs/{tariff}/push")
async def push_to_pile(request: Request, who: Operator, tariff: str) -> Response:
    return await run_in_threadpool(push, request, who, tariff)

