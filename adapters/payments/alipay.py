"""Alipay (open platform, RSA2) through ``python-alipay-sdk``: mini-program trade, notifications, refunds.

What the SDK checks on a notification: the RSA2 signature over the sorted ``k=v`` pairs with the
Alipay public key (and it refuses another ``sign_type``). What this adapter adds: the ``app_id`` (and
``seller_id`` when configured) equal to our channel's, ``notify_time`` within a window, a trade status
that means paid, and an exact two-decimal amount. Refunds are synchronous: ``fund_change Y`` in the
answer of ``alipay.trade.refund`` is a success; any other answer is settled by the refund query, so no
money goes back to the wallet while Alipay may have refunded it.

``notify_time`` is the platform's clock in Beijing time. Whether a resend carries a new one is not
confirmed, so the window is wide enough for Alipay's whole retry schedule (about 25 h): at most
:data:`NOTIFY_MAX_AGE` old and :data:`NOTIFY_MAX_AHEAD` in the future. A replay within it changes
nothing anyway: crediting is keyed by the order.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from alipay import AliPay
from alipay.exceptions import AliPayException
from alipay.utils import AliPayConfig as SdkConfig

from adapters.payments.base import (
    AppMismatch,
    IgnoredNotice,
    InvalidSignature,
    Notice,
    PaymentNotice,
    Prepay,
    ProviderError,
    RefundOutcome,
    StaleNotification,
    digest,
    fen_of_yuan,
    yuan,
)
from adapters.payments.config import AlipayConfig
from domain.clock import utcnow

BEIJING = ZoneInfo("Asia/Shanghai")
NOTIFY_MAX_AGE = timedelta(hours=48)
NOTIFY_MAX_AHEAD = timedelta(minutes=5)
PAID_STATES = ("TRADE_SUCCESS", "TRADE_FINISHED")
OK = "10000"


class AlipayAdapter:
    provider = "alipay"

    def __init__(self, config: AlipayConfig, notify_url: str, *, gateway: str | None = None,
                 now: Callable[[], datetime] = utcnow, timeout: int = 10) -> None:
        self.config = config
        self.notify_url = notify_url
        self.now = now
        self.ali = AliPay(appid=config.app_id, app_notify_url=notify_url,
                          app_private_key_string=config.app_private_key,
                          alipay_public_key_string=config.alipay_public_key, sign_type="RSA2",
                          config=SdkConfig(timeout=timeout))
        if gateway is not None:  # offline contract tests play the platform on loopback; the SDK has no option
            self.ali._gateway = gateway

    # ---- prepay ----------------------------------------------------------------------------
    def prepay(self, out_trade_no: str, amount_fen: int, description: str, payer: str) -> Prepay:
        """``alipay.trade.create`` for a mini-program (JSAPI_PAY); the mini-program calls ``my.tradePay``."""
        buyer = {"buyer_id": payer} if payer.startswith("2088") else {"buyer_open_id": payer}
        result = self._server_call(lambda: self.ali.api_alipay_trade_create(
            subject=description, out_trade_no=out_trade_no, total_amount=yuan(amount_fen),
            notify_url=self.notify_url, product_code="JSAPI_PAY", op_app_id=self.config.app_id, **buyer,
        ))
        if result.get("code") != OK or not result.get("trade_no"):
            raise ProviderError(f"Alipay refused the trade: {result.get('sub_code') or result.get('code')} "
                                f"{result.get('sub_msg') or result.get('msg')}", code=result.get("code"))
        return Prepay(result["trade_no"], {"tradeNO": result["trade_no"]})

    # ---- login -----------------------------------------------------------------------------
    def user_for(self, auth_code: str) -> str:
        """``alipay.system.oauth.token``: the mini-program's auth code to the user's open id (or 2088 id)."""
        result = self._server_call(lambda: self.ali.server_api(
            "alipay.system.oauth.token", grant_type="authorization_code", code=auth_code))
        user = result.get("open_id") or result.get("user_id")
        if not user:
            raise ProviderError("Alipay refused the auth code", code=result.get("code"))
        return str(user)

    # ---- notifications ---------------------------------------------------------------------
    def parse_notification(self, headers: dict[str, str], body: bytes) -> Notice:
        form = dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))
        return self.parse_form(form, body)

    def parse_form(self, form: dict[str, str], body: bytes = b"") -> Notice:
        data = dict(form)  # the SDK mutates what it verifies
        signature = data.pop("sign", "")
        if not signature:
            raise InvalidSignature("notification without a signature")
        try:
            verified = self.ali.verify(data, signature)
        except Exception as error:  # another sign_type, undecodable signature
            raise InvalidSignature(f"notification not verifiable: {error}") from None
        if not verified:
            raise InvalidSignature("notification signature does not verify with the Alipay public key")
        if form.get("app_id") != self.config.app_id:
            raise AppMismatch("notification for another app id", app_id=form.get("app_id"))
        if self.config.seller_id and form.get("seller_id") not in (None, self.config.seller_id):
            raise AppMismatch("notification for another seller", seller_id=form.get("seller_id"))
        self._check_time(form.get("notify_time", ""))
        if form.get("refund_fee") or form.get("out_biz_no"):
            return IgnoredNotice("refund sync (informational; the refund answer was authoritative)",
                                 {"out_trade_no": form.get("out_trade_no"), "out_biz_no": form.get("out_biz_no")})
        if form.get("trade_status") not in PAID_STATES:
            return IgnoredNotice(f"trade status {form.get('trade_status')}")
        return PaymentNotice(out_trade_no=form.get("out_trade_no", ""), transaction_id=form.get("trade_no", ""),
                             amount_fen=fen_of_yuan(form.get("total_amount", "")), notified_at=self.now(),
                             digest=digest(body or repr(sorted(form.items())).encode()))

    def _check_time(self, notify_time: str) -> None:
        try:
            sent = datetime.strptime(notify_time, "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING)
        except ValueError:
            raise StaleNotification(f"notify_time unreadable: {notify_time!r}") from None
        now = self.now()
        if sent > now + NOTIFY_MAX_AHEAD or sent < now - NOTIFY_MAX_AGE:
            raise StaleNotification(f"notification sent at {notify_time} (Beijing), outside the window",
                                    notify_time=notify_time)

    # ---- refunds ---------------------------------------------------------------------------
    def refund(self, out_trade_no: str, out_refund_no: str, amount_fen: int, total_fen: int,
               reason: str) -> RefundOutcome:
        """``fund_change == "Y"`` is a success. Nothing else is taken as a failure on its word: an unsigned
        error answer (a gateway or proxy error), a signed refusal or ``fund_change == "N"`` is settled by
        the refund query, and the money goes back only if Alipay has no such refund. A lost answer or
        ``ACQ.SYSTEM_ERROR`` stays ``processing`` (Alipay may still be refunding) until reconciled."""
        try:
            result = self.ali.api_alipay_trade_refund(
                refund_amount=yuan(amount_fen), out_trade_no=out_trade_no, out_request_no=out_refund_no,
                refund_reason=reason or "wallet refund")
        except AliPayException as error:  # unsigned error_response: says nothing about the refund
            return self._settled_by_query(out_trade_no, out_refund_no, f"unsigned answer: {str(error)[:200]}")
        except Exception as error:  # network, a bad answer signature: the outcome is unknown
            return RefundOutcome("processing", reason=f"refund call outcome unknown: {error}")
        if result.get("code") == OK and result.get("fund_change") == "Y":
            return RefundOutcome("succeeded", provider_ref=str(result.get("trade_no", "")),
                                 amount_fen=amount_fen, reason="fund_change Y")
        if result.get("sub_code") in ("ACQ.SYSTEM_ERROR", "aop.ACQ.SYSTEM_ERROR"):
            return RefundOutcome("processing", reason="Alipay system error; query later")
        why = f"{result.get('sub_code') or result.get('code')} {result.get('sub_msg') or result.get('msg') or ''}"
        return self._settled_by_query(out_trade_no, out_refund_no, why.strip())

    def _settled_by_query(self, out_trade_no: str, out_refund_no: str, why: str) -> RefundOutcome:
        outcome = self.query_refund(out_trade_no, out_refund_no)
        if outcome.status == "failed":
            return RefundOutcome("failed", reason=f"Alipay refused the refund ({why}) and has no such refund")
        return outcome

    def query_refund(self, out_trade_no: str, out_refund_no: str) -> RefundOutcome:
        """Alipay's rule: the refund succeeded if the query returns it with ``REFUND_SUCCESS`` (or no status)."""
        try:
            result = self.ali.api_alipay_trade_fastpay_refund_query(out_request_no=out_refund_no,
                                                                     out_trade_no=out_trade_no)
        except Exception as error:
            return RefundOutcome("processing", reason=f"refund query failed: {error}")
        if result.get("code") == OK and result.get("refund_amount") and \
                result.get("refund_status", "REFUND_SUCCESS") == "REFUND_SUCCESS":
            return RefundOutcome("succeeded", provider_ref=str(result.get("trade_no", "")),
                                 amount_fen=fen_of_yuan(result["refund_amount"]))
        if result.get("code") == OK:
            return RefundOutcome("failed", reason="Alipay has no such refund")
        return RefundOutcome("processing", reason=f"refund query answered {result.get('code')}")

    @staticmethod
    def _server_call(call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        try:
            return call()
        except Exception as error:  # AliPayException, validation error, network, AttributeError (see docs)
            raise ProviderError(f"Alipay call failed: {error}") from None

