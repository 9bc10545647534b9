"""The driver H5 pages (phone first), part one: signing in and out, home, wallet, top-up, refund, history.

What a mini-program (or a WeChat official-account page) shows a driver, as server-rendered pages under
``/console/h5``. Every read and every action is the driver API's own: sign-in through
``DriverIdentity.login`` (the same WeChat / Alipay adapters), the wallet as ``GET /driver/wallet``
reads it, top-up and refund through the ``PaymentService`` (the payment platform's prepay, then its
signed notification to ``/pay/...``), history from ``DriverSessions.history`` (the orders view).
Charging itself (the gun page, start, the live session, stop, the bill) is ``h5_charge.py``.
The driver's cookie and who may see what: ``adapters/web/driver.py``.
"""

from __future__ import annotations

import re
from typing import Any, Literal
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from adapters.api.driver.identity import DriverPrincipal
from adapters.api.driver.sessions import InvalidQrCode, parse_qr
from adapters.payments.service import TopUpLimitReached
from adapters.web.driver import (DEMO_NAME, H5, demo_channel, driver_side, driver_side_of, end_driver_session,
                                 next_page, payer, signed_in, start_driver_session, to_login)
from adapters.web.forms import path_id
from adapters.web.render import render, see_other
from adapters.web.session import keep_pre_session, posted
from domain.errors import DomainError, NotFound
from domain.money import yuan_str_to_fen
from domain.payment import MAX_TOP_UP_FEN

MAX_REFUND_FEN = 10**10  # as the driver API's refund body takes it
router = APIRouter()
qr_router = APIRouter(include_in_schema=False)
CHANNEL = re.compile(r"^[A-Za-z0-9_-]{1,32}$")  # as the driver API's login path takes it


def page(request: Request, template: str, driver: DriverPrincipal | None, status: int = 200,
         **values: Any) -> Response:
    response = render(request, f"h5/{template}", status=status, driver=driver, h5=H5, **values)
    keep_pre_session(request, response)
    return response


def login_page(request: Request, status: int = 200, form: dict[str, str] | None = None, demo: bool = False,
               target: str | None = None, refused: str | None = None) -> Response:
    return page(request, "login.html", signed_in(request) if status == 200 else None, status, form=form, demo=demo,
                next=next_page(target), refused=refused)


def h5_error(request: Request, driver: DriverPrincipal | None, status: int, title: str, text: str) -> Response:
    return page(request, "error.html", driver, status, title=title, text=text)


# ---- a gun's printed QR code, opened in a phone's browser ------------------------------------------------
@qr_router.get("/c/{code}")
async def printed_qr(code: str) -> Response:
    """``https://<host>/c/<pile><gun>`` (what the driver API's QR lookup reads) goes to the gun's H5 page."""
    try:
        pile_no, gun_no = parse_qr(code)
    except InvalidQrCode:
        raise NotFound("not a gun's QR code") from None
    return RedirectResponse(f"{H5}/c/{pile_no}{gun_no:02d}", status_code=303)


# ---- signing in and out -----------------------------------------------------------------------------------
@router.get("/h5/login")
async def login_choice(request: Request) -> Response:
    """Where a driver without a session lands: sign in from the operator's mini-program (or the demo)."""
    return login_page(request, demo=demo_channel(request) is not None, target=request.query_params.get("next"))


def channel_form(request: Request, provider: str, tenant: str, app: str) -> tuple[str, UUID, str]:
    if provider not in ("wechat", "alipay") or not CHANNEL.match(app):
        raise NotFound("no such sign-in")
    return provider, path_id(tenant, "tenant"), app


@router.get("/h5/login/{provider}/{tenant}/{app}")
async def login_form(request: Request, provider: str, tenant: str, app: str) -> Response:
    """The page the mini-program's web-view opens with its login code (``wx.login`` / ``my.getAuthCode``)."""
    provider, tenant_id, app = channel_form(request, provider, tenant, app)
    code = request.query_params.get("code", "")[:256]
    return login_page(request, form={"action": f"{H5}/login/{provider}/{tenant_id}/{app}", "code": code,
                                     "provider": provider}, target=request.query_params.get("next"))


@router.post("/h5/login/{provider}/{tenant}/{app}")
async def login(request: Request, provider: str, tenant: str, app: str) -> Response:
    provider, tenant_id, app = channel_form(request, provider, tenant, app)
    form = posted(request)
    side = await driver_side_of(request, tenant_id)
    try:
        done = await run_in_threadpool(side.identity.login, provider, tenant_id, app, form.get("code", "")[:256])
    except DomainError as exc:  # a refused code, an unknown channel: the form again, with the reason
        return login_page(request, 409, {"action": f"{H5}/login/{provider}/{tenant_id}/{app}", "code": "",
                                         "provider": provider}, target=form.get("next"), refused=exc.message)
    response = see_other(next_page(form.get("next")))
    start_driver_session(request, response, done.token, done.expires_at)
    return response


@router.post("/h5/login/demo")
async def demo_login(request: Request) -> Response:
    """Only where ``CHARGELEDGER_H5_DEMO_LOGIN`` configures it: a driver ``demo-<name>`` at that channel."""
    where = demo_channel(request)
    if where is None:
        raise NotFound("no demo login here")
    form = posted(request)
    name = form.get("name", "").strip().lower() or "driver"
    if not DEMO_NAME.match(name):
        return login_page(request, 422, demo=True, target=form.get("next"), refused="a-z, 0-9 and -, at most 32")
    tenant_id, channel = where
    side = await driver_side_of(request, tenant_id)
    driver_id = f"wechat:{channel}:demo-{name}"
    await run_in_threadpool(side.identity.open_wallet, tenant_id, driver_id)
    token, expires = side.identity.tokens.issue(tenant_id, driver_id)
    response = see_other(next_page(form.get("next")))
    start_driver_session(request, response, token, expires)
    return response


@router.post("/h5/logout")
async def logout(request: Request) -> Response:
    response = see_other(H5 + "/login")
    end_driver_session(request, response)
    return response


# ---- home, wallet, history ------------------------------------------------------------------------------
def wallet_of(request: Request, driver: DriverPrincipal) -> dict[str, int]:
    """The driver's wallet as ``GET /driver/wallet`` answers it."""
    side = driver_side(request, driver.tenant_id)
    w = side.payments.ledger.wallet(side.payments.wallet_id(driver.tenant_id, driver.driver_id))
    return {"available_fen": w.available, "held_fen": w.held, "refund_pending_fen": w.refund_pending,
            "arrears_fen": w.arrears}


def recent(request: Request, driver: DriverPrincipal, before: int | None = None, limit: int = 5) -> dict[str, Any]:
    side = driver_side(request, driver.tenant_id)  # the driver's tenant's shard: its orders view
    return side.sessions.history(side.pool, driver, before, limit)  # type: ignore[no-any-return]


def home_page(request: Request, driver: DriverPrincipal, status: int = 200, problem: str | None = None) -> Response:
    history = recent(request, driver)
    open_now = [s for s in history["sessions"] if s["state"] in ("requested", "starting", "charging", "stopping")]
    return page(request, "home.html", driver, status, wallet=wallet_of(request, driver), open_now=open_now,
                problem=problem)


@router.get("/h5/")
async def home(request: Request) -> Response:
    if (driver := signed_in(request)) is None:
        return to_login(request)
    return await run_in_threadpool(home_page, request, driver)


@router.get("/h5/gun")
async def gun_by_code(request: Request) -> Response:
    """The home page's "enter the gun's code" form: the QR content or its 16 digits."""
    if (driver := signed_in(request)) is None:
        return to_login(request)
    try:
        pile_no, gun_no = parse_qr(request.query_params.get("code", "")[:300])
    except InvalidQrCode:
        return await run_in_threadpool(home_page, request, driver, 422, "h5.bad_code")
    return see_other(f"{H5}/c/{pile_no}{gun_no:02d}")


def wallet_page(request: Request, driver: DriverPrincipal, status: int = 200, **notes: Any) -> Response:
    return page(request, "wallet.html", driver, status, wallet=wallet_of(request, driver),
                max_top_up=MAX_TOP_UP_FEN, notes=notes)


@router.get("/h5/wallet")
async def wallet(request: Request) -> Response:
    if (driver := signed_in(request)) is None:
        return to_login(request)
    return await run_in_threadpool(wallet_page, request, driver)


def amount_of(form: dict[str, str], field: str, most: int, optional: bool = False) -> int | None:
    """Yuan typed in a form, as fen; ValueError for anything but a plain amount above 0 and at most ``most``."""
    text = form.get(field, "").strip()
    if optional and text == "":
        return None
    fen = yuan_str_to_fen(text)
    if fen <= 0 or fen > most:
        raise ValueError(text)
    return fen


@router.post("/h5/wallet/top-ups")
async def top_up(request: Request) -> Response:
    if (driver := signed_in(request)) is None:
        return to_login(request)
    try:
        amount = amount_of(posted(request), "amount", MAX_TOP_UP_FEN)
    except ValueError:
        return await run_in_threadpool(wallet_page, request, driver, 422, top_up_error="h5.bad_amount")
    side = await driver_side_of(request, driver.tenant_id)
    try:
        done = await run_in_threadpool(side.payments.create_top_up, payer(driver), amount)
    except TopUpLimitReached as exc:
        return await run_in_threadpool(wallet_page, request, driver, 429, refused=exc.message)
    except DomainError as exc:
        return await run_in_threadpool(wallet_page, request, driver, 409, refused=exc.message)
    return see_other(f"{H5}/wallet/top-ups/{done.out_trade_no}")


def top_up_page(request: Request, driver: DriverPrincipal, out_trade_no: str, part: bool) -> Response:
    if len(out_trade_no) > 64 or not out_trade_no.replace("-", "").replace("_", "").isalnum():
        raise NotFound(f"no top-up {out_trade_no[:64]}")
    order = driver_side(request, driver.tenant_id).payments.order_of(payer(driver), out_trade_no).as_dict()
    return page(request, "top_up_state.html" if part else "top_up.html", driver, order=order,
                wallet=wallet_of(request, driver))


@router.get("/h5/wallet/top-ups/{out_trade_no}")
async def top_up_state(request: Request, out_trade_no: str, part: Literal["status"] | None = None) -> Response:
    """The top-up waiting for the platform's notification; the status part refreshes itself (htmx) until paid."""
    if (driver := signed_in(request)) is None:
        return to_login(request)
    try:
        return await run_in_threadpool(top_up_page, request, driver, out_trade_no, part == "status")
    except NotFound:
        return h5_error(request, driver, 404, "h5.not_found", "h5.not_found_text")


@router.post("/h5/wallet/refunds")
async def refund(request: Request) -> Response:
    if (driver := signed_in(request)) is None:
        return to_login(request)
    try:
        amount = amount_of(posted(request), "amount", MAX_REFUND_FEN, optional=True)
    except ValueError:
        return await run_in_threadpool(wallet_page, request, driver, 422, refund_error="h5.bad_refund")
    try:
        side = await driver_side_of(request, driver.tenant_id)
        refunds = await run_in_threadpool(side.payments.request_refund, payer(driver), amount)
    except DomainError as exc:
        return await run_in_threadpool(wallet_page, request, driver, 409, refused=exc.message)
    return await run_in_threadpool(wallet_page, request, driver, refunds=[r.__dict__ for r in refunds])


@router.get("/h5/history")
async def history(request: Request, before: int | None = None) -> Response:
    if (driver := signed_in(request)) is None:
        return to_login(request)
    if before is not None and not 0 < before < 2**63:
        before = None
    found = await run_in_threadpool(recent, request, driver, before, 20)
    return page(request, "history.html", driver, sessions=found["sessions"], next=found["next"])
