"""The operator API's registry: tenants, stations, piles and their guns (with live status).

Reads of lists come from the catalogue and live-status views; one station is read from the ledger
(current); registering and changing are commands on the ledger (adapters/api/operator/deps.py
says who may do what).
"""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from adapters.api import inputs as t
from adapters.api.auth import PLATFORM_ADMIN, TENANT_ADMIN, Principal
from adapters.api.inputs import error
from adapters.api.shards import ledger_of, shards
from adapters.api.operator.deps import (E403_SCOPE, E409_BUSY, E409_EXISTS, E409_REGISTRATION, ERRORS, PILE, TRADE,
                                        S, T, Caller, PileNo, Reason, StationFilter, body_example, check_pile,
                                        check_station, example, query, require, scope_where, tenant_of)
from domain.errors import NotFound
from domain.registry import Station
from projections.base import jsonable

router = APIRouter(prefix="/operator/v1", responses=t.BAD_BODY)


# ---- request bodies ---------------------------------------------------------------------------------
class TenantRequest(BaseModel):
    model_config = body_example(name="Demo Charging Co.")
    name: t.Name
    shard: t.identifier(r"^[a-z][a-z0-9_-]{0,31}$", 32) | None = Field(  # type: ignore[valid-type]
        default=None, description="the shard to place the tenant on (docs/shards.md); default: the least loaded")


class StationRequest(BaseModel):
    model_config = body_example(name="Zhangjiang Hub", address="88 Keyuan Rd, Pudong, Shanghai", latitude=31.2036,
                                longitude=121.5907, timezone="Asia/Shanghai")
    name: t.Name
    address: t.Address = ""
    latitude: float = Field(ge=-90, le=90, allow_inf_nan=False)
    longitude: float = Field(ge=-180, le=180, allow_inf_nan=False)
    timezone: t.TimeZone = "Asia/Shanghai"


class StationChange(BaseModel):
    model_config = body_example(name="Zhangjiang Hub North", address="90 Keyuan Rd")
    name: t.Name
    address: t.Address = ""


class PileRequest(BaseModel):
    model_config = body_example(pile_no=PILE, kind="DC", gun_count=2)
    pile_no: t.PileNo
    kind: Literal["DC", "AC"]
    gun_count: int = Field(ge=1, le=99)



# ---- tenants and stations ---------------------------------------------------------------------------
@router.post("/tenants", tags=["registry"], status_code=201, summary="Create a tenant (operator)",
             responses=example({"tenant_id": T, "shard": "main"}, 201, *ERRORS, 409,
                               e409=error("unknown_shard", "no shard 's9'; the shards are s1, s2", {"shard": "s9"})))
def create_tenant(request: Request, who: Caller, body: TenantRequest) -> JSONResponse:
    require(who, PLATFORM_ADMIN)
    tenant_id, shard = shards(request).create_tenant(body.name, who.subject, body.shard)
    return JSONResponse({"tenant_id": str(tenant_id), "shard": shard}, status_code=201)


@router.get("/tenants", tags=["registry"], summary="Tenants in scope",
            responses=example({"items": [{"tenant_id": T, "name": "Demo Charging Co.",
                                          "created_at": "2026-11-22T01:00:00+00:00"}]}, 200, 401, 403, e403=E403_SCOPE))
def list_tenants(request: Request, who: Caller) -> JSONResponse:
    where, params = ("true", {}) if who.tenant_id is None else ("tenant_id = %(t)s", {"t": who.tenant_id})
    rows = query(request, f"SELECT * FROM catalogue_tenants WHERE {where} ORDER BY name", params,  # noqa: S608
                 order=lambda r: (r["name"], str(r["tenant_id"])))  # every shard's, for a platform admin
    return JSONResponse({"items": jsonable(rows)})


STATION_EXAMPLE = {"station_id": S, "tenant_id": T, "name": "Zhangjiang Hub", "address": "88 Keyuan Rd",
                   "latitude": 31.2036, "longitude": 121.5907, "timezone": "Asia/Shanghai", "tariff_id": T}


@router.get("/stations", tags=["registry"], summary="Stations in scope",
            responses=example({"items": [STATION_EXAMPLE]}, 200, 401, 403, e403=E403_SCOPE))
def list_stations(request: Request, who: Caller) -> JSONResponse:
    return JSONResponse({"items": jsonable(stations_rows(request, who))})


def stations_rows(request: Request, who: Principal) -> list[dict[str, Any]]:
    """The stations in ``who``'s scope, from the catalogue view (the API's list and the console's)."""
    where, params = scope_where(who)
    return query(request, f"SELECT * FROM catalogue_stations WHERE {where} ORDER BY name, station_id",  # noqa: S608
                 params, order=lambda r: (r["name"], str(r["station_id"])))


@router.post("/stations", tags=["registry"], status_code=201, summary="Create a station",
             responses=example({"station_id": S}, 201, *ERRORS, 409, e409=E409_REGISTRATION))
def create_station(request: Request, who: Caller, body: StationRequest) -> JSONResponse:
    return JSONResponse({"station_id": str(new_station(request, who, body))}, status_code=201)


def new_station(request: Request, who: Principal, body: StationRequest) -> UUID:
    """Create a station (tenant admins): the command the API's endpoint and the console's form run."""
    require(who, TENANT_ADMIN)
    return ledger_of(request).create_station(tenant_of(who), body.name, body.address,  # type: ignore[no-any-return]
                                                   body.latitude, body.longitude, who.subject, body.timezone)


def station_json(station: Station) -> dict[str, Any]:
    return jsonable({"station_id": station.id, "tenant_id": station.tenant_id, "name": station.name,
                     "address": station.address, "latitude": station.latitude, "longitude": station.longitude,
                     "timezone": station.timezone, "tariff_id": station.tariff_id})


@router.get("/stations/{station_id}", tags=["registry"], summary="One station (read from the ledger: current)",
            responses=example(STATION_EXAMPLE, 200, *ERRORS, e403=E403_SCOPE))
def get_station(request: Request, who: Caller, station_id: t.Uuid) -> JSONResponse:
    return JSONResponse(station_json(check_station(request, who, station_id)))


@router.patch("/stations/{station_id}", tags=["registry"], summary="Change a station's name and address",
              responses=example(STATION_EXAMPLE, 200, *ERRORS, 409, e409=E409_REGISTRATION))
def change_station(request: Request, who: Caller, station_id: t.Uuid, body: StationChange) -> JSONResponse:
    require(who, TENANT_ADMIN)
    check_station(request, who, station_id)
    ledger_of(request).change_station(station_id, body.name, body.address, who.subject, tenant_id=who.tenant_id)
    return JSONResponse(station_json(ledger_of(request).registry.station(station_id)))


# ---- piles and guns ---------------------------------------------------------------------------------
PILE_EXAMPLE = {"pile_no": PILE, "station_id": S, "kind": "DC", "gun_count": 2, "enabled": True, "online": True,
                "program_version": "V2.1.3", "guns": [{"gun_no": 1, "status": "charging", "plugged": True,
                                                       "faults": [], "trade_no": TRADE, "reading": {"energy": 12000}}]}


def piles_json(request: Request, who: Caller, extra: str = "", params: dict[str, Any] | None = None) -> list[Any]:
    return jsonable(piles_rows(request, who, extra, params))  # type: ignore[no-any-return]


def station_filter(station_id: Any) -> tuple[str, dict[str, Any]]:
    return ("AND p.station_id = %(station)s", {"station": station_id}) if station_id else ("", {})


def pile_filter(pile_no: str) -> tuple[str, dict[str, Any]]:
    return "AND p.pile_no = %(pile)s", {"pile": pile_no}


def piles_rows(request: Request, who: Principal, extra: str = "",
               params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The piles in ``who``'s scope with their guns (``extra``: ``station_filter`` / ``pile_filter``), from
    the live-status view: what the API's pile endpoints and the console's pages and stream show."""
    where, scope = scope_where(who, "p")
    piles = query(request, f"SELECT p.* FROM live_piles p WHERE {where} {extra} ORDER BY p.pile_no",  # noqa: S608
                  {**scope, **(params or {})})
    if not piles:
        return []
    guns = query(request, "SELECT pile_no, gun_no, status, plugged, faults, status_at, trade_no, session_state, "
                          "session_since, reading FROM live_guns WHERE pile_no = ANY(%(p)s) ORDER BY pile_no, gun_no",
                 {"p": [p["pile_no"] for p in piles]})
    by_pile: dict[str, list[Any]] = {}
    for g in guns:
        by_pile.setdefault(g.pop("pile_no"), []).append(g)
    return [{**p, "guns": by_pile.get(p["pile_no"], [])} for p in piles]


@router.get("/piles", tags=["piles"], summary="Piles and guns in scope, with live status",
            responses=example({"items": [PILE_EXAMPLE]}, 200, 401, 403, 422, e403=E403_SCOPE))
def list_piles(request: Request, who: Caller, station_id: StationFilter = None) -> JSONResponse:
    return JSONResponse({"items": piles_json(request, who, *station_filter(station_id))})


@router.post("/stations/{station_id}/piles", tags=["piles"], status_code=201, summary="Register a pile",
             responses=example({"pile_no": PILE, "pile_id": T}, 201, *ERRORS, 409, e409=E409_EXISTS))
def register_pile(request: Request, who: Caller, station_id: t.Uuid, body: PileRequest) -> JSONResponse:
    pile_id = new_pile(request, who, station_id, body)
    return JSONResponse({"pile_no": body.pile_no, "pile_id": str(pile_id)}, status_code=201)


def new_pile(request: Request, who: Principal, station_id: UUID, body: PileRequest) -> UUID:
    """Register a pile at a station in scope (tenant admins): the API's endpoint and the console's form."""
    require(who, TENANT_ADMIN)
    station = check_station(request, who, station_id)
    return shards(request).register_pile(station.tenant_id, station_id, body.pile_no, body.kind,  # the directory too
                                         body.gun_count, who.subject)


@router.get("/piles/{pile_no}", tags=["piles"], summary="One pile with its guns' live status",
            responses=example(PILE_EXAMPLE, 200, *ERRORS, e403=E403_SCOPE))
def get_pile(request: Request, who: Caller, pile_no: PileNo) -> JSONResponse:
    check_pile(request, who, pile_no)
    rows = piles_json(request, who, *pile_filter(pile_no))
    if not rows:  # registered a moment ago, not yet projected
        raise NotFound(f"pile {pile_no} is not in the live view yet; retry shortly", pile_no=pile_no)
    return JSONResponse(rows[0])


@router.get("/piles/{pile_no}/guns", tags=["piles"], summary="A pile's guns",
            responses=example({"items": PILE_EXAMPLE["guns"]}, 200, *ERRORS, e403=E403_SCOPE))
def list_guns(request: Request, who: Caller, pile_no: PileNo) -> JSONResponse:
    check_pile(request, who, pile_no)
    rows = piles_json(request, who, *pile_filter(pile_no))
    return JSONResponse({"items": rows[0]["guns"] if rows else []})


@router.post("/piles/{pile_no}/enable", tags=["piles"], summary="Enable a pile",
             responses=example({"pile_no": PILE, "enabled": True}, 200, *ERRORS, 409, e409=E409_BUSY))
def enable_pile(request: Request, who: Caller, pile_no: PileNo) -> JSONResponse:
    pile_enabled(request, who, pile_no, True)
    return JSONResponse({"pile_no": pile_no, "enabled": True})


@router.post("/piles/{pile_no}/disable", tags=["piles"], summary="Disable a pile (no new sessions)",
             responses=example({"pile_no": PILE, "enabled": False}, 200, *ERRORS, 409, e409=E409_BUSY))
def disable_pile(request: Request, who: Caller, pile_no: PileNo, body: Reason) -> JSONResponse:
    pile_enabled(request, who, pile_no, False, body.reason)
    return JSONResponse({"pile_no": pile_no, "enabled": False})


def pile_enabled(request: Request, who: Principal, pile_no: str, enabled: bool, reason: str = "") -> None:
    """Enable or disable a pile in scope (tenant admins): the API's endpoints and the console's pile page."""
    require(who, TENANT_ADMIN)
    check_pile(request, who, pile_no)
    ledger_of(request).set_pile_enabled(pile_no, enabled, who.subject, reason)
