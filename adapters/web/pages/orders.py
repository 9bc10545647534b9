"""Orders (充电订单): the list with its filters and pages, the CSV, one order (its timeline, its bill per
tier), and a refund to the order's driver.

* The list reads the orders view through the API's own query (``projections.orders.find_orders``
  with ``order_filters``: the caller's tenant and stations), 50 a page, newest first, paged on
  ``seq`` with the API's cursor, so an order arriving while someone pages never moves a row from one
  page to the next (a platform admin on several shards: every shard's page merged, with the API's
  merged cursor, adapters/api/operator/order_pages.py). Filters: station, state, a date range (days in the station's zone when one
  station is chosen, else Asia/Shanghai; ``to`` inclusive) and a trade number (that one order,
  through the API's ``order_row``: in scope or nothing).
* The CSV is the API's ``export_orders`` (every page; cells a spreadsheet would run are quoted).
* One order is the API's ``order_row`` (404 outside the scope); adapters/web/pages/order_detail.py
  says what else its page reads.
* A refund is the API's refund command (``refund_driver``: tenant admins, through the payment
  platform the driver's money came from), with the reason the platform shows the driver.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool

from adapters.api import inputs as t
from adapters.api.auth import TENANT_ADMIN, Principal
from adapters.api.errors import ApiError
from adapters.api.operator.commands import RefundRequest, refund_driver
from adapters.api.operator.deps import require
from adapters.api.operator.order_pages import MAX_CURSOR, decode_positions, merged_page
from adapters.api.operator.orders import decode_cursor, encode_cursor, export_orders, order_filters, order_row
from adapters.api.operator.registry import stations_rows
from adapters.api.shards import shards_of
from adapters.web.forms import Invalid, validated
from adapters.web.pages import order_detail
from adapters.web.render import DEFAULT_ZONE, render, see_other, url
from adapters.web.session import Operator, posted
from domain.errors import DomainError, NotFound
from domain.money import ykc_amount_to_yuan_str, yuan_str_to_fen
from projections.orders import find_orders

router = APIRouter()
NAV = "/orders"
PAGE = 50
STATES = ("requested", "starting", "charging", "stopping", "finished", "failed", "abandoned")
FILTERS = ("station", "state", "from", "to", "trade_no", "cursor")
ORIGINS = ("app", "card", "vin", "offline", "commissioning")  # who opened a session (its Opened event)


class OrderFilters(BaseModel):
    """The list's query string, in the API's own types."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    station: t.Uuid | None = None
    state: Literal[STATES] | None = None  # type: ignore[valid-type]
    day_from: t.Day | None = Field(None, alias="from")
    day_to: t.Day | None = Field(None, alias="to")
    trade_no: t.TradeNo | None = None
    cursor: t.identifier(r"^[A-Za-z0-9_=-]+$", MAX_CURSOR) | None = None  # type: ignore[valid-type]


def local_start(day: date, zone: str) -> datetime:
    return datetime.combine(day, time(0), ZoneInfo(zone))


def orders_page(request: Request, who: Principal) -> Response:
    stations = stations_rows(request, who)
    zones = {s["station_id"]: s["timezone"] for s in stations}
    shown = {k: v for k, v in request.query_params.items() if k in FILTERS and v != ""}
    errors: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    next_cursor = None
    try:
        f = validated(OrderFilters, shown, FILTERS)
        if f.day_from and f.day_to and f.day_to < f.day_from:
            raise Invalid({"to": "must not be before from"})
        found = shards_of(request)  # several: a platform admin on a sharded deployment, every shard merged
        if len(found) > 1:
            before = None
            decode_positions(f.cursor, [shard.name for shard in found])
        else:
            before = decode_cursor(f.cursor)
    except Invalid as exc:
        errors = exc.fields
    except ApiError as exc:  # a cursor this page did not make
        errors = {"cursor": exc.message}
    else:
        if f.trade_no:
            try:
                rows = [order_row(request, who, f.trade_no)]
            except NotFound:
                rows = []
        else:
            zone = zones.get(f.station, DEFAULT_ZONE) if f.station else DEFAULT_ZONE
            since = local_start(f.day_from, zone) if f.day_from else None
            until = local_start(f.day_to + timedelta(days=1), zone) if f.day_to else None
            filters = order_filters(who, f.station, None, f.state, since, until)
            if len(found) > 1:
                rows, next_cursor = merged_page(found, filters, f.cursor, PAGE)
            else:
                with found[0].pool.connection() as conn:
                    rows = find_orders(conn, **filters, before_seq=before, limit=PAGE)
                if len(rows) == PAGE:
                    next_cursor = encode_cursor(rows[-1]["seq"])
    keep = {k: v for k, v in shown.items() if k != "cursor"}
    return render(request, "orders/list.html", who, nav=NAV, status=422 if errors else 200, rows=rows,
                  stations=stations, names={s["station_id"]: s["name"] for s in stations}, zones=zones,
                  states=STATES, query=shown, errors=errors,
                  next_url=url("/orders", **keep, cursor=next_cursor) if next_cursor else None,
                  first_url=url("/orders", **keep) if "cursor" in shown else None,
                  csv_url=url("/orders.csv", **{k: v for k, v in keep.items() if k != "trade_no"}))


@router.get("/orders")
async def orders(request: Request, who: Operator) -> Response:
    return await run_in_threadpool(orders_page, request, who)


@router.get("/orders.csv")
async def orders_csv(request: Request, who: Operator) -> StreamingResponse:
    """The API's CSV of the same filters (every page)."""
    stations = await run_in_threadpool(stations_rows, request, who)
    zones = {s["station_id"]: s["timezone"] for s in stations}
    try:
        f = validated(OrderFilters, {k: v for k, v in request.query_params.items() if v != ""}, FILTERS)
    except Invalid as exc:
        raise ApiError(422, "validation_error", str(exc)) from None
    zone = zones.get(f.station, DEFAULT_ZONE) if f.station else DEFAULT_ZONE
    since = local_start(f.day_from, zone) if f.day_from else None
    until = local_start(f.day_to + timedelta(days=1), zone) if f.day_to else None
    return export_orders(request, who, f.station, None, f.state, since, until)


# ---- one order ---------------------------------------------------------------------------------------------
def order_page(request: Request, who: Principal, trade_no: str, status: int = 200,
               form: dict[str, str] | None = None, errors: dict[str, str] | None = None,
               refused: str | None = None) -> Response:
    order = order_row(request, who, trade_no)
    station = next((s for s in stations_rows(request, who) if s["station_id"] == order["station_id"]),
                   {"name": "", "timezone": DEFAULT_ZONE})
    asked, next_n = order_detail.refunds(request, order)
    return render(request, "orders/one.html", who, nav=NAV, status=status, order=order, zone=station["timezone"],
                  station=station["name"], bill=order_detail.bill_of(request, who, order),
                  steps=order_detail.timeline(order), wallet=order_detail.wallet_steps(request, order),
                  refunds=asked, next_refund=next_n, can_refund=order_detail.refundable(request, order),
                  origins=ORIGINS, exact=order_detail.exact_yuan, ykc=ykc_amount_to_yuan_str, form=form or {}, errors=errors or {}, refused=refused,
                  refunded=request.query_params.get("refunded"))


TRADE_NO = TypeAdapter(t.TradeNo)


def trade_of(trade_no: str) -> str:
    """A trade number from the path (the API's type), or a page that does not exist."""
    try:
        return str(TRADE_NO.validate_python(trade_no))
    except ValidationError:
        raise NotFound(f"no order {trade_no[:40]}") from None


@router.get("/orders/{trade_no}")
async def order(request: Request, who: Operator, trade_no: str) -> Response:
    return await run_in_threadpool(order_page, request, who, trade_of(trade_no))


REFUND_FIELDS = ("driver_id", "refund_id", "amount_fen", "reason")


def refund(request: Request, who: Principal, trade_no: str) -> Response:
    order = order_row(request, who, trade_no)  # out of scope: 404 before anything else
    form = posted(request)
    if not order_detail.refundable(request, order):
        raise ApiError(409, "not_refundable", "this order has no driver, or this console no payment channels")
    try:
        attempt = int(form.get("attempt", ""))
        if not 1 <= attempt <= order_detail.MAX_REFUNDS:
            raise ValueError
    except ValueError:
        return order_page(request, who, trade_no, 409, form, refused="reload the page and ask again")
    errors: dict[str, str] = {}
    values: dict[str, Any] = {"driver_id": order["driver_id"], "refund_id": order_detail.refund_id(order, attempt),
                              "reason": form.get("reason", "")}
    try:
        values["amount_fen"] = yuan_str_to_fen(form.get("amount", "").strip())
    except ValueError as exc:
        errors["amount"] = str(exc)
    try:
        body = validated(RefundRequest, values, REFUND_FIELDS)
    except Invalid as exc:
        for name, message in exc.fields.items():
            errors.setdefault("amount" if name == "amount_fen" else name, message)
    if errors:
        return order_page(request, who, trade_no, 422, form, errors)
    try:
        refund_driver(request, who, body)
    except NotFound:
        raise
    except (DomainError, ApiError) as exc:
        if isinstance(exc, ApiError) and exc.status != 409:
            raise
        return order_page(request, who, trade_no, 409, form, refused=exc.message)
    return see_other(url(f"/orders/{trade_no}", refunded=attempt))


@router.post("/orders/{trade_no}/refund")
async def refund_order(request: Request, who: Operator, trade_no: str) -> Response:
    require(who, TENANT_ADMIN)
    return await run_in_threadpool(refund, request, who, trade_of(trade_no))

