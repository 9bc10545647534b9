"""The operator API: what operators (运营商) and their agents (代理商) run their business with.

Reads come from projection tables (never a replay per request); commands go to the ledger, one
command on one aggregate each, with the caller as the event's author. Who may do what:

| role            | scope (the token's user, now) | may                                                       |
|-----------------|-------------------------------|-----------------------------------------------------------|
| platform_admin  | every tenant                  | create tenants and users; read every view                 |
| tenant_admin    | one tenant                    | everything in the tenant: stations, piles, tariffs, users |
|                 |                               | (agents), remote commands, refunds, acknowledge alarms    |
| agent           | some stations of one tenant   | read those stations; remote commands on their piles       |

The scope is the token's user's as it is at each request (``caller``; adapters/api/operator/accounts.py
holds sign-in and the users endpoints).

Anything outside the caller's scope is 404, exactly as if it did not exist, so ids cannot be
probed; a role that may not do something at all gets 403 ``forbidden_role``.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict, Field

from adapters.api import inputs as t
from adapters.api.inputs import error, responses
from adapters.api.auth import AGENT, PLATFORM_ADMIN, TENANT_ADMIN, AuthError, Principal
from adapters.api.app import ApiError
from domain.errors import NotFound
from domain.clock import utcnow as now
from domain.money import energy_to_kwh_str, fen_to_yuan_str, ykc_amount_to_yuan_str
from domain.registry import Pile, Station
from domain.wallet import PROVIDERS, Wallet
from projections.base import jsonable
from projections.dashboard import dashboard
from projections.orders import find_orders, orders_query

router = APIRouter(prefix="/operator/v1", responses=t.BAD_BODY)
bearer = HTTPBearer(auto_error=False, description="a token from POST /operator/v1/auth/token")

T = "3fa85f64-5717-4562-b3fc-2c963f66afa6"  # an example id
S = "7a0da3cc-0fac-42dd-b379-775fa5894881"
TRADE = "32010600019236012611221000003556"
PILE = "32010600019236"


def example(body: Any, status: int = 200, *errors: int, **examples: dict[str, Any]) -> dict[int | str, Any]:
    """OpenAPI ``responses``: the success example, and the real body of each error status (api_types)."""
    return responses(body, status, *errors, **examples)


ERRORS = (401, 403, 404, 422)
E403_SCOPE = error("wrong_token_role", "a driver token is not accepted here")  # reads: any operator role may
# the 409 a command really answers (a domain rule's code), per kind of command
E409_EXISTS = error("already_exists", f"pile {PILE} is already registered", {"pile_no": PILE})
E409_REGISTRATION = error("invalid_registration", "coordinates out of range: 91.0, 0.0")
E409_BUSY = error("concurrency_exhausted", "the pile is being changed by others right now; try again")
E409_TARIFF = error("invalid_tariff", "slot 3 (01:30-02:00) is not assigned a tier: 9")
E409_UNAVAILABLE = error("pile_unavailable", f"pile {PILE}: the pile is offline",
                         {"pile_no": PILE, "gun_no": 1, "reason": "the pile is offline"})
E409_TRANSITION = error("invalid_state_transition", "session is finished; cannot request_stop")


# ---- who is calling -------------------------------------------------------------------------------
async def caller(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Principal:
    """The token's user as they are now (adapters/api/operator/accounts.py): one indexed query per request."""
    if credentials is None:
        raise AuthError("missing_token", "send Authorization: Bearer <token>")
    return await request.app.state.accounts.principal(credentials.credentials)  # type: ignore[no-any-return]


Caller = Annotated[Principal, Depends(caller)]
PileNo = Annotated[t.PileNo, Path(description="the pile's 14-digit number")]
TradeNo = Annotated[t.TradeNo, Path(description="the order's trade serial")]
AlarmId = Annotated[t.AlarmId, Path()]


def require(principal: Principal, *roles: str) -> None:
    if principal.role not in roles:
        raise ApiError(403, "forbidden_role", f"a {principal.role} may not do this")


def tenant_of(principal: Principal) -> UUID:
    if principal.tenant_id is None:
        raise ApiError(403, "forbidden_role", "this acts inside one tenant: use a tenant admin's token")
    return principal.tenant_id


def sees(principal: Principal, tenant_id: UUID, station_id: UUID | None) -> bool:
    if principal.tenant_id is not None and principal.tenant_id != tenant_id:
        return False
    return principal.stations is None or station_id in principal.stations


def check_station(request: Request, principal: Principal, station_id: UUID) -> Station:
    station = request.app.state.ledger.registry.station(station_id)
    if not sees(principal, station.tenant_id, station.id):
        raise NotFound(f"no station {station_id}", id=str(station_id))
    return station


def check_pile(request: Request, principal: Principal, pile_no: str) -> Pile:
    pile = request.app.state.ledger.registry.pile(pile_no)
    if not sees(principal, pile.tenant_id, pile.station_id):
        raise NotFound(f"no pile {pile_no}", pile_no=pile_no)
    return pile


def check_session(request: Request, principal: Principal, trade_no: str) -> Any:
    try:
        session = request.app.state.ledger.session(trade_no)
    except NotFound:
        raise NotFound(f"no order {trade_no}", trade_no=trade_no) from None
    if not sees(principal, session.tenant_id, session.station_id):
        raise NotFound(f"no order {trade_no}", trade_no=trade_no)
    return session


def check_tariff(request: Request, principal: Principal, tariff_id: UUID) -> Any:
    tariff = request.app.state.ledger.tariffs.tariff(tariff_id)
    if principal.tenant_id is not None and tariff.tenant_id != principal.tenant_id:
        raise NotFound(f"no tariff {tariff_id}", id=str(tariff_id))
    return tariff


def scope_where(principal: Principal, alias: str = "") -> tuple[str, dict[str, Any]]:
    """SQL restricting a view's rows to the caller's tenant and stations."""
    a = f"{alias}." if alias else ""
    where, params = ["true"], {}
    if principal.tenant_id is not None:
        where.append(f"{a}tenant_id = %(scope_tenant)s")
        params["scope_tenant"] = principal.tenant_id
    if principal.stations is not None:
        where.append(f"{a}station_id = ANY(%(scope_stations)s)")
        params["scope_stations"] = list(principal.stations)
    return " AND ".join(where), params


def query(request: Request, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    with request.app.state.pool.connection() as conn:
        return conn.cursor(row_factory=dict_row).execute(sql, params).fetchall()


# ---- request bodies ---------------------------------------------------------------------------------
def body_example(**values: Any) -> ConfigDict:
    return ConfigDict(extra="forbid", json_schema_extra={"examples": [values]})


class TenantRequest(BaseModel):
    model_config = body_example(name="Demo Charging Co.")
    name: t.Name


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


class Reason(BaseModel):
    model_config = body_example(reason="maintenance")
    reason: t.Reason = ""


class RequiredReason(BaseModel):
    model_config = body_example(reason="pile lost power; session stuck in stopping")
    reason: t.RequiredReason


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


class StartBody(BaseModel):
    model_config = body_example(gun_no=1)
    gun_no: int = Field(ge=1, le=99)


class AcknowledgeRequest(BaseModel):
    model_config = body_example(note="technician dispatched")
    note: t.Note = ""


class RefundRequest(BaseModel):
    model_config = body_example(driver_id="driver-li", refund_id="rf-20261122-0001", amount_fen=2500,
                                provider="wechat")
    driver_id: t.DriverId
    refund_id: t.RefundId = Field(description="your id for this refund: asking again with it changes nothing")
    amount_fen: t.Fen
    provider: Literal[PROVIDERS] | None = Field(  # type: ignore[valid-type]
        None, description="refund only payments made through this provider (default: any)")


def _prices(body: TariffRequest | TariffRevision) -> dict[str, dict[str, int]]:
    return {tier: p.model_dump() for tier, p in body.prices.items()}


# ---- tenants and stations ---------------------------------------------------------------------------
@router.post("/tenants", tags=["registry"], status_code=201, summary="Create a tenant (operator)",
             responses=example({"tenant_id": T}, 201, *ERRORS))
def create_tenant(request: Request, who: Caller, body: TenantRequest) -> JSONResponse:
    require(who, PLATFORM_ADMIN)
    tenant_id = request.app.state.ledger.create_tenant(body.name, who.subject)
    return JSONResponse({"tenant_id": str(tenant_id)}, status_code=201)


@router.get("/tenants", tags=["registry"], summary="Tenants in scope",
            responses=example({"items": [{"tenant_id": T, "name": "Demo Charging Co.",
                                          "created_at": "2026-11-22T01:00:00+00:00"}]}, 200, 401, 403, e403=E403_SCOPE))
def list_tenants(request: Request, who: Caller) -> JSONResponse:
    where, params = ("true", {}) if who.tenant_id is None else ("tenant_id = %(t)s", {"t": who.tenant_id})
    rows = query(request, f"SELECT * FROM catalogue_tenants WHERE {where} ORDER BY name", params)  # noqa: S608
    return JSONResponse({"items": jsonable(rows)})


STATION_EXAMPLE = {"station_id": S, "tenant_id": T, "name": "Zhangjiang Hub", "address": "88 Keyuan Rd",
                   "latitude": 31.2036, "longitude": 121.5907, "timezone": "Asia/Shanghai", "tariff_id": T}


@router.get("/stations", tags=["registry"], summary="Stations in scope",
            responses=example({"items": [STATION_EXAMPLE]}, 200, 401, 403, e403=E403_SCOPE))
def list_stations(request: Request, who: Caller) -> JSONResponse:
    where, params = scope_where(who)
    rows = query(request, f"SELECT * FROM catalogue_stations WHERE {where} ORDER BY name, station_id", params)  # noqa: S608
    return JSONResponse({"items": jsonable(rows)})


@router.post("/stations", tags=["registry"], status_code=201, summary="Create a station",
             responses=example({"station_id": S}, 201, *ERRORS, 409, e409=E409_REGISTRATION))
def create_station(request: Request, who: Caller, body: StationRequest) -> JSONResponse:
    require(who, TENANT_ADMIN)
    station_id = request.app.state.ledger.create_station(tenant_of(who), body.name, body.address, body.latitude,
                                                         body.longitude, who.subject, body.timezone)
    return JSONResponse({"station_id": str(station_id)}, status_code=201)


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
    request.app.state.ledger.change_station(station_id, body.name, body.address, who.subject, tenant_id=who.tenant_id)
    return JSONResponse(station_json(request.app.state.ledger.registry.station(station_id)))


@router.put("/stations/{station_id}/tariff", tags=["tariffs"], summary="Assign a tariff to a station",
            responses=example({"station_id": S, "tariff_id": T}, 200, *ERRORS, 409, e409=E409_REGISTRATION))
def assign_station_tariff(request: Request, who: Caller, station_id: t.Uuid, body: TariffAssignment) -> JSONResponse:
    require(who, TENANT_ADMIN)
    check_station(request, who, station_id)
    if body.tariff_id is not None:
        check_tariff(request, who, body.tariff_id)
    request.app.state.ledger.assign_tariff(body.tariff_id, who.subject, station_id=station_id)
    return JSONResponse(jsonable({"station_id": station_id, "tariff_id": body.tariff_id}))


# ---- piles and guns ---------------------------------------------------------------------------------
PILE_EXAMPLE = {"pile_no": PILE, "station_id": S, "kind": "DC", "gun_count": 2, "enabled": True, "online": True,
                "program_version": "V2.1.3", "guns": [{"gun_no": 1, "status": "charging", "plugged": True,
                                                       "faults": [], "trade_no": TRADE, "reading": {"energy": 12000}}]}


def piles_json(request: Request, who: Caller, extra: str = "", params: dict[str, Any] | None = None) -> list[Any]:
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
    return jsonable([{**p, "guns": by_pile.get(p["pile_no"], [])} for p in piles])


@router.get("/piles", tags=["piles"], summary="Piles and guns in scope, with live status",
            responses=example({"items": [PILE_EXAMPLE]}, 200, 401, 403, 422, e403=E403_SCOPE))
def list_piles(request: Request, who: Caller, station_id: StationFilter = None) -> JSONResponse:
    extra, params = ("AND p.station_id = %(station)s", {"station": station_id}) if station_id else ("", {})
    return JSONResponse({"items": piles_json(request, who, extra, params)})


@router.post("/stations/{station_id}/piles", tags=["piles"], status_code=201, summary="Register a pile",
             responses=example({"pile_no": PILE, "pile_id": T}, 201, *ERRORS, 409, e409=E409_EXISTS))
def register_pile(request: Request, who: Caller, station_id: t.Uuid, body: PileRequest) -> JSONResponse:
    require(who, TENANT_ADMIN)
    check_station(request, who, station_id)
    pile_id = request.app.state.ledger.register_pile(station_id, body.pile_no, body.kind, body.gun_count, who.subject)
    return JSONResponse({"pile_no": body.pile_no, "pile_id": str(pile_id)}, status_code=201)


@router.get("/piles/{pile_no}", tags=["piles"], summary="One pile with its guns' live status",
            responses=example(PILE_EXAMPLE, 200, *ERRORS, e403=E403_SCOPE))
def get_pile(request: Request, who: Caller, pile_no: PileNo) -> JSONResponse:
    check_pile(request, who, pile_no)
    rows = piles_json(request, who, "AND p.pile_no = %(pile)s", {"pile": pile_no})
    if not rows:  # registered a moment ago, not yet projected
        raise NotFound(f"pile {pile_no} is not in the live view yet; retry shortly", pile_no=pile_no)
    return JSONResponse(rows[0])


@router.get("/piles/{pile_no}/guns", tags=["piles"], summary="A pile's guns",
            responses=example({"items": PILE_EXAMPLE["guns"]}, 200, *ERRORS, e403=E403_SCOPE))
def list_guns(request: Request, who: Caller, pile_no: PileNo) -> JSONResponse:
    check_pile(request, who, pile_no)
    rows = piles_json(request, who, "AND p.pile_no = %(pile)s", {"pile": pile_no})
    return JSONResponse({"items": rows[0]["guns"] if rows else []})


@router.post("/piles/{pile_no}/enable", tags=["piles"], summary="Enable a pile",
             responses=example({"pile_no": PILE, "enabled": True}, 200, *ERRORS, 409, e409=E409_BUSY))
def enable_pile(request: Request, who: Caller, pile_no: PileNo) -> JSONResponse:
    require(who, TENANT_ADMIN)
    check_pile(request, who, pile_no)
    request.app.state.ledger.set_pile_enabled(pile_no, True, who.subject)
    return JSONResponse({"pile_no": pile_no, "enabled": True})


@router.post("/piles/{pile_no}/disable", tags=["piles"], summary="Disable a pile (no new sessions)",
             responses=example({"pile_no": PILE, "enabled": False}, 200, *ERRORS, 409, e409=E409_BUSY))
def disable_pile(request: Request, who: Caller, pile_no: PileNo, body: Reason) -> JSONResponse:
    require(who, TENANT_ADMIN)
    check_pile(request, who, pile_no)
    request.app.state.ledger.set_pile_enabled(pile_no, False, who.subject, body.reason)
    return JSONResponse({"pile_no": pile_no, "enabled": False})


@router.put("/piles/{pile_no}/tariff", tags=["tariffs"], summary="Assign a tariff to one pile (overrides its station's)",
            responses=example({"pile_no": PILE, "tariff_id": T}, 200, *ERRORS, 409, e409=E409_REGISTRATION))
def assign_pile_tariff(request: Request, who: Caller, pile_no: PileNo, body: TariffAssignment) -> JSONResponse:
    require(who, TENANT_ADMIN)
    check_pile(request, who, pile_no)
    if body.tariff_id is not None:
        check_tariff(request, who, body.tariff_id)
    request.app.state.ledger.assign_tariff(body.tariff_id, who.subject, pile_no=pile_no)
    return JSONResponse(jsonable({"pile_no": pile_no, "tariff_id": body.tariff_id}))


# ---- tariffs ---------------------------------------------------------------------------------------
TARIFF_VIEW = {"tariff_id": T, "tenant_id": T, "name": TARIFF_EXAMPLE["name"], "version": 2,
               "schedule": {"prices": TARIFF_EXAMPLE["prices"], "slots": TARIFF_EXAMPLE["slots"]}}


@router.get("/tariffs", tags=["tariffs"], summary="Tariffs of the tenant",
            responses=example({"items": [TARIFF_VIEW]}, 200, 401, 403, e403=E403_SCOPE))
def list_tariffs(request: Request, who: Caller) -> JSONResponse:
    where, params = ("true", {}) if who.tenant_id is None else ("tenant_id = %(t)s", {"t": who.tenant_id})
    rows = query(request, f"SELECT * FROM catalogue_tariffs WHERE {where} ORDER BY name, tariff_id", params)  # noqa: S608
    return JSONResponse({"items": jsonable(rows)})


@router.post("/tariffs", tags=["tariffs"], status_code=201, summary="Create a tariff (version 1)",
             responses=example({"tariff_id": T, "version": 1}, 201, *ERRORS, 409, e409=E409_TARIFF))
def create_tariff(request: Request, who: Caller, body: TariffRequest) -> JSONResponse:
    require(who, TENANT_ADMIN)
    tariff_id = request.app.state.ledger.create_tariff(tenant_of(who), body.name, _prices(body), body.slots,
                                                       who.subject)
    return JSONResponse({"tariff_id": str(tariff_id), "version": 1}, status_code=201)


@router.get("/tariffs/{tariff_id}", tags=["tariffs"], summary="One tariff (current version, from the ledger)",
            responses=example(TARIFF_VIEW, 200, *ERRORS, e403=E403_SCOPE))
def get_tariff(request: Request, who: Caller, tariff_id: t.Uuid) -> JSONResponse:
    tariff = check_tariff(request, who, tariff_id)
    return JSONResponse(jsonable({"tariff_id": tariff.id, "tenant_id": tariff.tenant_id, "name": tariff.name,
                                  "version": tariff.tariff_version, "schedule": tariff.schedule_dict}))


@router.put("/tariffs/{tariff_id}", tags=["tariffs"], summary="Revise a tariff (a new version; sessions keep theirs)",
            responses=example({"tariff_id": T, "version": 2}, 200, *ERRORS, 409, e409=E409_TARIFF))
def revise_tariff(request: Request, who: Caller, tariff_id: t.Uuid, body: TariffRevision) -> JSONResponse:
    require(who, TENANT_ADMIN)
    check_tariff(request, who, tariff_id)
    version = request.app.state.ledger.revise_tariff(tariff_id, _prices(body), body.slots, who.subject)
    return JSONResponse({"tariff_id": str(tariff_id), "version": version})


# ---- orders ----------------------------------------------------------------------------------------
ORDER_EXAMPLE = {"trade_no": TRADE, "seq": 1042, "tenant_id": T, "station_id": S, "pile_no": PILE, "gun_no": 1,
                 "wallet_id": T, "driver_id": "driver-li", "origin": "app", "state": "finished",
                 "ordered_at": "2026-11-22T01:40:00+00:00", "requested_at": "2026-11-22T01:40:03+00:00",
                 "started_at": "2026-11-22T01:40:20+00:00", "stopped_at": "2026-11-22T02:21:00+00:00",
                 "settled_at": "2026-11-22T02:22:00+00:00", "energy": 480000, "energy_sharp": 0,
                 "energy_peak": 240000, "energy_flat": 240000, "energy_valley": 0, "electricity_fen": 4080,
                 "service_fen": 3360, "total_fen": 7440, "tariff_id": T, "tariff_version": 1, "pile_amount": 744000,
                 "pile_difference": 0, "stop_code": 64, "reason": "driver stopped", "readings": 40, "anomalies": 0}
StationFilter = Annotated[t.Uuid | None, Query(description="only this station")]
PileFilter = Annotated[t.PileNo | None, Query(description="only this pile")]
Since = Annotated[t.Instant | None, Query(alias="from", description="ordered at or after")]
Until = Annotated[t.Instant | None, Query(alias="to", description="ordered before")]


def decode_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    try:
        value = int(base64.urlsafe_b64decode(cursor.encode() + b"==").decode())
        if value <= 0:
            raise ValueError
        return value
    except ValueError:
        raise ApiError(422, "invalid_cursor", "the cursor is not one this API returned") from None


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(str(seq).encode()).decode().rstrip("=")


def order_filters(who: Principal, station_id: UUID | None, pile_no: str | None, state: str | None,
                  since: datetime | None, until: datetime | None) -> dict[str, Any]:
    if station_id is not None and who.stations is not None and station_id not in who.stations:
        station_id = UUID(int=0)  # a station outside the agent's scope: nothing, as if it did not exist
    return {"tenant_id": who.tenant_id, "stations": who.stations, "station_id": station_id, "pile_no": pile_no,
            "state": state, "since": since, "until": until}


OrderState = Literal["requested", "starting", "charging", "stopping", "finished", "failed", "abandoned"]


@router.get("/orders", tags=["orders"], summary="Orders, newest first, with a cursor",
            description="Pages are keyed on `seq` (the commit position of the order's first event), so orders "
                        "arriving while you page never shift a row between pages: pass `next_cursor` back as "
                        "`cursor` until it is null.",
            responses=example({"items": [ORDER_EXAMPLE], "next_cursor": "MTA0Mg"}, 200, 401, 403, 422, e403=E403_SCOPE))
async def list_orders(request: Request, who: Caller, station_id: StationFilter = None, pile_no: PileFilter = None,
                      state: OrderState | None = None, since: Since = None, until: Until = None,
                      cursor: Annotated[t.identifier(r"^[A-Za-z0-9_=-]+$", 32) | None,  # type: ignore[valid-type]
                                        Query(description="next_cursor of the previous page")] = None,
                      limit: Annotated[t.Int, Query(ge=1, le=500)] = 50) -> Response:
    filters = order_filters(who, station_id, pile_no, state, since, until)
    sql, params = orders_query(**filters, before_seq=decode_cursor(cursor), limit=limit, as_json=True)
    async with request.app.state.apool.connection() as conn:
        page = await (await conn.cursor(row_factory=dict_row).execute(sql, params)).fetchone()
    # A full page may be followed by an empty one; an emptier page is the last.
    next_cursor = json.dumps(encode_cursor(page["last"]) if page["n"] == limit else None)
    return Response(f'{{"items":{page["items"]},"next_cursor":{next_cursor}}}', media_type="application/json")


CSV_COLUMNS = ("trade_no", "ordered_at", "started_at", "stopped_at", "settled_at", "station_id", "pile_no", "gun_no",
               "driver_id", "origin", "state", "energy_kwh", "electricity_yuan", "service_yuan", "total_yuan",
               "tariff_version", "pile_amount_yuan", "pile_difference_yuan", "stop_code", "reason")


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def csv_cell(value: Any) -> Any:
    """A cell a spreadsheet will not run: text starting with = + - @ tab or CR gets a leading quote
    (OWASP's CSV-injection rule); numbers, ours, stay as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_START) and not PLAIN_NUMBER.match(value):
        return "'" + value
    return value


def csv_row(row: dict[str, Any]) -> list[Any]:
    def yuan(fen: int | None) -> str:
        return "" if fen is None else fen_to_yuan_str(fen)

    def ykc(amount: int | None) -> str:  # 0.0001 yuan
        return "" if amount is None else ykc_amount_to_yuan_str(amount)

    return [row["trade_no"], *(jsonable(row[c]) or "" for c in ("ordered_at", "started_at", "stopped_at", "settled_at")),
            row["station_id"], row["pile_no"], row["gun_no"], row["driver_id"] or "", row["origin"], row["state"],
            energy_to_kwh_str(row["energy"]), yuan(row["electricity_fen"]), yuan(row["service_fen"]),
            yuan(row["total_fen"]), row["tariff_version"], ykc(row["pile_amount"]), ykc(row["pile_difference"]),
            "" if row["stop_code"] is None else row["stop_code"], row["reason"]]


@router.get("/orders.csv", tags=["orders"], summary="Orders as CSV (same filters, every page)",
            responses={200: {"content": {"text/csv": {"example": ",".join(CSV_COLUMNS) + "\n" + TRADE
                                                      + ",2026-11-22T01:40:00+00:00,...\n"}}},
                       **example(None, 200, 401, 403, 422, e403=E403_SCOPE)})
def export_orders(request: Request, who: Caller, station_id: StationFilter = None, pile_no: PileFilter = None,
                  state: OrderState | None = None, since: Since = None, until: Until = None) -> StreamingResponse:
    filters = order_filters(who, station_id, pile_no, state, since, until)
    pool = request.app.state.pool

    def lines() -> Iterator[str]:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        before = None
        while True:
            with pool.connection() as conn:
                rows = find_orders(conn, **filters, before_seq=before, limit=1000)
            for row in rows:
                writer.writerow([csv_cell(cell) for cell in csv_row(row)])
            yield out.getvalue()
            out.seek(0)
            out.truncate()
            if len(rows) < 1000:
                return
            before = rows[-1]["seq"]

    return StreamingResponse(lines(), media_type="text/csv",
                             headers={"Content-Disposition": 'attachment; filename="orders.csv"'})


@router.get("/orders/{trade_no}", tags=["orders"], summary="One order with its timeline",
            responses=example({**ORDER_EXAMPLE, "timeline": [
                {"at": "2026-11-22T01:40:00+00:00", "step": "ordered", "by": "driver-li"},
                {"at": "2026-11-22T01:40:03+00:00", "step": "requested"},
                {"at": "2026-11-22T01:40:20+00:00", "step": "started"},
                {"at": "2026-11-22T02:21:00+00:00", "step": "stopped", "stop_code": 64},
                {"at": "2026-11-22T02:22:00+00:00", "step": "settled", "total_fen": 7440}]}, 200, *ERRORS,
                e403=E403_SCOPE))
def get_order(request: Request, who: Caller, trade_no: TradeNo) -> JSONResponse:
    where, params = scope_where(who)
    rows = query(request, f"SELECT * FROM orders WHERE trade_no = %(trade)s AND {where}",  # noqa: S608
                 {**params, "trade": trade_no})
    if not rows:
        raise NotFound(f"no order {trade_no}", trade_no=trade_no)
    rows[0].pop("session_id")
    return JSONResponse(jsonable(rows[0]))


# ---- revenue and dashboard -------------------------------------------------------------------------
@router.get("/revenue", tags=["revenue"], summary="Revenue per station-local day and station",
            responses=example({"items": [{"day": "2026-11-22", "station_id": S, "sessions": 5, "energy": 1250000,
                                          "electricity_fen": 9650, "service_fen": 7200, "refunds_fen": 0,
                                          "charging_seconds": 10800}],
                               "totals": {"sessions": 5, "energy": 1250000, "electricity_fen": 9650,
                                          "service_fen": 7200, "refunds_fen": 0}}, 200, 401, 403, 422, e403=E403_SCOPE))
def revenue(request: Request, who: Caller, station_id: StationFilter = None,
            day_from: Annotated[t.Day | None, Query(alias="from")] = None,
            day_to: Annotated[t.Day | None, Query(alias="to", description="inclusive")] = None) -> JSONResponse:
    where, params = scope_where(who)
    for clause, key, value in (("station_id = %(station)s", "station", station_id), ("day >= %(d0)s", "d0", day_from),
                               ("day <= %(d1)s", "d1", day_to)):
        if value is not None:
            where += f" AND {clause}"
            params[key] = value
    rows = query(request, "SELECT day, tenant_id, station_id, sessions, energy, electricity_fen, service_fen, "
                          f"refunds_fen, charging_seconds FROM revenue_daily WHERE {where} "  # noqa: S608
                          "ORDER BY day DESC, station_id", params)
    totals = {k: sum(int(r[k]) for r in rows) for k in ("sessions", "energy", "electricity_fen", "service_fen",
                                                         "refunds_fen")}
    return JSONResponse({"items": jsonable(rows), "totals": totals})


@router.get("/dashboard", tags=["revenue"], summary="The network at a glance (经营大屏)",
            description="Today and this month are each station's own local day and month (its time zone, "
                        "Asia/Shanghai unless set).",
            responses=example({"at": "2026-11-22T04:00:00+00:00", "stations": 3,
                               "piles": {"total": 20, "online": 18, "offline": 2, "faulted": 1},
                               "guns": {"total": 40, "idle": 25, "charging": 12, "fault": 1, "offline": 2,
                                        "open_sessions": 12},
                               "today": {"sessions": 85, "energy": 21500000, "revenue_fen": 289000,
                                         "utilisation": 0.3125},
                               "month": {"sessions": 1840, "energy": 466000000, "revenue_fen": 6120000}},
                              200, 401, 403, 422, e403=E403_SCOPE))
def get_dashboard(request: Request, who: Caller,
                  at: Annotated[t.Instant | None, Query(description="the instant 'today' is taken at; default now")]
                  = None) -> JSONResponse:
    with request.app.state.pool.connection() as conn:
        return JSONResponse(dashboard(conn, who.tenant_id, who.stations, at or now()))


# ---- alarms and the operation log ---------------------------------------------------------------------
ALARM_EXAMPLE = {"alarm_id": "fault:2929de6f-3c40-5547-95b4-8721d02cc8f2:1:0x02:88", "tenant_id": T, "station_id": S,
                 "pile_no": PILE, "gun_no": 1, "trade_no": None, "kind": "fault", "code": "0x02", "severity": "major",
                 "message": "emergency stop pressed", "raised_at": "2026-11-22T03:00:00+00:00", "cleared_at": None,
                 "count": 1, "acknowledged_by": None, "acknowledged_at": None, "note": None}


@router.get("/alarms", tags=["alarms"], summary="Alarms, newest first",
            responses=example({"items": [ALARM_EXAMPLE]}, 200, 401, 403, 422, e403=E403_SCOPE))
def list_alarms(request: Request, who: Caller,
                state: Literal["open", "unacknowledged", "cleared", "all"] = "open",
                kind: Annotated[t.AlarmKind | None, Query(description="e.g. fault, lost_heartbeat")] = None,
                station_id: StationFilter = None,
                limit: Annotated[t.Int, Query(ge=1, le=1000)] = 200) -> JSONResponse:
    where, params = scope_where(who, "a")
    where += {"open": " AND a.cleared_at IS NULL", "unacknowledged": " AND k.alarm_id IS NULL",
              "cleared": " AND a.cleared_at IS NOT NULL", "all": ""}[state]
    if kind is not None:
        where += " AND a.kind = %(kind)s"
        params["kind"] = kind
    if station_id is not None:
        where += " AND a.station_id = %(station)s"
        params["station"] = station_id
    rows = query(request, "SELECT a.*, k.acknowledged_by, k.acknowledged_at, k.note FROM alarms a "
                          "LEFT JOIN alarm_acknowledgements k USING (alarm_id) "
                          f"WHERE {where} ORDER BY a.seq DESC LIMIT %(limit)s",  # noqa: S608
                 {**params, "limit": limit})
    for row in rows:
        row.pop("seq")
    return JSONResponse({"items": jsonable(rows)})


@router.post("/alarms/{alarm_id}/acknowledge", tags=["alarms"], summary="Acknowledge an alarm",
             responses=example({"alarm_id": ALARM_EXAMPLE["alarm_id"], "acknowledged_by": "ops@example",
                                "acknowledged_at": "2026-11-22T03:05:00+00:00", "note": "technician dispatched"},
                               200, *ERRORS))
def acknowledge_alarm(request: Request, who: Caller, alarm_id: AlarmId, body: AcknowledgeRequest) -> JSONResponse:
    require(who, TENANT_ADMIN)  # agents read alarms; acknowledging is the tenant's
    where, params = scope_where(who)
    with request.app.state.pool.connection() as conn:
        alarm = conn.execute(f"SELECT tenant_id FROM alarms WHERE alarm_id = %(id)s AND {where}",  # noqa: S608
                             {**params, "id": alarm_id}).fetchone()
        if alarm is None:
            raise NotFound(f"no alarm {alarm_id}", alarm_id=alarm_id)
        at = now()
        conn.execute("INSERT INTO alarm_acknowledgements VALUES (%s, %s, %s, %s, %s) ON CONFLICT (alarm_id) DO NOTHING",
                     (alarm_id, alarm[0], who.subject, at, body.note))
        row = conn.cursor(row_factory=dict_row).execute(
            "SELECT alarm_id, acknowledged_by, acknowledged_at, note FROM alarm_acknowledgements WHERE alarm_id = %s",
            (alarm_id,)).fetchone()
    return JSONResponse(jsonable(row))


@router.get("/operations", tags=["alarms"], summary="Who changed what, when (from the events)",
            responses=example({"items": [{"application": "Registry", "notification_id": 88, "tenant_id": T,
                                          "station_id": S, "aggregate_type": "Pile", "aggregate_id": T,
                                          "event": "Disabled", "author": "ops@example",
                                          "at": "2026-11-22T03:00:00+00:00", "detail": {"reason": "maintenance"}}],
                               "next_before": None}, 200, 401, 403, 422, e403=E403_SCOPE))
def operation_log(request: Request, who: Caller,
                  before: Annotated[t.Instant | None, Query(description="only entries before this instant")] = None,
                  limit: Annotated[t.Int, Query(ge=1, le=1000)] = 100) -> JSONResponse:
    where, params = scope_where(who)
    if before is not None:
        where += " AND at < %(before)s"
        params["before"] = before
    rows = query(request, f"SELECT * FROM operation_log WHERE {where} "  # noqa: S608
                          "ORDER BY at DESC, application, notification_id DESC LIMIT %(limit)s",
                 {**params, "limit": limit})
    return JSONResponse({"items": jsonable(rows),
                         "next_before": jsonable(rows[-1]["at"]) if len(rows) == limit else None})


# ---- remote commands ---------------------------------------------------------------------------------
@router.post("/piles/{pile_no}/start", tags=["commands"], status_code=202,
             summary="Start a gun without a driver (commissioning)",
             responses=example({"trade_no": TRADE}, 202, *ERRORS, 409, e409=E409_UNAVAILABLE))
def start_gun(request: Request, who: Caller, pile_no: PileNo, body: StartBody) -> JSONResponse:
    require(who, TENANT_ADMIN, AGENT)
    pile = check_pile(request, who, pile_no)
    trade_no = request.app.state.ledger.request_start(pile_no=pile_no, gun_no=body.gun_no, wallet_id=None,
                                                      hold_fen=0, at=now(), author=who.subject,
                                                      origin="commissioning", tenant_id=pile.tenant_id)
    return JSONResponse({"trade_no": trade_no}, status_code=202)


@router.post("/orders/{trade_no}/stop", tags=["commands"], status_code=202, summary="Ask the pile to stop a session",
             responses=example({"trade_no": TRADE, "state": "stopping"}, 202, *ERRORS, 409, e409=E409_TRANSITION))
def stop_session(request: Request, who: Caller, trade_no: TradeNo, body: Reason) -> JSONResponse:
    require(who, TENANT_ADMIN, AGENT)
    session = check_session(request, who, trade_no)
    session = request.app.state.ledger.request_stop(trade_no, who.subject, body.reason or "stopped by operator",
                                                    now(), tenant_id=session.tenant_id)
    return JSONResponse({"trade_no": trade_no, "state": session.state}, status_code=202)


@router.post("/orders/{trade_no}/force-close", tags=["commands"], summary="Close a stuck session, priced as measured",
             responses=example({"trade_no": TRADE, "state": "abandoned", "total_fen": 1210}, 200, *ERRORS, 409,
                               e409=E409_TRANSITION))
def force_close(request: Request, who: Caller, trade_no: TradeNo, body: RequiredReason) -> JSONResponse:
    require(who, TENANT_ADMIN, AGENT)
    check_session(request, who, trade_no)
    session = request.app.state.ledger.force_close(trade_no, at=now(), reason=body.reason, author=who.subject)
    return JSONResponse({"trade_no": trade_no, "state": session.state,
                         "total_fen": (session.bill or {}).get("total_fen", 0)})


def pile_command(request: Request, who: Principal, pile_no: str, command: str,
                 use_case: Callable[..., None]) -> JSONResponse:
    """A command to a pile: ``use_case`` is the ledger's (``reboot_pile``, ``push_tariff``), ``command``
    the name the answer gives it."""
    require(who, TENANT_ADMIN, AGENT)
    pile = check_pile(request, who, pile_no)
    use_case(pile_no, author=who.subject, at=now(), tenant_id=pile.tenant_id)
    return JSONResponse({"pile_no": pile_no, "command": command}, status_code=202)


@router.post("/piles/{pile_no}/reboot", tags=["commands"], status_code=202, summary="Reboot a pile",
             responses=example({"pile_no": PILE, "command": "reboot"}, 202, *ERRORS, 409, e409=E409_UNAVAILABLE))
def reboot(request: Request, who: Caller, pile_no: PileNo) -> JSONResponse:
    return pile_command(request, who, pile_no, "reboot", request.app.state.ledger.reboot_pile)


@router.post("/piles/{pile_no}/push-tariff", tags=["commands"], status_code=202,
             summary="Send the pile its current tariff",
             responses=example({"pile_no": PILE, "command": "push_tariff"}, 202, *ERRORS, 409, e409=E409_UNAVAILABLE))
def push_tariff(request: Request, who: Caller, pile_no: PileNo) -> JSONResponse:
    return pile_command(request, who, pile_no, "push_tariff", request.app.state.ledger.push_tariff)


REFUND_EXAMPLE = {"refund_id": "rf-20261122-0001", "wallet_id": T, "amount_fen": 2500, "available_fen": 0,
                  "refunds": [{"out_trade_no": "T20261122014000a1b2c3d4e5f6",
                               "out_refund_no": "T20261122014000a1b2c3d4e5f6O3f2a1b0c9d8e7f60",
                               "provider": "wechat", "amount_fen": 2500, "status": "processing",
                               "reason": "WeChat refund PROCESSING"}]}


@router.post("/refunds", tags=["commands"], status_code=202,
             summary="Refund a driver's balance to their payment account, through the payment platform",
             description="Sent through the payments the money came from, newest first (only `provider`'s when "
                         "named), exactly as a driver's own refund (docs/payments.md): each refund is "
                         "`succeeded`, `failed` (the money is back in the wallet) or `processing` (the platform "
                         "decides later; the money stays `refund_pending` until it does). Asking again with the "
                         "same `refund_id` answers the refunds it made, as they stand now.",
             responses=example(REFUND_EXAMPLE, 202, *ERRORS, 409,
                               e409=error("refund_refused", "only 1000 fen of the wallet came from refundable "
                                          "payments", {"refundable": 1000, "wanted": 2500})))
def refund(request: Request, who: Caller, body: RefundRequest) -> JSONResponse:
    require(who, TENANT_ADMIN)
    tenant = tenant_of(who)
    wallet_id = Wallet.create_id(tenant, body.driver_id)
    try:
        request.app.state.ledger.wallet(wallet_id)
    except NotFound:
        raise NotFound(f"no driver {body.driver_id}", driver_id=body.driver_id) from None
    payments = getattr(request.app.state, "payments", None)
    if payments is None:
        raise ApiError(409, "payments_not_configured", "this API has no payment channels configured "
                       "(CHARGELEDGER_PAYMENT_KEYS): a refund has nowhere to go")
    refunds = payments.refund_wallet(tenant, body.driver_id, body.amount_fen, f"operator refund {body.refund_id}",
                                     request_id=body.refund_id, provider=body.provider)
    available = request.app.state.ledger.wallet(wallet_id).available
    return JSONResponse({"refund_id": body.refund_id, "wallet_id": str(wallet_id), "amount_fen": body.amount_fen,
                         "available_fen": available, "refunds": [r.__dict__ for r in refunds]}, status_code=202)
