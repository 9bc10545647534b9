"""HTTP for payments: the platforms' notification callbacks and the driver's login and wallet endpoints.

Mount with ``app.include_router(payment_router(service, identity))`` on the app of
``adapters.http.create_app``, whose handlers turn ``DomainError`` into 404/409 and ``AuthError`` into
401/403 with stable codes. The driver endpoints take the tenant and the driver from the bearer
token only (``role: driver``). The callbacks answer each platform the way it expects: WeChat Pay
204 on success and 4xx/5xx with ``{"code": "FAIL", "message": ...}`` otherwise (it retries); Alipay
the plain body ``success``, anything else makes it retry.
"""

# no `from __future__ import annotations`: FastAPI must see the dependency types defined inside
# payment_router, which string annotations would hide from it
import logging
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from adapters.driver_identity import DriverIdentity, DriverPrincipal, bearer_driver
from adapters.payments.base import InvalidSignature, NotificationRefused
from adapters.payments.service import Payer, PaymentService
from domain.errors import DomainError, NotFound
from domain.payment import MAX_TOP_UP_FEN
from domain.wallet import Wallet, posting_sets_of

log = logging.getLogger("chargeledger.payments")


class LoginBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=1, max_length=256, description="wx.login code / my.getAuthCode authCode")


class TopUpBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    amount_fen: int = Field(gt=0, le=MAX_TOP_UP_FEN)


class RefundBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    amount_fen: int | None = Field(default=None, gt=0, description="default: the whole available balance")


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


def payment_router(service: PaymentService, identity: DriverIdentity) -> APIRouter:
    router = APIRouter()

    Driver = Annotated[DriverPrincipal, Depends(bearer_driver(identity))]

    def payer(d: DriverPrincipal) -> Payer:
        return Payer(d.tenant_id, d.driver_id, d.channel, d.payer)

    # ---- login -----------------------------------------------------------------------------
    @router.post("/driver/login/{provider}/{tenant_id}/{app}", tags=["driver"])
    def login(provider: str, tenant_id: UUID, app: str, body: LoginBody) -> dict[str, Any]:
        if provider not in ("wechat", "alipay"):
            raise NotFound(f"no login through {provider}")
        done = identity.login(provider, tenant_id, app, body.code)
        return {"token": done.token, "expires_at": done.expires_at, "driver_id": done.principal.driver_id,
                "tenant_id": str(tenant_id), "channel": app, "provider": provider}

    # ---- wallet ----------------------------------------------------------------------------
    @router.get("/driver/wallet", tags=["driver"])
    def wallet(d: Driver) -> dict[str, Any]:
        w = service.ledger.wallet(service.wallet_id(d.tenant_id, d.driver_id))
        return {"wallet_id": str(w.id), "available_fen": w.available, "held_fen": w.held,
                "refund_pending_fen": w.refund_pending, "arrears_fen": w.arrears}

    @router.get("/driver/wallet/postings", tags=["driver"])
    def postings(d: Driver, limit: Annotated[int, Query(ge=1, le=200)] = 50,
                 before: Annotated[int | None, Query(ge=1, description="a version from 'next'")] = None) -> dict[str, Any]:
        """The wallet's movements, newest first: one entry per wallet event, with its balanced posting sets."""
        wallet_id = Wallet.create_id(d.tenant_id, d.driver_id)
        events = list(service.ledger.wallets.events.get(
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

    @router.post("/driver/wallet/top-ups", tags=["driver"], status_code=201)
    def create_top_up(d: Driver, body: TopUpBody) -> dict[str, Any]:
        top_up = service.create_top_up(payer(d), body.amount_fen)
        return {"out_trade_no": top_up.out_trade_no, "provider": top_up.provider, "amount_fen": top_up.amount_fen,
                "pay_params": top_up.pay_params}

    @router.get("/driver/wallet/top-ups/{out_trade_no}", tags=["driver"])
    def top_up_status(d: Driver, out_trade_no: str) -> dict[str, Any]:
        return service.order_of(payer(d), out_trade_no).as_dict()

    @router.post("/driver/wallet/refunds", tags=["driver"])
    def refund(d: Driver, body: RefundBody) -> dict[str, Any]:
        refunds = service.request_refund(payer(d), body.amount_fen)
        return {"refunds": [r.__dict__ for r in refunds]}

    # ---- the platforms' callbacks ------------------------------------------------------------
    @router.post("/pay/wechat/notify/{tenant_id}/{app}", tags=["payment callbacks"])
    async def wechat_notify(tenant_id: UUID, app: str, request: Request) -> Response:
        body = await request.body()
        headers = dict(request.headers)
        try:
            result = await run_in_threadpool(service.handle_notification, "wechat", tenant_id, app, headers, body)
        except Exception as error:  # every refusal is answered; WeChat retries
            return _refused("wechat", tenant_id, app, error,
                            lambda status, msg: JSONResponse({"code": "FAIL", "message": msg}, status_code=status))
        log.info("wechat notification %s %s", result.outcome, result.out_trade_no)
        return Response(status_code=204)

    @router.post("/pay/alipay/notify/{tenant_id}/{app}", tags=["payment callbacks"])
    async def alipay_notify(tenant_id: UUID, app: str, request: Request) -> Response:
        body = await request.body()
        try:
            result = await run_in_threadpool(service.handle_notification, "alipay", tenant_id, app, {}, body)
        except Exception as error:
            return _refused("alipay", tenant_id, app, error,
                            lambda status, msg: PlainTextResponse("fail", status_code=status))
        log.info("alipay notification %s %s", result.outcome, result.out_trade_no)
        return PlainTextResponse("success")

    return router


def _refused(provider: str, tenant_id: UUID, app: str, error: Exception, answer: Any) -> Response:
    status = _status_of(error)
    message = error.message if isinstance(error, DomainError) else "internal error"
    if status == 500:
        log.exception("%s notification for %s/%s failed", provider, tenant_id, app, exc_info=error)
    else:
        log.warning("%s notification for %s/%s refused: %s %s", provider, tenant_id, app,
                    getattr(error, "code", ""), message)
    return answer(status, message[:200])

