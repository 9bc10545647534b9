"""The operator API's tariffs: the tenant's time-of-use tariffs (a revision is a new version; sessions
keep the version they started with) and which tariff a station, or one pile, charges by.
"""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from adapters.api.shards import ledger_of
from adapters.api import inputs as t
from adapters.api.auth import TENANT_ADMIN, Principal
from adapters.api.operator.deps import (E403_SCOPE, E409_REGISTRATION, E409_TARIFF, ERRORS, PILE, S, T, Caller,
                                        PileNo, body_example, check_pile, check_station, check_tariff, example,
                                        query, require, tenant_of)
from projections.base import jsonable

router = APIRouter(prefix="/operator/v1", responses=t.BAD_BODY)


# ---- request bodies ---------------------------------------------------------------------------------
class TariffAssignment(BaseModel):
    model_config = body_example(tariff_id=T)
    tariff_id: t.Uuid | None


class TierPrices(BaseModel):
    model_config = ConfigDict(extra="forbid")
    electricity: int = Field(ge=0, le=0xFFFFFFFF, description="0.00001 yuan/kWh")
    service: int = Field(ge=0, le=0xFFFFFFFF, description="0.00001 yuan/kWh")


TARIFF_EXAMPLE = {
    "name": "Shanghai TOU 2026",
    "prices": {"sharp": {"electricity": 120000, "service": 80000}, "peak": {"electricity": 100000, "service": 80000},
               "flat": {"electricity": 70000, "service": 60000}, "valley": {"electricity": 35000, "service": 40000}},
    "slots": [3] * 16 + [2] * 4 + [1] * 6 + [0] * 4 + [2] * 6 + [1] * 8 + [2] * 2 + [3] * 2,
}


class TariffRequest(BaseModel):
    model_config = body_example(**TARIFF_EXAMPLE)
    name: t.Name
    prices: dict[Literal["sharp", "peak", "flat", "valley"], TierPrices]
    slots: list[int | Literal["sharp", "peak", "flat", "valley"]] = Field(min_length=48, max_length=48)


class TariffRevision(BaseModel):
    model_config = body_example(prices=TARIFF_EXAMPLE["prices"], slots=TARIFF_EXAMPLE["slots"])
    prices: dict[Literal["sharp", "peak", "flat", "valley"], TierPrices]
    slots: list[int | Literal["sharp", "peak", "flat", "valley"]] = Field(min_length=48, max_length=48)


def _prices(body: TariffRequest | TariffRevision) -> dict[str, dict[str, int]]:
    return {tier: p.model_dump() for tier, p in body.prices.items()}


# ---- which tariff a station or a pile charges by -----------------------------------------------------
def assign(request: Request, who: Principal, body: TariffAssignment, **target: Any) -> JSONResponse:
    """Assign ``body``'s tariff (one of the caller's, or none) to the station or the pile ``target`` names."""
    if body.tariff_id is not None:
        check_tariff(request, who, body.tariff_id)
    ledger_of(request).assign_tariff(body.tariff_id, who.subject, **target)
    return JSONResponse(jsonable({**target, "tariff_id": body.tariff_id}))


@router.put("/stations/{station_id}/tariff", tags=["tariffs"], summary="Assign a tariff to a station",
            responses=example({"station_id": S, "tariff_id": T}, 200, *ERRORS, 409, e409=E409_REGISTRATION))
def assign_station_tariff(request: Request, who: Caller, station_id: t.Uuid, body: TariffAssignment) -> JSONResponse:
    return station_tariff(request, who, station_id, body)


def station_tariff(request: Request, who: Principal, station_id: UUID, body: TariffAssignment) -> JSONResponse:
    """A tenant admin assigns a tariff to a station in scope: the API's endpoint and the console's form."""
    require(who, TENANT_ADMIN)
    check_station(request, who, station_id)
    return assign(request, who, body, station_id=station_id)


@router.put("/piles/{pile_no}/tariff", tags=["tariffs"], summary="Assign a tariff to one pile (overrides its station's)",
            responses=example({"pile_no": PILE, "tariff_id": T}, 200, *ERRORS, 409, e409=E409_REGISTRATION))
def assign_pile_tariff(request: Request, who: Caller, pile_no: PileNo, body: TariffAssignment) -> JSONResponse:
    require(who, TENANT_ADMIN)
    check_pile(request, who, pile_no)
    return assign(request, who, body, pile_no=pile_no)


# ---- tariffs ---------------------------------------------------------------------------------------
TARIFF_VIEW = {"tariff_id": T, "tenant_id": T, "name": TARIFF_EXAMPLE["name"], "version": 2,
               "schedule": {"prices": TARIFF_EXAMPLE["prices"], "slots": TARIFF_EXAMPLE["slots"]}}


@router.get("/tariffs", tags=["tariffs"], summary="Tariffs of the tenant",
            responses=example({"items": [TARIFF_VIEW]}, 200, 401, 403, e403=E403_SCOPE))
def list_tariffs(request: Request, who: Caller) -> JSONResponse:
    return JSONResponse({"items": jsonable(tariffs_rows(request, who))})


def tariffs_rows(request: Request, who: Principal) -> list[dict[str, Any]]:
    """The tariffs of ``who``'s tenant (every tenant's for a platform admin), from the catalogue view."""
    where, params = ("true", {}) if who.tenant_id is None else ("tenant_id = %(t)s", {"t": who.tenant_id})
    return query(request, f"SELECT * FROM catalogue_tariffs WHERE {where} ORDER BY name, tariff_id", params)  # noqa: S608


@router.post("/tariffs", tags=["tariffs"], status_code=201, summary="Create a tariff (version 1)",
             responses=example({"tariff_id": T, "version": 1}, 201, *ERRORS, 409, e409=E409_TARIFF))
def create_tariff(request: Request, who: Caller, body: TariffRequest) -> JSONResponse:
    return JSONResponse({"tariff_id": str(new_tariff(request, who, body)), "version": 1}, status_code=201)


def new_tariff(request: Request, who: Principal, body: TariffRequest) -> UUID:
    """Create a tariff (tenant admins): the command the API's endpoint and the console's editor run."""
    require(who, TENANT_ADMIN)
    return ledger_of(request).create_tariff(tenant_of(who), body.name, _prices(body),  # type: ignore[no-any-return]
                                                  body.slots, who.subject)


@router.get("/tariffs/{tariff_id}", tags=["tariffs"], summary="One tariff (current version, from the ledger)",
            responses=example(TARIFF_VIEW, 200, *ERRORS, e403=E403_SCOPE))
def get_tariff(request: Request, who: Caller, tariff_id: t.Uuid) -> JSONResponse:
    tariff = check_tariff(request, who, tariff_id)
    return JSONResponse(jsonable({"tariff_id": tariff.id, "tenant_id": tariff.tenant_id, "name": tariff.name,
                                  "version": tariff.tariff_version, "schedule": tariff.schedule_dict}))


@router.put("/tariffs/{tariff_id}", tags=["tariffs"], summary="Revise a tariff (a new version; sessions keep theirs)",
            responses=example({"tariff_id": T, "version": 2}, 200, *ERRORS, 409, e409=E409_TARIFF))
def revise_tariff(request: Request, who: Caller, tariff_id: t.Uuid, body: TariffRevision) -> JSONResponse:
    return JSONResponse({"tariff_id": str(tariff_id), "version": tariff_revision(request, who, tariff_id, body)})


def tariff_revision(request: Request, who: Principal, tariff_id: UUID, body: TariffRevision) -> int:
    """Revise a tariff in scope (tenant admins): a new version; the API's endpoint and the console's editor."""
    require(who, TENANT_ADMIN)
    check_tariff(request, who, tariff_id)
    return ledger_of(request).revise_tariff(tariff_id, _prices(body), body.slots,  # type: ignore[no-any-return]
                                                  who.subject)


