"""The operator API's big-screen figures (经营大屏) beside ``GET /dashboard`` (orders.py): the 24-hour power
curve, the top stations today, and everything the console's big screen shows in one answer
(``/dashboard/screen``, which the page renders from the very same query, ``projections.screen``).

A platform admin may name one tenant (``tenant_id``); anybody else may name only their own (another is
404, as everything outside the caller's scope is). An agent's figures cover their stations only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, TypeVar
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from adapters.api import inputs as t
from adapters.api.auth import Principal
from adapters.api.operator import merged
from adapters.api.operator.deps import E403_SCOPE, S, T, Caller, example, now
from adapters.api.shards import pool_of, shards, shards_of
from domain.errors import NotFound
from projections.base import jsonable
from projections.power import power_curve
from projections.screen import Ranking, screen_figures, top_stations

router = APIRouter(prefix="/operator/v1", responses=t.BAD_BODY)
T_ = TypeVar("T_")

TenantChoice = Annotated[t.Uuid | None, Query(description="platform admins: this tenant only; others: their own")]
At = Annotated[t.Instant | None, Query(description="the instant 'now' is taken at; default now")]


@dataclass(frozen=True)
class Scope:
    """Whose figures: a tenant (None: every tenant, a platform admin's default) and an agent's stations."""

    tenant_id: UUID | None
    stations: frozenset[UUID] | None
    name: str | None  # the tenant's name (None: every tenant)


def tenant_name(request: Request, tenant_id: UUID) -> str | None:
    """The tenant's name from its shard's catalogue (what follows in the request reads that shard only)."""
    if len(shards_of(request)) > 1:
        try:
            request.state.shards = [shards(request).of_tenant(tenant_id)]
        except NotFound:
            return None
    with pool_of(request).connection() as conn:
        row = conn.execute("SELECT name FROM catalogue_tenants WHERE tenant_id = %s", (tenant_id,)).fetchone()
    return None if row is None else str(row[0])


def per_shard(request: Request, read: Callable[[Any], T_]) -> list[T_]:
    """``read(conn)`` on each of the request's shards (one, unless a platform admin's on several)."""
    parts = []
    for shard in shards_of(request):
        with shard.pool.connection() as conn:
            parts.append(read(conn))
    return parts


def screen_scope(request: Request, who: Principal, tenant_id: UUID | None) -> Scope:
    """The figures ``who`` may see, narrowed to ``tenant_id`` if given; NotFound outside the scope."""
    if who.tenant_id is not None and tenant_id not in (None, who.tenant_id):
        raise NotFound(f"no tenant {tenant_id}", id=str(tenant_id))
    chosen = tenant_id or who.tenant_id
    if chosen is None:
        return Scope(None, who.stations, None)
    name = tenant_name(request, chosen)
    if name is None:
        raise NotFound(f"no tenant {chosen}", id=str(chosen))
    return Scope(chosen, who.stations, name)


POINT = {"at": "2026-11-22T03:45:00+00:00", "energy": 412500, "power_w": 165000}
TOP_EXAMPLE = {"station_id": S, "name": "Zhangjiang Hub", "timezone": "Asia/Shanghai", "sessions": 42,
               "energy": 10250000, "revenue_fen": 139000}


@router.get("/dashboard/power", tags=["revenue"], summary="Power per quarter hour over the last 24 hours",
            description="Energy the piles reported (realtime readings) per UTC quarter hour, as average watts; "
                        "96 points, oldest first, the last one the quarter hour under way (averaged over its "
                        "elapsed part). From the `power_curve` view.",
            responses=example({"items": [POINT]}, 200, 401, 403, 404, 422, e403=E403_SCOPE))
def get_power(request: Request, who: Caller, tenant_id: TenantChoice = None, at: At = None) -> JSONResponse:
    scope = screen_scope(request, who, tenant_id)
    curves = per_shard(request, lambda conn: power_curve(conn, scope.tenant_id, scope.stations, at or now()))
    return JSONResponse({"items": curves[0] if len(curves) == 1 else merged.power_curves(curves)})


@router.get("/dashboard/top-stations", tags=["revenue"], summary="Stations ranked by today's energy or revenue",
            description="Today is each station's own local day (its time zone). Revenue is electricity + service "
                        "fees of the sessions billed today (the revenue view).",
            responses=example({"by": "energy", "items": [TOP_EXAMPLE]}, 200, 401, 403, 404, 422, e403=E403_SCOPE))
def get_top_stations(request: Request, who: Caller, tenant_id: TenantChoice = None, at: At = None,
                     by: Ranking = "energy", limit: Annotated[t.Int, Query(ge=1, le=100)] = 10) -> JSONResponse:
    scope = screen_scope(request, who, tenant_id)
    parts = per_shard(request, lambda conn: top_stations(conn, scope.tenant_id, scope.stations, at or now(), by, limit))
    return JSONResponse({"by": by, "items": jsonable(merged.top([r for p in parts for r in p], by, limit))})


SCREEN_EXAMPLE = {
    "at": "2026-11-22T04:00:00+00:00", "stations": 3, "tenant": {"tenant_id": T, "name": "Demo Charging Co."},
    "piles": {"total": 20, "online": 18, "offline": 2, "faulted": 1},
    "guns": {"total": 40, "idle": 25, "charging": 12, "fault": 1, "offline": 2, "open_sessions": 12},
    "today": {"sessions": 85, "energy": 21500000, "revenue_fen": 289000, "utilisation": 0.3125},
    "month": {"sessions": 1840, "energy": 466000000, "revenue_fen": 6120000},
    "power_now": {"power_w": 512000, "guns_reporting": 12}, "power_curve": [POINT],
    "top_stations": {"by": "energy", "items": [TOP_EXAMPLE]},
    "alarms": [{"alarm_id": "fault:2929de6f-3c40-5547-95b4-8721d02cc8f2:1:0x02:88", "station_id": S,
                "pile_no": "32010600019236", "gun_no": 1, "trade_no": None, "kind": "fault", "code": "0x02",
                "severity": "major", "message": "emergency stop pressed", "raised_at": "2026-11-22T03:00:00+00:00",
                "count": 1}],
    "zone": "Asia/Shanghai"}


@router.get("/dashboard/screen", tags=["revenue"], summary="Everything the big screen (经营大屏) shows",
            description="The dashboard, the power drawn now, the 24-hour power curve, the top stations today "
                        "(`by` energy or revenue) and the newest open alarms, in one answer: the console's big "
                        "screen renders this same dict on every tick of its live stream.",
            responses=example(SCREEN_EXAMPLE, 200, 401, 403, 404, 422, e403=E403_SCOPE))
def get_screen(request: Request, who: Caller, tenant_id: TenantChoice = None, at: At = None,
               by: Ranking = "energy") -> JSONResponse:
    return JSONResponse(screen_json(request, screen_scope(request, who, tenant_id), at, by))


def screen_json(request: Request, scope: Scope, at: datetime | None = None, by: Ranking = "energy") -> dict[str, Any]:
    """The figures of ``scope`` (what ``/dashboard/screen`` answers)."""
    parts = per_shard(request, lambda conn: screen_figures(conn, scope.tenant_id, scope.stations, at or now(), by))
    figures = parts[0] if len(parts) == 1 else merged.screens(parts)
    figures["tenant"] = None if scope.tenant_id is None else {"tenant_id": str(scope.tenant_id), "name": scope.name}
    return figures
