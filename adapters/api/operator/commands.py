"""The operator API's remote commands: start a gun without a driver (commissioning), stop or
force-close a session, reboot a pile or push it its tariff, and refund a driver's balance through
the payment platform. Each is a command on the ledger; what a pile is told reaches it as an event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from adapters.api.shards import ledger_of
from adapters.api import inputs as t
from adapters.api.auth import AGENT, TENANT_ADMIN, Principal
from adapters.api.errors import ApiError
from adapters.api.inputs import error
from adapters.api.operator.deps import (E409_TRANSITION, E409_UNAVAILABLE, ERRORS, PILE, TRADE, T, Caller, PileNo,
                                        Reason, TradeNo, body_example, check_pile, check_session, example, now,
                                        require, tenant_of)
from domain.errors import NotFound
from domain.wallet import PROVIDERS, Wallet

router = APIRouter(prefix="/operator/v1", responses=t.BAD_BODY)
RefundReason = t.text(80)


# ---- request bodies ---------------------------------------------------------------------------------
class RequiredReason(BaseModel):
    model_config = body_example(reason="pile lost power; session stuck in stopping")
    reason: t.RequiredReason


class StartBody(BaseModel):
    model_config = body_example(gun_no=1)
    gun_no: int = Field(ge=1, le=99)


class RefundRequest(BaseModel):
    model_config = body_example(driver_id="driver-li", refund_id="rf-20261122-0001", amount_fen=2500,
                                provider="wechat")
    driver_id: t.DriverId
    refund_id: t.RefundId = Field(description="your id for this refund: asking again with it changes nothing")
    amount_fen: t.Fen
    provider: Literal[PROVIDERS] | None = Field(  # type: ignore[valid-type]
        None, description="refund only payments made through this provider (default: any)")
    reason: RefundReason = Field("", description="why: sent to the payment platform with the refund, which shows "
                                                 "it to the driver (WeChat Pay takes at most 80 characters)")



# ---- remote commands ---------------------------------------------------------------------------------
@router.post("/piles/{pile_no}/start", tags=["commands"], status_code=202,
             summary="Start a gun without a driver (commissioning)",
             responses=example({"trade_no": TRADE}, 202, *ERRORS, 409, e409=E409_UNAVAILABLE))
def start_gun(request: Request, who: Caller, pile_no: PileNo, body: StartBody) -> JSONResponse:
    return JSONResponse({"trade_no": start_commissioning(request, who, pile_no, body)}, status_code=202)


def start_commissioning(request: Request, who: Principal, pile_no: str, body: StartBody) -> str:
    """Start a gun with no driver and nothing held (commissioning): the API's endpoint and the console's
    pile page. Returns the session's trade serial."""
    require(who, TENANT_ADMIN, AGENT)
    pile = check_pile(request, who, pile_no)
    return ledger_of(request).request_start(pile_no=pile_no, gun_no=body.gun_no,  # type: ignore[no-any-return]
                                                  wallet_id=None, hold_fen=0, at=now(), author=who.subject,
                                                  origin="commissioning", tenant_id=pile.tenant_id)


@router.post("/orders/{trade_no}/stop", tags=["commands"], status_code=202, summary="Ask the pile to stop a session",
             responses=example({"trade_no": TRADE, "state": "stopping"}, 202, *ERRORS, 409, e409=E409_TRANSITION))
def stop_session(request: Request, who: Caller, trade_no: TradeNo, body: Reason) -> JSONResponse:
    return JSONResponse({"trade_no": trade_no, "state": stop_order(request, who, trade_no, body)}, status_code=202)


def stop_order(request: Request, who: Principal, trade_no: str, body: Reason, pile_no: str | None = None) -> str:
    """Ask the pile to stop a session (the API's endpoint and the console's pile page; the page names
    its pile, and a session of another pile is not found there). Returns the session's state."""
    require(who, TENANT_ADMIN, AGENT)
    session = check_session(request, who, trade_no)
    if pile_no is not None and session.pile_no != pile_no:
        raise NotFound(f"no order {trade_no} at pile {pile_no}", trade_no=trade_no)
    session = ledger_of(request).request_stop(trade_no, who.subject, body.reason or "stopped by operator",
                                                    now(), tenant_id=session.tenant_id)
    return session.state  # type: ignore[no-any-return]


@router.post("/orders/{trade_no}/force-close", tags=["commands"], summary="Close a stuck session, priced as measured",
             responses=example({"trade_no": TRADE, "state": "abandoned", "total_fen": 1210}, 200, *ERRORS, 409,
                               e409=E409_TRANSITION))
def force_close(request: Request, who: Caller, trade_no: TradeNo, body: RequiredReason) -> JSONResponse:
    require(who, TENANT_ADMIN, AGENT)
    check_session(request, who, trade_no)
    session = ledger_of(request).force_close(trade_no, at=now(), reason=body.reason, author=who.subject)
    return JSONResponse({"trade_no": trade_no, "state": session.state,
                         "total_fen": (session.bill or {}).get("total_fen", 0)})


def command_pile(request: Request, who: Principal, pile_no: str, use_case: Callable[..., None]) -> None:
    """A command to a pile in scope (tenant admins and agents): ``use_case`` is the ledger's
    (``reboot_pile``, ``push_tariff``); the API's endpoints and the console's pages run it."""
    require(who, TENANT_ADMIN, AGENT)
    pile = check_pile(request, who, pile_no)
    use_case(pile_no, author=who.subject, at=now(), tenant_id=pile.tenant_id)


def pile_command(request: Request, who: Principal, pile_no: str, command: str,
                 use_case: Callable[..., None]) -> JSONResponse:
    """:func:`command_pile`, answered as the API answers: ``command`` is the name the answer gives it."""
    command_pile(request, who, pile_no, use_case)
    return JSONResponse({"pile_no": pile_no, "command": command}, status_code=202)


@router.post("/piles/{pile_no}/reboot", tags=["commands"], status_code=202, summary="Reboot a pile",
             responses=example({"pile_no": PILE, "command": "reboot"}, 202, *ERRORS, 409, e409=E409_UNAVAILABLE))
def reboot(request: Request, who: Caller, pile_no: PileNo) -> JSONResponse:
    return pile_command(request, who, pile_no, "reboot", ledger_of(request).reboot_pile)


@router.post("/piles/{pile_no}/push-tariff", tags=["commands"], status_code=202,
             summary="Send the pile its current tariff",
             responses=example({"pile_no": PILE, "command": "push_tariff"}, 202, *ERRORS, 409, e409=E409_UNAVAILABLE))
def push_tariff(request: Request, who: Caller, pile_no: PileNo) -> JSONResponse:
    return pile_command(request, who, pile_no, "push_tariff", ledger_of(request).push_tariff)


REFUND_EXAMPLE = {"refund_id": "rf-20261122-0001", "wallet_id": T, "amount_fen": 2500, "available_fen": 0,
                  "refunds": [{"out_trade_no": "T20261122014000a1b2c3d4e5f6",
                               "out_refund_no": "T20261122014000a1b2c3d4e5f6O3f2a1b0c9d8e7f60",
                               "provider": "wechat", "amount_fen": 2500, "status": "processing",
                               "reason": "WeChat refund PROCESSING"}]}


@router.post("/refunds", tags=["commands"], status_code=202,
             summary="Refund a driver's balance to their payment account, through the payment platform",
             description="Sent through the payments the money came from, newest first (only `provider`'s when "
                         "named), exactly as a driver's own refund (docs/payments.md): each refund is "
                         "`succeeded`, `failed` (the money is back in the wallet) or `processing` (the platform "
                         "decides later; the money stays `refund_pending` until it does). Asking again with the "
                         "same `refund_id` answers the refunds it made, as they stand now.",
             responses=example(REFUND_EXAMPLE, 202, *ERRORS, 409,
                               e409=error("refund_refused", "only 1000 fen of the wallet came from refundable "
                                          "payments", {"refundable": 1000, "wanted": 2500})))
def refund(request: Request, who: Caller, body: RefundRequest) -> JSONResponse:
    return JSONResponse(refund_driver(request, who, body), status_code=202)


def refund_driver(request: Request, who: Principal, body: RefundRequest) -> dict[str, Any]:
    """A tenant admin refunds a driver's balance through the payment platform: the API's and the console's."""
    require(who, TENANT_ADMIN)
    tenant = tenant_of(who)
    wallet_id = Wallet.create_id(tenant, body.driver_id)
    try:
        ledger_of(request).wallet(wallet_id)
    except NotFound:
        raise NotFound(f"no driver {body.driver_id}", driver_id=body.driver_id) from None
    payments = getattr(request.app.state, "payments", None)
    if payments is None:
        raise ApiError(409, "payments_not_configured", "this API has no payment channels configured "
                       "(CHARGELEDGER_PAYMENT_KEYS): a refund has nowhere to go")
    refunds = payments.refund_wallet(tenant, body.driver_id, body.amount_fen,
                                     body.reason or f"operator refund {body.refund_id}",
                                     request_id=body.refund_id, provider=body.provider)
    available = ledger_of(request).wallet(wallet_id).available
    return {"refund_id": body.refund_id, "wallet_id": str(wallet_id), "amount_fen": body.amount_fen,
            "available_fen": available, "refunds": [r.__dict__ for r in refunds]}
