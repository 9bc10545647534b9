"""Peers (互联互通): the tenant's T/CEC peer platforms, each link's health and what each peer owes us and
we owe it per China day; and one peer's roaming orders in both directions.

Everything is read by the operator API's own functions (docs/interconnect.md, "Peers in the operator
API"): the peers with their health by ``adapters.postgres.peer_links.peers_with_health`` (the query
``chargeledger peers outbox`` runs too), the settlement by the API's ``settlement`` over its default
window (``settlement_days``: the last 31 China days), one peer by ``peer_row`` (another tenant's is 404)
and its orders by ``peer_orders``, paged newest first on the Sessions ``seq`` with the API's cursor, as
the orders page pages. Who may is the API's ``tenant_links``: a tenant admin; an agent and a platform
admin get the 403 page (a peer's orders and money span every station of the tenant), and the console
shows the link to tenant admins only. No secret of a link is read here: peer_links leaves the sealed
credentials out.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool

from adapters.api.shards import pool_of
from adapters.api.auth import Principal
from adapters.api.errors import ApiError
from adapters.api.operator.deps import now
from adapters.api.operator.orders import decode_cursor, encode_cursor
from adapters.api.operator.peers import (OPERATOR_ID, peer_orders, peer_row, settlement, settlement_days,
                                         tenant_links)
from adapters.postgres.peer_links import link_health, peers_with_health
from adapters.web.render import render, url
from adapters.web.session import Operator
from domain.errors import NotFound

router = APIRouter()
NAV = "/peers"
PAGE = 50
ROLES = ("customer", "infrastructure", "regulator")
DIRECTIONS = ("as_infrastructure", "as_customer")
# an order's states in either direction: the orders view's (the peer's users on our piles) and the
# roaming_orders view's (our drivers on its piles)
STATES = ("requested", "starting", "charging", "stopping", "finished", "failed", "abandoned", "settled")
OPERATOR = TypeAdapter(OPERATOR_ID)


def duration(seconds: int) -> str:
    """A lag as hours, minutes and seconds (``1 h 0 min``, ``1 min 35 s``, ``0 s``)."""
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def peers_page(request: Request, who: Principal) -> Response:
    tenant_id = tenant_links(who)
    day_from, day_to = settlement_days(None, None)
    with pool_of(request).connection() as conn:
        peers = peers_with_health(conn, tenant_id, now())
        days = settlement(conn, tenant_id, day_from, day_to)
    days.sort(key=lambda d: d["day"], reverse=True)  # newest day first within each peer (a stable sort)
    days.sort(key=lambda d: d["operator_id"])
    return render(request, "peers/list.html", who, nav=NAV, peers=peers, days=days, day_from=day_from,
                  day_to=day_to, names={p["operator_id"]: p["name"] for p in peers}, duration=duration)


@router.get("/peers")
async def peers(request: Request, who: Operator) -> Response:
    return await run_in_threadpool(peers_page, request, who)


def operator_of(operator_id: str) -> str:
    """An OperatorID from the path (the API's type), or a page that does not exist."""
    try:
        return str(OPERATOR.validate_python(operator_id))
    except ValidationError:
        raise NotFound(f"no peer {operator_id[:40]}") from None


def peer_page(request: Request, who: Principal, operator_id: str) -> Response:
    tenant_id = tenant_links(who)  # an agent: 403 before anything is read
    cursor = request.query_params.get("cursor") or None
    error = None
    try:
        before = decode_cursor(cursor)
    except ApiError as exc:  # a cursor this page did not make
        before, error = None, exc.message
    rows: list[dict[str, Any]] = []
    with pool_of(request).connection() as conn:
        peer = peer_row(conn, tenant_id, operator_of(operator_id))
        health = {**link_health(conn, [peer["peer_id"]], now())[peer["peer_id"]],
                  "last_inbound_at": peer["last_inbound_at"]}
        if error is None:
            rows = peer_orders(conn, tenant_id, peer, None, None, before, PAGE)
    path = f"/peers/{peer['operator_id']}"
    next_url = url(path, cursor=encode_cursor(rows[-1]["seq"])) if len(rows) == PAGE else None
    return render(request, "peers/one.html", who, nav=NAV, status=422 if error else 200, peer=peer, health=health,
                  rows=rows, error=error, next_url=next_url, first_url=url(path) if cursor else None,
                  duration=duration, states=STATES)


@router.get("/peers/{operator_id}")
async def peer(request: Request, who: Operator, operator_id: str) -> Response:
    return await run_in_threadpool(peer_page, request, who, operator_id)
