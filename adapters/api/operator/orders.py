"""The operator API's orders and revenue: orders (a cursor over the orders view, one order with its
timeline, every page as CSV), revenue per station-local day, and the dashboard (经营大屏).
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
from collections.abc import Iterator
from datetime import date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse
from psycopg.rows import dict_row

from adapters.api import inputs as t
from adapters.api.auth import Principal
from adapters.api.errors import ApiError
from adapters.api.operator import merged
from adapters.api.operator.order_pages import MAX_CURSOR, merged_page
from adapters.api.shards import apool_of, shards_of
from adapters.api.operator.deps import (E403_SCOPE, ERRORS, PILE, TRADE, S, T, Caller, StationFilter, TradeNo,
                                        example, now, query, scope_where)
from domain.errors import NotFound
from domain.money import energy_to_kwh_str, fen_to_yuan_str, ykc_amount_to_yuan_str
from projections.base import jsonable
from projections.dashboard import dashboard
from projections.orders import find_orders, orders_query

router = APIRouter(prefix="/operator/v1", responses=t.BAD_BODY)

# ---- orders ----------------------------------------------------------------------------------------
ORDER_EXAMPLE = {"trade_no": TRADE, "seq": 1042, "tenant_id": T, "station_id": S, "pile_no": PILE, "gun_no": 1,
                 "wallet_id": T, "driver_id": "driver-li", "origin": "app", "state": "finished",
                 "ordered_at": "2026-11-22T01:40:00+00:00", "requested_at": "2026-11-22T01:40:03+00:00",
                 "started_at": "2026-11-22T01:40:20+00:00", "stopped_at": "2026-11-22T02:21:00+00:00",
                 "settled_at": "2026-11-22T02:22:00+00:00", "energy": 480000, "energy_sharp": 0,
                 "energy_peak": 240000, "energy_flat": 240000, "energy_valley": 0, "electricity_fen": 4080,
                 "service_fen": 3360, "total_fen": 7440, "tariff_id": T, "tariff_version": 1, "pile_amount": 744000,
                 "pile_difference": 0, "stop_code": 64, "reason": "driver stopped", "readings": 40, "anomalies": 0}
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
                        "`cursor` until it is null. A platform admin on a sharded deployment gets every "
                        "shard's orders merged, and a cursor holding each shard's position (docs/shards.md).",
            responses=example({"items": [ORDER_EXAMPLE], "next_cursor": "MTA0Mg"}, 200, 401, 403, 422, e403=E403_SCOPE))
async def list_orders(request: Request, who: Caller, station_id: StationFilter = None, pile_no: PileFilter = None,
                      state: OrderState | None = None, since: Since = None, until: Until = None,
                      cursor: Annotated[t.identifier(r"^[A-Za-z0-9_=-]+$", MAX_CURSOR) | None,  # type: ignore[valid-type]
                                        Query(description="next_cursor of the previous page")] = None,
                      limit: Annotated[t.Int, Query(ge=1, le=500)] = 50) -> Response:
    filters = order_filters(who, station_id, pile_no, state, since, until)
    found = shards_of(request)
    if len(found) > 1:  # a platform admin on a sharded deployment: every shard's page, merged
        rows, merged_cursor = await run_in_threadpool(merged_page, found, filters, cursor, limit)
        return JSONResponse({"items": jsonable(rows), "next_cursor": merged_cursor})
    sql, params = orders_query(**filters, before_seq=decode_cursor(cursor), limit=limit, as_json=True)
    async with apool_of(request).connection() as conn:
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
    pools = [shard.pool for shard in shards_of(request)]  # a platform admin on several shards: one after another

    def lines() -> Iterator[str]:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        for pool in pools:
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
                    break
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
    return JSONResponse(jsonable(order_row(request, who, trade_no)))


def order_row(request: Request, who: Principal, trade_no: str) -> dict[str, Any]:
    """One order of the orders view with its timeline, in ``who``'s scope (else 404): the API's and the console's."""
    where, params = scope_where(who)
    rows = query(request, f"SELECT * FROM orders WHERE trade_no = %(trade)s AND {where}",  # noqa: S608
                 {**params, "trade": trade_no})
    if not rows:
        raise NotFound(f"no order {trade_no}", trade_no=trade_no)
    rows[0].pop("session_id")
    return rows[0]


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
    rows, totals = revenue_rows(request, who, station_id, day_from, day_to)
    return JSONResponse({"items": jsonable(rows), "totals": totals})


REVENUE_FIGURES = ("sessions", "energy", "electricity_fen", "service_fen", "refunds_fen")


def revenue_rows(request: Request, who: Principal, station_id: UUID | None, day_from: date | None,
                 day_to: date | None) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Revenue rows (newest day first) in ``who``'s scope and their totals: the API's and the console's."""
    where, params = scope_where(who)
    for clause, key, value in (("station_id = %(station)s", "station", station_id), ("day >= %(d0)s", "d0", day_from),
                               ("day <= %(d1)s", "d1", day_to)):
        if value is not None:
            where += f" AND {clause}"
            params[key] = value
    rows = query(request, "SELECT day, tenant_id, station_id, sessions, energy, electricity_fen, service_fen, "
                          f"refunds_fen, charging_seconds FROM revenue_daily WHERE {where} "  # noqa: S608
                          "ORDER BY day DESC, station_id", params)
    if len(shards_of(request)) > 1:  # a platform admin on several shards: summed per day and station
        rows = merged.revenue(rows, REVENUE_FIGURES + ("charging_seconds",))
    return rows, {k: sum(int(r[k]) for r in rows) for k in REVENUE_FIGURES}


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
    parts = []
    for shard in shards_of(request):  # one shard, unless a platform admin's on a sharded deployment
        with shard.pool.connection() as conn:
            parts.append(dashboard(conn, who.tenant_id, who.stations, at or now()))
    return JSONResponse(parts[0] if len(parts) == 1 else merged.dashboards(parts))


