"""What every payment adapter answers, and the reasons a notification is refused.

Each platform's SDK sits behind the same small interface (:class:`PaymentProvider`): create the
prepay, verify and parse a notification, refund, query a refund. The flow in
:mod:`adapters.payments.service` only sees these dataclasses, never an SDK.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from domain.errors import DomainError
from domain.money import fen_to_yuan_str, yuan_str_to_fen

NOTIFICATION_WINDOW_SECONDS = 300  # WeChat signs each delivery; |now − timestamp| beyond this is refused


class NotificationRefused(DomainError):
    """A notification we do not act on; the platform is told it failed (and may retry)."""

    code = "payment_notification_refused"


class InvalidSignature(NotificationRefused):
    code = "payment_signature_invalid"


class StaleNotification(NotificationRefused):
    code = "payment_notification_stale"


class AppMismatch(NotificationRefused):
    """The notification is for another app id, merchant or channel than the order's."""

    code = "payment_app_mismatch"


class ProviderError(DomainError):
    """The platform refused or failed a call we made (prepay, refund, login)."""

    code = "payment_provider_error"


@dataclass(frozen=True)
class Prepay:
    provider_ref: str  # WeChat prepay_id / Alipay trade_no
    pay_params: dict[str, str]  # what the mini-program passes to wx.requestPayment / my.tradePay


@dataclass(frozen=True)
class PaymentNotice:
    """A verified notification that an order was paid."""

    out_trade_no: str
    transaction_id: str
    amount_fen: int
    notified_at: datetime
    digest: str  # sha256 of the body as received: proves which delivery was acted on


@dataclass(frozen=True)
class RefundOutcome:
    """A refund's state at the platform: ``succeeded``, ``failed`` or ``processing`` (not known yet)."""

    status: str
    provider_ref: str = ""
    reason: str = ""
    amount_fen: int | None = None


@dataclass(frozen=True)
class RefundNotice:
    """A verified notification about a refund."""

    out_trade_no: str
    out_refund_no: str
    outcome: RefundOutcome
    digest: str


@dataclass(frozen=True)
class IgnoredNotice:
    """Verified, but nothing to do (an informational Alipay refund sync, a trade still waiting...)."""

    reason: str
    details: dict[str, Any] = field(default_factory=dict)


Notice = PaymentNotice | RefundNotice | IgnoredNotice


class PaymentProvider(Protocol):
    def prepay(self, out_trade_no: str, amount_fen: int, description: str, payer: str) -> Prepay: ...

    def parse_notification(self, headers: dict[str, str], body: bytes) -> Notice: ...

    def refund(self, out_trade_no: str, out_refund_no: str, amount_fen: int, total_fen: int,
               reason: str) -> RefundOutcome: ...

    def query_refund(self, out_trade_no: str, out_refund_no: str) -> RefundOutcome: ...


def digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def yuan(fen: int) -> str:
    """Fen as Alipay's two-decimal yuan string: 1234 -> "12.34"."""
    return fen_to_yuan_str(fen)


def fen_of_yuan(text: str) -> int:
    """Alipay's yuan string back to fen, exactly (:func:`domain.money.yuan_str_to_fen`). Only a plain
    amount is read: ASCII digits, at most two decimals; anything else (``NaN``, ``sNaN``, ``Infinity``,
    ``1e999``, a sign, a third decimal, spaces) is refused as a notification we cannot act on, never an
    error of ours."""
    try:
        return yuan_str_to_fen(text)
    except ValueError as error:
        raise NotificationRefused(str(error)) from None
