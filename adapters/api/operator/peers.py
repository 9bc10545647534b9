"""The operator API's T/CEC peers (docs/interconnect.md, "Peers in the operator API"): the tenant's peer
platforms with their link's health, the roaming orders with one peer in both directions, and what each
peer owes us and we owe it per China day.

A link is the tenant's, not a station's: a tenant admin's token reads it; an agent (代理商), whose scope
is some stations, is refused (403 ``forbidden_role``: a peer's orders and money span every station, and
the B side has no station of ours at all), and so is a platform admin (403: a peer is named by its
OperatorID within one tenant; sign in as the tenant's admin). Another tenant's peer is 404, as if it did
not exist. No answer carries a secret: the peers are read by ``adapters.postgres.peer_links``, whose
columns leave the sealed credential sets out.

Directions: ``as_infrastructure``, the peer's users on our piles (``tcec_starts`` joined with the
``orders`` view for the bill), and ``as_customer``, our drivers on the peer's piles (the
``roaming_orders`` view). Both are keyed by their Sessions notification id (``seq``), so one keyset
pages both, newest first, as ``GET /orders`` pages orders.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from psycopg.rows import dict_row

from adapters.api.shards import pool_of
from adapters.api import inputs as t
from adapters.api.auth import AGENT, Principal
from adapters.api.errors import ApiError
from adapters.api.operator.deps import ERRORS, TRADE, Caller, example, now, tenant_of
from adapters.api.operator.orders import Since, Until, decode_cursor, encode_cursor
from adapters.postgres.peer_links import linked, peers_of, peers_with_health
from domain.errors import NotFound
from domain.money import energy_to_kwh_str, fen_to_yuan_str
from projections.base import jsonable

router = APIRouter(prefix="/operator/v1", responses=t.BAD_BODY)
CHINA = ZoneInfo("Asia/Shanghai")  # T/CEC's days (check_charge_orders) are China days
E403_PEERS = t.error("forbidden_role", "a agent may not do this")
OPERATOR_ID = t.identifier(r"^[0-9A-Za-z]{9}$", 9)  # a peer's OperatorID (also the console's peer pages)
OperatorId = Annotated[OPERATOR_ID,  # type: ignore[valid-type]
                       Path(description="the peer's OperatorID (9 letters or digits)")]
SETTLEMENT_DAYS = 31  # the settlement's default window, up to today

HEALTH_EXAMPLE = {"pending": 1, "retrying": 1, "delivered": 41, "failed": 0,
                  "last_delivered": "2026-11-22T02:22:01+00:00", "lag_s": 95,
                  "last_error": "ConnectError: connection refused", "last_inbound_at": "2026-11-22T02:23:10+00:00"}
PEER_EXAMPLE = {"operator_id": "BPLATFORM", "our_operator_id": "APLATFORM", "name": "平台B", "role": "customer",
                "dialect": "tcec2016", "enabled": True, "base_url": "https://evcs.example.com/evcs/v1",
                "status_interval": 60, "token_lifetime": 7200, "health": HEALTH_EXAMPLE}
ORDER_EXAMPLE = {"direction": "as_infrastructure", "seq": 1042, "start_charge_seq": "BPLATFORM000000000000000001",
                 "connector_id": "3201060001923601", "trade_no": TRADE, "driver_id": None, "state": "finished",
                 "requested_at": "2026-11-22T01:40:00+00:00", "start_time": "2026-11-22T01:40:20+00:00",
                 "end_time": "2026-11-22T02:21:00+00:00", "energy_kwh": "48.0000", "electricity_yuan": "40.80",
                 "service_yuan": "33.60", "total_yuan": "74.40", "disputes": 0}
FIGURES_EXAMPLE = {"orders": 2, "energy_kwh": "10.4690", "total_yuan": "13.98"}
SETTLEMENT_EXAMPLE = {"from": "2026-11-22", "to": "2026-11-22", "items": [
    {"operator_id": "BPLATFORM", "day": "2026-11-22", "receivable": FIGURES_EXAMPLE,
     "payable": {"orders": 0, "energy_kwh": "0.0000", "total_yuan": "0.00"}}]}


def tenant_links(who: Principal) -> Any:
    """The tenant whose links ``who`` may read; 403 for an agent and a platform admin (see the module)."""
    if who.role == AGENT:
        raise ApiError(403, "forbidden_role", "a peer link is the tenant's, not a station's: use a tenant "
                                              "admin's token")
    return tenant_of(who)


def yuan(fen: int | None) -> str | None:
    return None if fen is None else fen_to_yuan_str(int(fen))


@router.get("/peers", tags=["peers"], summary="The tenant's T/CEC peers and the health of each link",
            description="Health: pushes pending (and retrying after a failure), delivered (last 30 days), given "
                        "up; the last delivery; `lag_s`, the age of the oldest push pending; the newest error of "
                        "a push not yet delivered; the last call of the peer we answered (at most a minute old).",
            responses=example({"items": [PEER_EXAMPLE]}, 200, 401, 403, e403=E403_PEERS))
def list_peers(request: Request, who: Caller) -> JSONResponse:
    tenant_id = tenant_links(who)
    with pool_of(request).connection() as conn:
        peers = peers_with_health(conn, tenant_id, now())
    for peer in peers:
        del peer["peer_id"], peer["tenant_id"]
    return JSONResponse(jsonable({"items": peers}))


def peer_row(conn: Any, tenant_id: Any, operator_id: str) -> dict[str, Any]:
    """The tenant's peer with this OperatorID, else 404 (another tenant's peer is not there)."""
    found = peers_of(conn, tenant_id, operator_id) if linked(conn) else []
    if not found:
        raise NotFound(f"no peer {operator_id}", operator_id=operator_id)
    return found[0]


AS_INFRASTRUCTURE = """
(SELECT 'as_infrastructure' AS direction, o.seq, s.start_charge_seq, s.connector_id, o.trade_no,
        NULL::text AS driver_id, o.state, o.ordered_at AS requested_at, o.started_at AS start_time,
        o.stopped_at AS end_time, o.energy, o.electricity_fen, o.service_fen, o.total_fen, 0 AS disputes
 FROM tcec_starts s JOIN orders o ON o.trade_no = s.trade_no
 WHERE s.peer_id = %(peer_id)s AND o.tenant_id = %(tenant)s AND {where_o}
 ORDER BY o.seq DESC LIMIT %(limit)s)"""
AS_CUSTOMER = """
(SELECT 'as_customer' AS direction, r.seq, r.start_charge_seq, r.connector_id, NULL::text AS trade_no,
        r.driver_id, r.state, r.requested_at, r.start_time, r.end_time, r.energy, r.electricity_fen,
        r.service_fen, r.total_fen, r.disputes
 FROM roaming_orders r WHERE r.tenant_id = %(tenant)s AND r.peer = %(operator_id)s AND {where_r}
 ORDER BY r.seq DESC LIMIT %(limit)s)"""


def peer_orders(conn: Any, tenant_id: Any, peer: dict[str, Any], since: datetime | None, until: datetime | None,
                before_seq: int | None, limit: int) -> list[dict[str, Any]]:
    """A page of the roaming orders with ``peer``, both directions, newest first by ``seq``."""
    params: dict[str, Any] = {"tenant": tenant_id, "peer_id": peer["peer_id"], "operator_id": peer["operator_id"],
                              "limit": limit}
    where_o, where_r = ["true"], ["true"]
    for key, value, o_clause, r_clause in (("since", since, "o.ordered_at >= %(since)s", "r.requested_at >= %(since)s"),
                                           ("until", until, "o.ordered_at < %(until)s", "r.requested_at < %(until)s"),
                                           ("before", before_seq, "o.seq < %(before)s", "r.seq < %(before)s")):
        if value is not None:
            params[key] = value
            where_o.append(o_clause)
            where_r.append(r_clause)
    sql = (AS_INFRASTRUCTURE.format(where_o=" AND ".join(where_o)) + " UNION ALL "
           + AS_CUSTOMER.format(where_r=" AND ".join(where_r)) + " ORDER BY seq DESC LIMIT %(limit)s")
    rows = conn.cursor(row_factory=dict_row).execute(sql, params).fetchall()
    for row in rows:
        energy = row.pop("energy")
        row["energy_kwh"] = None if energy is None else energy_to_kwh_str(int(energy))
        for part in ("electricity", "service", "total"):
            row[f"{part}_yuan"] = yuan(row.pop(f"{part}_fen"))
    return rows


@router.get("/peers/{operator_id}/orders", tags=["peers"], summary="Roaming orders with one peer, both directions",
            description="`as_infrastructure`: the peer's users on our piles (the order's bill from the orders view; "
                        "states as `GET /orders`); `as_customer`: our drivers on the peer's piles (states requested, "
                        "starting, charging, stopping, settled, failed). `from`/`to` filter the time the order was "
                        "requested. Newest first by `seq`; pass `next_cursor` back as `cursor` until it is null.",
            responses=example({"items": [ORDER_EXAMPLE], "next_cursor": "MTA0Mg"}, 200, *ERRORS, e403=E403_PEERS))
def list_peer_orders(request: Request, who: Caller, operator_id: OperatorId, since: Since = None,
                     until: Until = None,
                     cursor: Annotated[t.identifier(r"^[A-Za-z0-9_=-]+$", 32) | None,  # type: ignore[valid-type]
                                       Query(description="next_cursor of the previous page")] = None,
                     limit: Annotated[t.Int, Query(ge=1, le=500)] = 50) -> JSONResponse:
    tenant_id = tenant_links(who)
    before = decode_cursor(cursor)
    with pool_of(request).connection() as conn:
        peer = peer_row(conn, tenant_id, operator_id)
        rows = peer_orders(conn, tenant_id, peer, since, until, before, limit)
    next_cursor = encode_cursor(rows[-1]["seq"]) if len(rows) == limit else None
    return JSONResponse(jsonable({"items": rows, "next_cursor": next_cursor}))


RECEIVABLE = """
SELECT p.operator_id, (s.ended_at AT TIME ZONE 'Asia/Shanghai')::date AS day, count(*) AS orders,
       sum(s.energy) AS energy, sum(s.total_fen) AS total_fen
FROM tcec_starts s JOIN tcec_peers p ON p.peer_id = s.peer_id
WHERE p.tenant_id = %(tenant)s AND s.tenant_id = %(tenant)s AND s.total_fen IS NOT NULL
  AND s.ended_at >= %(since)s AND s.ended_at < %(until)s
GROUP BY 1, 2"""
PAYABLE = """
SELECT peer AS operator_id, (end_time AT TIME ZONE 'Asia/Shanghai')::date AS day, count(*) AS orders,
       sum(energy) AS energy, sum(total_fen) AS total_fen
FROM roaming_orders WHERE tenant_id = %(tenant)s AND state = 'settled' AND end_time >= %(since)s
  AND end_time < %(until)s
GROUP BY 1, 2"""


def figures(row: dict[str, Any] | None) -> dict[str, Any]:
    if row is None:
        return {"orders": 0, "energy_kwh": energy_to_kwh_str(0), "total_yuan": fen_to_yuan_str(0)}
    return {"orders": int(row["orders"]), "energy_kwh": energy_to_kwh_str(int(row["energy"] or 0)),
            "total_yuan": fen_to_yuan_str(int(row["total_fen"] or 0))}


def settlement_days(day_from: date | None, day_to: date | None) -> tuple[date, date]:
    """The China days a settlement covers: those asked, by default the last 31 up to today."""
    day_to = day_to or now().astimezone(CHINA).date()
    return day_from or day_to - timedelta(days=SETTLEMENT_DAYS - 1), day_to


def settlement(conn: Any, tenant_id: Any, day_from: date, day_to: date) -> list[dict[str, Any]]:
    """Per peer and China day in [day_from, day_to]: receivable (the peer's users' orders on our piles that
    ended that day: what check_charge_orders sends the peer) and payable (our drivers' settled charges on its
    piles whose EndTime is that day). Days without either are left out, and so is everything on a database
    that never served T/CEC."""
    if not linked(conn):
        return []
    params = {"tenant": tenant_id, "since": datetime.combine(day_from, time(), CHINA),
              "until": datetime.combine(day_to + timedelta(days=1), time(), CHINA)}
    cursor = conn.cursor(row_factory=dict_row)
    owed_us = {(r["operator_id"], r["day"]): r for r in cursor.execute(RECEIVABLE, params).fetchall()}
    we_owe = {(r["operator_id"], r["day"]): r for r in cursor.execute(PAYABLE, params).fetchall()}
    return [{"operator_id": key[0], "day": key[1].isoformat(), "receivable": figures(owed_us.get(key)),
             "payable": figures(we_owe.get(key))} for key in sorted(owed_us.keys() | we_owe.keys())]


@router.get("/peers/settlement", tags=["peers"], summary="What each peer owes us and we owe it, per China day",
            description="Receivable: the peer's users' orders on our piles, by the China day they ended (the day "
                        "our `check_charge_orders` to the peer lists them under), their bills' totals. Payable: our "
                        "drivers' settled charges on the peer's piles, by the China day of the order's EndTime. "
                        "`from`/`to`: China days, inclusive; default the last 31 days up to today.",
            responses=example(SETTLEMENT_EXAMPLE, 200, 401, 403, 422, e403=E403_PEERS))
def peer_settlement(request: Request, who: Caller,
                    day_from: Annotated[t.Day | None, Query(alias="from", description="China day")] = None,
                    day_to: Annotated[t.Day | None, Query(alias="to", description="China day, inclusive")] = None
                    ) -> JSONResponse:
    tenant_id = tenant_links(who)
    day_from, day_to = settlement_days(day_from, day_to)
    with pool_of(request).connection() as conn:
        items = settlement(conn, tenant_id, day_from, day_to)
    return JSONResponse({"from": day_from.isoformat(), "to": day_to.isoformat(), "items": items})

