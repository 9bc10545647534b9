"""What every operator router shares: who is calling and what they may see, the parameters and bodies
more than one router takes, and the examples the OpenAPI answers show.

The operator API is what operators (运营商) and their agents (代理商) run their business with.
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

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict

from adapters.api import inputs as t
from adapters.api.auth import AuthError, Principal
from adapters.api.errors import ApiError
from adapters.api.inputs import error, responses
from adapters.metrics import logs
from adapters.api.shards import find_on_shards, route, shards_of
from domain.clock import utcnow
from domain.errors import NotFound
from domain.registry import Pile, Station

# ---- examples in the OpenAPI answers ----------------------------------------------------------------
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
bearer = HTTPBearer(auto_error=False, description="a token from POST /operator/v1/auth/token")


async def caller(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Principal:
    """The token's user as they are now (adapters/api/operator/accounts.py): one indexed query per request;
    the request is routed to the user's tenant's shard (every shard: a platform admin; adapters/api/shards.py)."""
    if credentials is None:
        raise AuthError("missing_token", "send Authorization: Bearer <token>")
    principal: Principal = await request.app.state.accounts.principal(credentials.credentials)
    logs.bind(tenant=principal.tenant_id or "platform")  # on every log line of the request (adapters/metrics/logs.py)
    await route(request, principal.tenant_id)
    return principal


Caller = Annotated[Principal, Depends(caller)]
PileNo = Annotated[t.PileNo, Path(description="the pile's 14-digit number")]
TradeNo = Annotated[t.TradeNo, Path(description="the order's trade serial")]
AlarmId = Annotated[t.AlarmId, Path()]
StationFilter = Annotated[t.Uuid | None, Query(description="only this station")]


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
    station = find_on_shards(request, lambda ledger: ledger.registry.station(station_id))
    if not sees(principal, station.tenant_id, station.id):
        raise NotFound(f"no station {station_id}", id=str(station_id))
    return station


def check_pile(request: Request, principal: Principal, pile_no: str) -> Pile:
    pile = find_on_shards(request, lambda ledger: ledger.registry.pile(pile_no))
    if not sees(principal, pile.tenant_id, pile.station_id):
        raise NotFound(f"no pile {pile_no}", pile_no=pile_no)
    return pile


def check_session(request: Request, principal: Principal, trade_no: str) -> Any:
    try:
        session = find_on_shards(request, lambda ledger: ledger.session(trade_no))
    except NotFound:
        raise NotFound(f"no order {trade_no}", trade_no=trade_no) from None
    if not sees(principal, session.tenant_id, session.station_id):
        raise NotFound(f"no order {trade_no}", trade_no=trade_no)
    return session


def check_tariff(request: Request, principal: Principal, tariff_id: UUID) -> Any:
    tariff = find_on_shards(request, lambda ledger: ledger.tariffs.tariff(tariff_id))
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


def query(request: Request, sql: str, params: dict[str, Any],
          order: Callable[[dict[str, Any]], Any] | None = None) -> list[dict[str, Any]]:
    """The rows of ``sql`` on the request's shard; for a platform admin on several shards, every
    shard's rows one after the other, sorted again by ``order`` if given (the view's own ORDER BY)."""
    rows: list[dict[str, Any]] = []
    for shard in shards_of(request):
        with shard.pool.connection() as conn:
            rows.extend(conn.cursor(row_factory=dict_row).execute(sql, params).fetchall())
    return rows if order is None or len(shards_of(request)) == 1 else sorted(rows, key=order)


def now() -> datetime:
    """The instant a request happens at (:func:`domain.clock.utcnow`)."""
    return utcnow()

# ---- request bodies ---------------------------------------------------------------------------------
def body_example(**values: Any) -> ConfigDict:
    return ConfigDict(extra="forbid", json_schema_extra={"examples": [values]})


class Reason(BaseModel):
    model_config = body_example(reason="maintenance")
    reason: t.Reason = ""
