"""WeChat Pay APIv3 through ``wechatpayv3``: mini-program prepay, notifications, refunds.

The SDK runs in platform public-key mode ("微信支付公钥"), which needs no certificate download.
What the SDK checks on a notification: the RSA-SHA256 signature over ``ts\\nnonce\\nbody\\n`` with
the platform key and the AES-256-GCM decryption of ``resource`` with the APIv3 key. What it does not,
and this adapter adds: the key id must be our channel's (an unknown one would make the SDK fetch
certificates over the network), the signed timestamp within :data:`NOTIFICATION_WINDOW_SECONDS`, the
app id and merchant id of the resource equal to our channel's. The order and its amount are checked
by the service, which knows the order.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from wechatpayv3 import WeChatPay, WeChatPayType

from adapters.payments.base import (
    NOTIFICATION_WINDOW_SECONDS,
    AppMismatch,
    IgnoredNotice,
    InvalidSignature,
    Notice,
    NotificationRefused,
    PaymentNotice,
    Prepay,
    ProviderError,
    RefundNotice,
    RefundOutcome,
    StaleNotification,
    digest,
)
from adapters.payments.config import WeChatConfig
from domain.clock import utcnow

SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
_REFUND_STATUS = {"SUCCESS": "succeeded", "PROCESSING": "processing", "CLOSED": "failed", "ABNORMAL": "failed"}


class WeChatPayAdapter:
    provider = "wechat"

    def __init__(self, config: WeChatConfig, notify_url: str, *, gateway: str | None = None,
                 now: Callable[[], datetime] = utcnow, timeout: tuple[float, float] = (3, 10)) -> None:
        self.config = config
        self.notify_url = notify_url
        self.now = now
        self.wx = WeChatPay(
            wechatpay_type=WeChatPayType.MINIPROG, mchid=config.mch_id, private_key=config.merchant_private_key,
            cert_serial_no=config.merchant_serial_no, appid=config.app_id, apiv3_key=config.apiv3_key,
            notify_url=notify_url, public_key=config.platform_public_key,
            public_key_id=config.platform_public_key_id, timeout=timeout,
        )
        if gateway is not None:  # offline contract tests play the platform on loopback; the SDK has no option
            self.wx._core._gate_way = gateway.rstrip("/")

    # ---- prepay ----------------------------------------------------------------------------
    def prepay(self, out_trade_no: str, amount_fen: int, description: str, payer: str) -> Prepay:
        code, message = self._call(lambda: self.wx.pay(
            description=description, out_trade_no=out_trade_no, amount={"total": amount_fen, "currency": "CNY"},
            payer={"openid": payer}, pay_type=WeChatPayType.MINIPROG,
        ))
        if not 200 <= code < 300:
            raise ProviderError(f"WeChat Pay refused the prepay: {code} {_text(message)}", status=code)
        prepay_id = json.loads(message).get("prepay_id", "")
        if not prepay_id:
            raise ProviderError("WeChat Pay answered a prepay without prepay_id")
        return Prepay(prepay_id, self.request_payment(prepay_id))

    def request_payment(self, prepay_id: str) -> dict[str, str]:
        """The parameters of ``wx.requestPayment``, signed with the merchant key (RSA)."""
        timestamp = str(int(self.now().timestamp()))
        nonce = secrets.token_hex(16)
        package = f"prepay_id={prepay_id}"
        sign = self.wx.sign([self.config.app_id, timestamp, nonce, package])
        return {"appId": self.config.app_id, "timeStamp": timestamp, "nonceStr": nonce, "package": package,
                "signType": "RSA", "paySign": sign}

    # ---- notifications ---------------------------------------------------------------------
    def parse_notification(self, headers: dict[str, str], body: bytes) -> Notice:
        h = {k.lower(): v for k, v in headers.items()}
        if h.get("wechatpay-signature-type") != SIGNATURE_TYPE or not h.get("wechatpay-signature"):
            raise InvalidSignature("missing WeChat Pay signature headers")
        if h.get("wechatpay-serial") != self.config.platform_public_key_id:
            raise InvalidSignature("signed with a key that is not this channel's platform key",
                                   serial=h.get("wechatpay-serial", ""))
        try:
            data = self.wx.callback(h, body)
        except Exception as error:  # the SDK raises plain Exception on malformed input
            raise InvalidSignature(f"notification not verifiable: {error}") from None
        if not data:
            raise InvalidSignature("signature or resource decryption failed")
        try:
            signed_at = datetime.fromtimestamp(int(h["wechatpay-timestamp"]), UTC)
        except (KeyError, ValueError, OverflowError):
            raise StaleNotification("notification timestamp unreadable") from None
        if abs((self.now() - signed_at).total_seconds()) > NOTIFICATION_WINDOW_SECONDS:
            raise StaleNotification(f"notification signed at {signed_at.isoformat()}, outside the "
                                    f"{NOTIFICATION_WINDOW_SECONDS} s window", signed_at=signed_at.isoformat())
        resource: dict[str, Any] = data.get("resource") or {}
        event_type = data.get("event_type", "")
        if resource.get("mchid") != self.config.mch_id:
            raise AppMismatch("notification for another merchant", mchid=resource.get("mchid"))
        if event_type == "TRANSACTION.SUCCESS":
            return self._payment(resource, body)
        if event_type.startswith("REFUND."):
            return self._refund(resource, body)
        return IgnoredNotice(f"event {event_type} is not acted on", {"id": data.get("id")})

    def _payment(self, resource: dict[str, Any], body: bytes) -> Notice:
        if resource.get("appid") != self.config.app_id:
            raise AppMismatch("notification for another app id", appid=resource.get("appid"))
        if resource.get("trade_state") != "SUCCESS":
            return IgnoredNotice(f"trade state {resource.get('trade_state')}")
        amount = resource.get("amount") or {}
        if amount.get("currency", "CNY") != "CNY" or not isinstance(amount.get("total"), int):
            raise NotificationRefused("notification amount unreadable", amount=amount)
        return PaymentNotice(out_trade_no=str(resource.get("out_trade_no", "")),
                             transaction_id=str(resource.get("transaction_id", "")),
                             amount_fen=amount["total"], notified_at=self.now(), digest=digest(body))

    def _refund(self, resource: dict[str, Any], body: bytes) -> Notice:
        status = _REFUND_STATUS.get(resource.get("refund_status", ""), "processing")
        amount = resource.get("amount") or {}
        outcome = RefundOutcome(status=status, provider_ref=str(resource.get("refund_id", "")),
                                reason=f"WeChat refund {resource.get('refund_status')}",
                                amount_fen=amount.get("refund"))
        return RefundNotice(out_trade_no=str(resource.get("out_trade_no", "")),
                            out_refund_no=str(resource.get("out_refund_no", "")), outcome=outcome,
                            digest=digest(body))

    # ---- refunds ---------------------------------------------------------------------------
    def refund(self, out_trade_no: str, out_refund_no: str, amount_fen: int, total_fen: int,
               reason: str) -> RefundOutcome:
        """A 2xx answer carries the refund's status; a 4xx means the platform refused it (money stays
        ours, so it is a failure); anything else leaves it unknown (``processing``) for a query."""
        try:
            code, message = self.wx.refund(
                out_refund_no=out_refund_no, out_trade_no=out_trade_no, reason=reason or None,
                amount={"refund": amount_fen, "total": total_fen, "currency": "CNY"}, notify_url=self.notify_url,
            )
        except Exception as error:  # network, or a 2xx answer whose signature did not verify
            return RefundOutcome("processing", reason=f"refund call outcome unknown: {error}")
        return self._refund_answer(code, message, amount_fen)

    def query_refund(self, out_trade_no: str, out_refund_no: str) -> RefundOutcome:
        try:
            code, message = self.wx.query_refund(out_refund_no)
        except Exception as error:
            return RefundOutcome("processing", reason=f"refund query failed: {error}")
        if code == 404:
            return RefundOutcome("failed", reason="the platform has no such refund")
        return self._refund_answer(code, message, None)

    @staticmethod
    def _refund_answer(code: int, message: Any, amount_fen: int | None) -> RefundOutcome:
        if 200 <= code < 300:
            data = json.loads(message)
            status = _REFUND_STATUS.get(data.get("status", ""), "processing")
            return RefundOutcome(status, provider_ref=str(data.get("refund_id", "")),
                                 reason=f"WeChat refund {data.get('status')}",
                                 amount_fen=(data.get("amount") or {}).get("refund", amount_fen))
        if 400 <= code < 500 and code != 429:
            return RefundOutcome("failed", reason=f"WeChat Pay refused the refund: {code} {_text(message)}")
        return RefundOutcome("processing", reason=f"WeChat Pay answered {code}")

    def _call(self, call: Callable[[], tuple[int, Any]]) -> tuple[int, Any]:
        try:
            return call()
        except Exception as error:
            raise ProviderError(f"WeChat Pay call failed: {error}") from None


def _text(message: Any) -> str:
    text = message.decode(errors="replace") if isinstance(message, bytes) else str(message)
    return text[:300]
