"""HTTP for payments: the platforms' notification callbacks and the driver's login and wallet endpoints.

Mount with ``app.include_router(payment_router(service, identity))`` on the app of
``adapters.api.app.create_app``, whose handlers turn ``DomainError`` into 404/409 and ``AuthError`` into
401/403 with stable codes. The driver endpoints take the tenant and the driver from the bearer
token only (``role: driver``). The callbacks answer each platform the way it expects: WeChat Pay
204 on success and 4xx/5xx with ``{"code": "FAIL", "message": ...}`` otherwise (it retries); Alipay
the plain body ``success``, anything else makes it retry. A callback body is read up to
:data:`CALLBACK_MAX_BYTES` (a real notification is 1-2 KB) under :data:`CALLBACK_PREFIX`; a larger one is
refused with 413 ``body_too_large`` by the app's body limit (``adapters.api.guards.BodyLimit``) before
the rest is read, whatever Content-Length says.

Each top-up calls the platform's prepay, so a driver's top-ups are limited (``TopUpLimits``: unpaid ones
at once, and per hour): beyond them, 429 ``too_many_pending_top_ups`` / ``too_many_top_ups`` with
``Retry-After``, before the platform is called.
"""

# no `from __future__ import annotations`: FastAPI must see the dependency types defined inside
# payment_router, which string annotations would hide from it
import logging
from collections.abc import Callable
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from adapters.api import inputs as t
from adapters.api.inputs import WRONG_ROLE, error, responses
from adapters.api.driver.identity import DriverIdentity, DriverPrincipal, bearer_driver
from adapters.payments.base import InvalidSignature, NotificationRefused
from adapters.payments.service import Payer, PaymentService, TopUpLimitReached
from domain.errors import DomainError, NotFound
from domain.payment import MAX_TOP_UP_FEN
from domain.wallet import Wallet, posting_sets_of

log = logging.getLogger("chargeledger.payments")
CALLBACK_PREFIX = "/pay/"
CALLBACK_MAX_BYTES = 8192
TENANT = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
OUT_TRADE_NO = "T20261122014000a1b2c3d4e5f6"
DRIVER = (401, 403, 422)  # what every driver endpoint can answer besides its own
E403 = {"e403": WRONG_ROLE}


class LoginBody(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"code": "0a3Xk2ll2..."}]})
    code: t.text(256, min_length=1) = Field(  # type: ignore[valid-type]
        description="wx.login code / my.getAuthCode authCode")


class TopUpBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [{"amount_fen": 5000}]})
    amount_fen: int = Field(gt=0, le=MAX_TOP_UP_FEN)


class RefundBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [{"amount_fen": 1500}]})
    amount_fen: int | None = Field(default=None, gt=0, le=10**10, description="default: the whole available balance")


def _status_of(error: Exception) -> int:
    if isinstance(error, InvalidSignature):
        return 401
    if isinstance(error, NotificationRefused):  # stale, wrong app id, unreadable amount
        return 400
    if isinstance(error, NotFound):
        return 404
    if isinstance(error, DomainError):
        return 409 if error.code != "payment_amount_mismatch" else 400
    return 500


WECHAT_FAIL = {"code": "FAIL", "message": "notification signature does not verify"}


def callback_docs(provider: str) -> dict[int | str, Any]:
    """The answers a platform gets: WeChat 204 / JSON FAIL; Alipay text ``success`` / ``fail``."""
    if provider == "wechat":
        fail = {"description": "refused (WeChat retries)", "model": t.ErrorBody,
                "content": {"application/json": {"example": WECHAT_FAIL}}}
        return {204: {"description": "acted on (or already was)"},
                **{code: fail for code in (400, 401, 404, 409)},
                **responses(None, 200, 413, 422)}
    fail = {"description": "refused (Alipay retries)", "content": {"text/plain": {"example": "fail"}}}
    return {200: {"description": "acted on (or already was)", "content": {"text/plain": {"example": "success"}}},
            **{code: fail for code in (400, 401, 404, 409)}, **responses(None, 200, 413, 422)}


ChannelName = Annotated[t.ChannelName, Path(description="the mini-program channel the operator configured")]


def payment_router(service: PaymentService, identity: DriverIdentity,
                   shard_of: Callable[[UUID], Any] | None = None) -> APIRouter:
    """``shard_of(tenant_id)``: that tenant's shard's ``.service`` and ``.identity`` (adapters/api/driver/sides.py);
    without it, every tenant's are ``service`` and ``identity`` (one shard)."""
    router = APIRouter(responses=t.BAD_BODY)

    def svc(tenant_id: UUID) -> PaymentService:
        return service if shard_of is None else shard_of(tenant_id).service  # type: ignore[no-any-return]

    Driver = Annotated[DriverPrincipal, Depends(bearer_driver(identity))]

    def payer(d: DriverPrincipal) -> Payer:
        return Payer(d.tenant_id, d.driver_id, d.channel, d.payer)

    # ---- login -----------------------------------------------------------------------------
    @router.post("/driver/login/{provider}/{tenant_id}/{app}", tags=["driver"],
                 responses=responses({"token": "eyJhbGciOiJIUzI1NiIs...", "expires_at": "2026-11-22T10:00:00+00:00",
                                      "driver_id": "wechat:wx-main:o6_bmjrPTlm6_2sgVt7hMZOPfL2M", "tenant_id": TENANT,
                                      "channel": "wx-main", "provider": "wechat"}, 200, 409, 422,
                                     e409=error("login_refused", "WeChat refused the login code: 40029 invalid code",
                                                {"errcode": 40029})))
    def login(provider: Literal["wechat", "alipay"], tenant_id: t.Uuid, app: ChannelName,
              body: LoginBody) -> dict[str, Any]:
        done = (identity if shard_of is None else shard_of(tenant_id).identity).login(provider, tenant_id, app,
                                                                                      body.code)
        return {"token": done.token, "expires_at": done.expires_at, "driver_id": done.principal.driver_id,
                "tenant_id": str(tenant_id), "channel": app, "provider": provider}

    # ---- wallet ----------------------------------------------------------------------------
    @router.get("/driver/wallet", tags=["driver"],
                responses=responses({"wallet_id": TENANT, "available_fen": 4500, "held_fen": 0,
                                     "refund_pending_fen": 0, "arrears_fen": 0}, 200, 401, 403, **E403))
    def wallet(d: Driver) -> dict[str, Any]:
        s = svc(d.tenant_id)
        w = s.ledger.wallet(s.wallet_id(d.tenant_id, d.driver_id))
        return {"wallet_id": str(w.id), "available_fen": w.available, "held_fen": w.held,
                "refund_pending_fen": w.refund_pending, "arrears_fen": w.arrears}

    @router.get("/driver/wallet/postings", tags=["driver"],
                responses=responses({"postings": [{"version": 2, "at": "2026-11-22T01:40:00+00:00", "kind": "ToppedUp",
                                                   "reference": OUT_TRADE_NO,
                                                   "postings": [[["clearing:wechat", 5000], ["available", -5000]]]}],
                                     "next": None}, 200, *DRIVER, **E403))
    def postings(d: Driver, limit: Annotated[t.Int, Query(ge=1, le=200)] = 50,
                 before: Annotated[t.Cursor | None, Query(description="a version from 'next'")] = None
                 ) -> dict[str, Any]:
        """The wallet's movements, newest first: one entry per wallet event, with its balanced posting sets."""
        wallet_id = Wallet.create_id(d.tenant_id, d.driver_id)
        events = list(svc(d.tenant_id).ledger.wallets.events.get(
            wallet_id, desc=True, limit=limit, lte=None if before is None else before - 1))
        items = []
        for e in events:
            sets = posting_sets_of(e)
            if sets:
                items.append({"version": e.originator_version, "at": e.timestamp, "kind": type(e).__name__,
                              "reference": getattr(e, "payment_ref", None) or getattr(e, "hold_id", None)
                              or getattr(e, "refund_id", None) or getattr(e, "reference", None),
                              "postings": sets})
        next_before = events[-1].originator_version if len(events) == limit else None
        return {"postings": items, "next": next_before}

    @router.post("/driver/wallet/top-ups", tags=["driver"], status_code=201,
                 responses=responses({"out_trade_no": OUT_TRADE_NO, "provider": "wechat", "amount_fen": 5000,
                                      "pay_params": {"package": "prepay_id=wx2017..."}}, 201, *DRIVER, 404, 409, 429,
                                     **E403, e409=error("payment_provider_error", "WeChat Pay refused the prepay: "
                                                        "400 PARAM_ERROR"),
                                     e429=error("too_many_pending_top_ups", "at most 5 unpaid top-ups at once: pay "
                                                "or wait for one", {"limit": 5})))
    def create_top_up(d: Driver, body: TopUpBody) -> Any:
        try:
            top_up = svc(d.tenant_id).create_top_up(payer(d), body.amount_fen)
        except TopUpLimitReached as refused:
            return JSONResponse(refused.as_dict(), status_code=429, headers={"Retry-After": str(refused.retry_after)})
        return {"out_trade_no": top_up.out_trade_no, "provider": top_up.provider, "amount_fen": top_up.amount_fen,
                "pay_params": top_up.pay_params}

    @router.get("/driver/wallet/top-ups/{out_trade_no}", tags=["driver"],
                responses=responses({"out_trade_no": OUT_TRADE_NO, "state": "credited", "amount_fen": 5000},
                                    200, *DRIVER, 404, **E403))
    def top_up_status(d: Driver, out_trade_no: Annotated[t.TradeNo, Path()]) -> dict[str, Any]:
        return svc(d.tenant_id).order_of(payer(d), out_trade_no).as_dict()

    @router.post("/driver/wallet/refunds", tags=["driver"],
                 responses=responses({"refunds": [{"out_trade_no": OUT_TRADE_NO, "out_refund_no": OUT_TRADE_NO
                                                   + "R1a2b3c4d", "provider": "wechat", "amount_fen": 1500,
                                                   "status": "processing", "reason": "WeChat refund PROCESSING"}]},
                                     200, *DRIVER, 409, **E403,
                                     e409=error("insufficient_funds", "cannot refund 1500 fen: 0 fen available",
                                                {"available": 0, "wanted": 1500})))
    def refund(d: Driver, body: RefundBody) -> dict[str, Any]:
        refunds = svc(d.tenant_id).request_refund(payer(d), body.amount_fen)
        return {"refunds": [r.__dict__ for r in refunds]}

    # ---- the platforms' callbacks ------------------------------------------------------------
    @router.post("/pay/wechat/notify/{tenant_id}/{app}", tags=["payment callbacks"], status_code=204,
                 responses=callback_docs("wechat"))
    async def wechat_notify(tenant_id: t.Uuid, app: ChannelName, request: Request) -> Response:
        def answer(status: int, message: str) -> Response:
            return JSONResponse({"code": "FAIL", "message": message}, status_code=status)

        body = await request.body()  # capped at CALLBACK_MAX_BYTES by the app's BodyLimit (mount_driver_api)
        headers = dict(request.headers)
        try:
            result = await run_in_threadpool(lambda: svc(tenant_id).handle_notification("wechat", tenant_id, app,
                                                                                         headers, body))
        except Exception as error:  # every refusal is answered; WeChat retries
            return _refused("wechat", tenant_id, app, error, answer)
        log.info("wechat notification %s %s", result.outcome, result.out_trade_no)
        return Response(status_code=204)

    @router.post("/pay/alipay/notify/{tenant_id}/{app}", tags=["payment callbacks"], response_class=PlainTextResponse,
                 responses=callback_docs("alipay"))
    async def alipay_notify(tenant_id: t.Uuid, app: ChannelName, request: Request) -> Response:
        def answer(status: int, message: str) -> Response:
            return PlainTextResponse("fail", status_code=status)

        body = await request.body()
        try:
            result = await run_in_threadpool(lambda: svc(tenant_id).handle_notification("alipay", tenant_id, app,
                                                                                         {}, body))
        except Exception as error:
            return _refused("alipay", tenant_id, app, error, answer)
        log.info("alipay notification %s %s", result.outcome, result.out_trade_no)
        return PlainTextResponse("success")

    return router


def _refused(provider: str, tenant_id: UUID, app: str, error: Exception,
             answer: Callable[[int, str], Response]) -> Response:
    status = _status_of(error)
    message = error.message if isinstance(error, DomainError) else "internal error"
    if status == 500:
        log.exception("%s notification for %s/%s failed", provider, tenant_id, app, exc_info=error)
    else:
        log.warning("%s notification for %s/%s refused: %s %s", provider, tenant_id, app,
                    getattr(error, "code", ""), message)
    return answer(status, message[:200])
