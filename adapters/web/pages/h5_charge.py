"""The driver H5 pages, part two: charging. A gun's page (from its QR link), start, the session live,
stop, and the bill per tier.

Every call is the driver API's own service (``DriverSessions``): the QR lookup (station, gun status,
the tariff now and next), the start (hold and session in one transaction; the form's Idempotency-Key
makes a double submit start once), the session (404 unless it is on this driver's wallet: another
driver's session page is the same 404 as one that does not exist), the stop. The live part reads
``DriverSessions.session`` as the driver API's stream does, every ``DriverApiSettings.stream_poll``
seconds, and sends the session's HTML (event ``session``) only when the session moved; when it ends
it sends the final state with the bill and ``end`` (the page closes the stream: ``sse-close``). It
takes one of the driver's stream slots (``max_streams_per_driver``, as the API's stream) and counts
against the console's ``max_streams``.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from adapters.api.driver.identity import DriverPrincipal
from adapters.api.driver.sessions import InvalidQrCode, session_view, utcnow
from adapters.api.driver.streams import SlotStream
from adapters.api.errors import ApiError
from adapters.web.driver import H5, driver_side, driver_side_of, signed_in, to_login
from adapters.web.pages.h5 import h5_error, page, wallet_of
from adapters.web.live import sse
from adapters.web.render import fragment, see_other
from adapters.web.session import posted, settings_of
from domain.errors import DomainError, NotFound
from domain.money import fixed_point_str

router = APIRouter()
TIERS = {"sharp": "h5.tier.sharp", "peak": "h5.tier.peak", "flat": "h5.tier.flat", "valley": "h5.tier.valley"}
GUN_STATES = {"idle": "gun.idle", "charging": "gun.charging", "offline": "gun.offline", "fault": "gun.fault",
              "disabled": "h5.gun.disabled"}
SESSION_STATES = {"requested": "h5.state.requested", "starting": "h5.state.starting", "charging": "h5.state.charging",
                  "stopping": "h5.state.stopping", "finished": "h5.state.finished", "failed": "h5.state.failed",
                  "abandoned": "h5.state.abandoned"}


# ---- figures as a driver reads them --------------------------------------------------------------------
def trimmed(text: str) -> str:
    """An exact decimal string without the zeros after the second decimal: '1.50000' -> '1.50'."""
    whole, _, part = text.partition(".")
    return f"{whole}.{(part.rstrip('0') or '').ljust(2, '0')}"


def nano_yuan(nano: int) -> str:
    return trimmed(fixed_point_str(nano, 9))


def clock(iso: str) -> str:
    return datetime.fromisoformat(iso).strftime("%H:%M")


def period(p: dict[str, Any]) -> dict[str, Any]:
    return {"from": clock(p["from"]), "until": clock(p["until"]), "tier_key": TIERS[p["tier"]],
            "electricity": trimmed(fixed_point_str(p["electricity_price"], 5)),
            "service": trimmed(fixed_point_str(p["service_price"], 5)), "total": trimmed(p["yuan_per_kwh"])}


def elapsed(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def live_view(view: dict[str, Any]) -> dict[str, Any]:
    """``session_view`` (what the driver API answers), with what the page shows formatted."""
    bill = view["bill"]
    tiers = [] if bill is None else [
        {**t, "tier_key": TIERS[t["tier"]], "price": trimmed(fixed_point_str(t["electricity_price"] + t["service_price"], 5)),
         "electricity": nano_yuan(t["electricity_nano"]), "service": nano_yuan(t["service_nano"]),
         "amount": nano_yuan(t["electricity_nano"] + t["service_nano"])} for t in bill["tiers"] if t["energy"]]
    power = view["power_w"]
    return {**view, "state_key": SESSION_STATES.get(view["state"], "h5.state.requested"), "tiers": tiers,
            "power_kw": None if power is None else fixed_point_str(power, 3), "elapsed": elapsed(view["elapsed_s"])}


# ---- a gun, and starting on it ---------------------------------------------------------------------------
def gun_page(request: Request, driver: DriverPrincipal, code: str, status: int = 200,
             refused: str | None = None) -> Response:
    side = driver_side(request, driver.tenant_id)
    gun = side.sessions.lookup(driver, code)
    tariff = gun["tariff"]
    wallet = wallet_of(request, driver)
    rules = gun["start"]
    return page(request, "gun.html", driver, status, gun=gun, state_key=GUN_STATES.get(gun["gun"]["status"]),
                now=None if tariff is None else period(tariff["now"]),
                next=[] if tariff is None else [period(p) for p in tariff["next"][:3]],
                wallet=wallet, enough=wallet["available_fen"] >= rules["min_start_fen"], rules=rules,
                key=secrets.token_urlsafe(18), refused=refused)


@router.get("/h5/c/{code}")
async def gun(request: Request, code: str) -> Response:
    """A gun's page, from its QR link: the station, the gun now, the tariff now and next, the wallet, start."""
    if (driver := signed_in(request)) is None:
        return to_login(request)
    try:
        return await run_in_threadpool(gun_page, request, driver, code[:300])
    except (NotFound, InvalidQrCode):
        return h5_error(request, driver, 404, "h5.no_gun", "h5.no_gun_text")


@router.post("/h5/sessions")
async def start(request: Request) -> Response:
    if (driver := signed_in(request)) is None:
        return to_login(request)
    form = posted(request)
    pile_no, gun_no, key = form.get("pile_no", ""), form.get("gun_no", ""), form.get("key", "")
    code = f"{pile_no}{gun_no.zfill(2)}"
    if not (pile_no.isdigit() and len(pile_no) == 14 and gun_no.isdigit() and 1 <= int(gun_no) <= 99
            and 8 <= len(key) <= 64 and all(c.isalnum() or c in "-_" for c in key)):
        return h5_error(request, driver, 400, "h5.bad_form", "h5.bad_form_text")
    side = await driver_side_of(request, driver.tenant_id)
    try:
        trade_no, _, _ = await run_in_threadpool(side.sessions.start, driver, pile_no, int(gun_no), key)
    except NotFound:
        return h5_error(request, driver, 404, "h5.no_gun", "h5.no_gun_text")
    except DomainError as exc:  # not enough balance, the gun cannot start now: the gun page, with the reason
        try:
            return await run_in_threadpool(gun_page, request, driver, code, 409, exc.message)
        except NotFound:
            return h5_error(request, driver, 404, "h5.no_gun", "h5.no_gun_text")
    return see_other(f"{H5}/sessions/{trade_no}")


# ---- the session: live, stop, the bill -------------------------------------------------------------------
def session_page(request: Request, driver: DriverPrincipal, trade_no: str, status: int = 200,
                 refused: str | None = None) -> Response:
    session = driver_side(request, driver.tenant_id).sessions.session(driver, trade_no)
    return page(request, "session.html", driver, status, s=live_view(session_view(session, utcnow())),
                refused=refused)


def valid_trade(trade_no: str) -> bool:
    return 0 < len(trade_no) <= 64 and all(c.isalnum() or c in "_.:@-" for c in trade_no)


@router.get("/h5/sessions/{trade_no}")
async def session(request: Request, trade_no: str) -> Response:
    if (driver := signed_in(request)) is None:
        return to_login(request)
    try:
        if not valid_trade(trade_no):
            raise NotFound(trade_no[:64])
        return await run_in_threadpool(session_page, request, driver, trade_no)
    except NotFound:
        return h5_error(request, driver, 404, "h5.not_found", "h5.not_found_text")


@router.post("/h5/sessions/{trade_no}/stop")
async def stop(request: Request, trade_no: str) -> Response:
    if (driver := signed_in(request)) is None:
        return to_login(request)
    side = await driver_side_of(request, driver.tenant_id)
    try:
        if not valid_trade(trade_no):
            raise NotFound(trade_no[:64])
        await run_in_threadpool(side.sessions.stop, driver, trade_no)
    except NotFound:
        return h5_error(request, driver, 404, "h5.not_found", "h5.not_found_text")
    except DomainError as exc:
        return await run_in_threadpool(session_page, request, driver, trade_no, 409, exc.message)
    return see_other(f"{H5}/sessions/{trade_no}")


@router.get("/h5/sessions/{trade_no}/live")
async def live(request: Request, trade_no: str) -> Response:
    if (driver := signed_in(request)) is None or not valid_trade(trade_no):
        return Response(status_code=204)  # 204: an EventSource stops asking
    side = await driver_side_of(request, driver.tenant_id)
    try:
        first = await run_in_threadpool(side.sessions.session, driver, trade_no)  # 404 before any byte
    except NotFound:
        return Response(status_code=404)
    settings = settings_of(request)
    if request.app.state.web_streams >= settings.max_streams:
        raise ApiError(503, "too_many_streams", "too many live pages are open; reload later")
    release = side.sessions.streams.take(driver)  # 429 beyond the driver's streams, as the API's
    poll = side.sessions.settings.stream_poll

    async def events() -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        request.app.state.web_streams += 1
        try:
            current, version, quiet = first, None, loop.time()
            while True:
                if current.version != version:
                    version, quiet = current.version, loop.time()
                    shown = live_view(session_view(current, utcnow()))
                    yield sse("session", fragment(request, "h5/live.html", s=shown, h5=H5))
                    if not current.is_open:
                        yield "event: end\ndata: \n\n"
                        return
                elif loop.time() - quiet >= side.sessions.settings.stream_keepalive:
                    yield ": keep-alive\n\n"
                    quiet = loop.time()
                if await request.is_disconnected():
                    return
                await asyncio.sleep(poll)
                current = await run_in_threadpool(side.sessions.session, driver, trade_no)
        finally:
            request.app.state.web_streams -= 1

    return SlotStream(events(), release, media_type="text/event-stream",
                      headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
