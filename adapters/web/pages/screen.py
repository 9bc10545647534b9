"""The 经营大屏 (big screen): one tenant's network on one full-screen page, live.

It reads the operator API's own query (``adapters.api.operator.dashboard``: ``screen_scope`` for whose
figures, ``screen_json`` for the figures, the same dict ``GET /operator/v1/dashboard/screen``
answers). A tenant admin sees their tenant, an agent their stations, a platform admin picks a tenant
(``?tenant=``; another tenant's screen is a 404 for anybody else).

Live: the page opens one stream (``/console/screen/live``, htmx's SSE extension). One loop per
connection re-reads the figures every ``WebSettings.screen_tick`` seconds (default 2), renders each
section (piles, today, month, top stations, alarms, clock) and sends only the sections whose HTML
changed, as the event ``screen-<section>`` that the section swaps itself with; the power curve goes
as ``screen-power`` whose data is JSON, which ``static/screen.js`` hands to ECharts (``setOption``).
The loop checks the session at every read (signed out or disabled: the stream says ``signed-out``
and ends), ends after ``stream_lifetime`` (the browser reconnects and gets every section again) or
when the browser goes, and counts against the console's ``max_streams``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool

from adapters.api.auth import AuthError, Principal
from adapters.api.errors import ApiError
from adapters.api.operator.dashboard import Scope, screen_json, screen_scope
from adapters.api.operator.deps import query
from adapters.web.forms import path_id
from adapters.web.i18n import language, message
from adapters.web.live import sse
from adapters.web.render import fragment, render, url
from adapters.web.session import Operator, operator, settings_of
from domain.errors import NotFound
from projections.screen import Ranking

router = APIRouter()
SECTIONS = ("piles", "today", "month", "top", "alarms", "clock")
KEEPALIVE = 15.0  # seconds of silence before a comment line keeps proxies from closing the stream
ALARM_KINDS = {"fault": "screen.alarm.fault", "lost_heartbeat": "screen.alarm.lost_heartbeat",
               "pile_offline": "screen.alarm.pile_offline", "frame_refused": "screen.alarm.frame_refused",
               "session_failed": "screen.alarm.session_failed", "session_abandoned": "screen.alarm.session_abandoned",
               "session_fault": "screen.alarm.session_fault", "meter_anomaly": "screen.alarm.meter_anomaly",
               "pricing_difference": "screen.alarm.pricing_difference"}


# ---- figures as the screen shows them: integers formatted exactly, never through a float ----------------
def grouped(n: int) -> str:
    return f"{n:,}"


def kwh(energy: int) -> str:
    """0.0001 kWh as kWh with one decimal (truncated) and thousands separators: 12345678 -> '1,234.5'."""
    return f"{energy // 10000:,}.{energy % 10000 // 1000}"


def kw(watts: int) -> str:
    return f"{watts // 1000:,}.{watts % 1000 // 100}"


def yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100:,}.{abs(fen) % 100:02d}"


def percent(fraction: float) -> str:
    return f"{fraction * 100:.1f}"


def chart(figures: dict[str, Any], lang: str) -> str:
    """The power curve as ECharts wants it: local HH:MM labels and kW (display only)."""
    zone = ZoneInfo(figures["zone"])
    points = figures["power_curve"]
    return json.dumps({"name": message(lang, "screen.power_kw"),
                       "labels": [datetime.fromisoformat(p["at"]).astimezone(zone).strftime("%H:%M") for p in points],
                       "kw": [round(p["power_w"] / 1000, 1) for p in points]}, separators=(",", ":"))


def view(figures: dict[str, Any], scope: Scope) -> dict[str, Any]:
    """What the section templates read: the figures, already formatted."""
    zone = ZoneInfo(figures["zone"])
    at = datetime.fromisoformat(figures["at"]).astimezone(zone)
    alarms = [{**a, "kind_key": ALARM_KINDS.get(a["kind"]), "at": datetime.fromisoformat(a["raised_at"])
               .astimezone(zone).strftime("%H:%M:%S")} for a in figures["alarms"]]
    top = [{**s, "kwh": kwh(s["energy"]), "yuan": yuan(s["revenue_fen"])} for s in figures["top_stations"]["items"]]
    p, g, d, m = figures["piles"], figures["guns"], figures["today"], figures["month"]
    return {
        "clock": at.strftime("%Y-%m-%d %H:%M"), "zone": figures["zone"], "tenant": scope.name,
        "piles": {"online": grouped(p["online"]), "offline": grouped(p["offline"]), "faulted": grouped(p["faulted"]),
                  "total": grouped(p["total"]), "charging": grouped(g["charging"]), "guns": grouped(g["total"]),
                  "power": kw(figures["power_now"]["power_w"])},
        "today": {"kwh": kwh(d["energy"]), "yuan": yuan(d["revenue_fen"]), "sessions": grouped(d["sessions"]),
                  "utilisation": percent(d["utilisation"])},
        "month": {"kwh": kwh(m["energy"]), "yuan": yuan(m["revenue_fen"]), "sessions": grouped(m["sessions"])},
        "top": top, "by": figures["top_stations"]["by"], "alarms": alarms,
    }


def sections(request: Request, figures: dict[str, Any], scope: Scope) -> dict[str, str]:
    shown = view(figures, scope)
    return {name: fragment(request, f"screen/{name}.html", s=shown) for name in SECTIONS}


# ---- the page ---------------------------------------------------------------------------------------------
def chosen(request: Request) -> tuple[UUID | None, Ranking]:
    """The tenant (``?tenant=``) and ranking (``?by=revenue``, else energy) the page was asked for."""
    tenant = request.query_params.get("tenant") or None
    by: Ranking = "revenue" if request.query_params.get("by") == "revenue" else "energy"
    return (path_id(tenant, "tenant") if tenant else None), by


def screen_page(request: Request, who: Principal) -> Response:
    tenant, by = chosen(request)
    if who.tenant_id is None and tenant is None:  # a platform admin: which tenant?
        tenants = query(request, "SELECT tenant_id, name FROM catalogue_tenants ORDER BY name, tenant_id", {})
        return render(request, "screen/pick.html", who, nav="/screen", tenants=tenants)
    scope = screen_scope(request, who, tenant)
    figures = screen_json(request, scope, None, by)
    live = url("/screen/live", tenant=tenant, by=by)
    parts = {name: Markup(html) for name, html in sections(request, figures, scope).items()}  # noqa: S704 (ours, escaped)
    return render(request, "screen/page.html", who, parts=parts,
                  chart=chart(figures, language(request)), live=live, tenant=scope.name, by=by,
                  tenant_query="" if tenant is None else str(tenant))


@router.get("/screen")
async def screen(request: Request, who: Operator) -> Response:
    return await run_in_threadpool(screen_page, request, who)


# ---- the live stream ------------------------------------------------------------------------------------
def changed(request: Request, who: Principal, tenant: UUID | None, by: Ranking, shown: dict[str, str]) -> list[str]:
    """One tick: the figures read again, and an event for each section that is not what was last sent."""
    scope = screen_scope(request, who, tenant)
    figures = screen_json(request, scope, None, by)
    now = {**sections(request, figures, scope), "power": chart(figures, language(request))}
    events = []
    for name, html in now.items():
        if shown.get(name) != html:
            shown[name] = html
            events.append(sse(f"screen-{name}", html))
    return events


@router.get("/screen/live")
async def live(request: Request, who: Operator) -> StreamingResponse:
    tenant, by = chosen(request)
    if who.tenant_id is None and tenant is None:
        raise ApiError(404, "not_found", "pick a tenant")
    await run_in_threadpool(screen_scope, request, who, tenant)  # 404 before any byte is streamed
    settings = settings_of(request)
    if request.app.state.web_streams >= settings.max_streams:
        raise ApiError(503, "too_many_streams", "too many live pages are open; reload later")

    async def events() -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        shown: dict[str, str] = {}  # each section's HTML as last sent on this connection
        ends, quiet = loop.time() + settings.stream_lifetime, loop.time()
        request.app.state.web_streams += 1  # counted here, where the finally below is sure to run
        try:
            while loop.time() < ends and not await request.is_disconnected():
                try:
                    current = await operator(request)
                    sent = await run_in_threadpool(changed, request, current, tenant, by, shown)
                except (AuthError, NotFound):  # signed out, or the scope no longer holds it
                    yield "event: signed-out\ndata: \n\n"
                    return
                for event in sent:
                    yield event
                if sent:
                    quiet = loop.time()
                elif loop.time() - quiet >= KEEPALIVE:
                    yield ": keep-alive\n\n"
                    quiet = loop.time()
                await asyncio.sleep(settings.screen_tick)
        finally:
            request.app.state.web_streams -= 1

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
