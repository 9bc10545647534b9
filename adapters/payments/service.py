"""The payment flows, independent of HTTP: top-up, notification, crediting, refunds.

Top-up::

    create order (Created) ─► prepay at the platform (Prepared | PrepayFailed) ─► the mini-program pays
    notification ─► verify (adapter: signature, decryption, timestamp, app id; here: our order, its
    channel, its amount) ─► Paid ─► wallet top-up (key topup:<out_trade_no>) ─► Credited

Every step is idempotent, so a notification delivered twice, or two deliveries racing in two
processes, credit once: ``Paid`` is recorded by whichever wins the order's version check, the wallet
top-up is keyed by the order, and ``Credited`` is recorded once. A crash after ``Paid`` is repaired by
the platform's next delivery (it retries until we answer success) or by :meth:`credit_paid`.

Refund (of the wallet balance, through the providers the money came from, newest payments first)::

    wallet request_refund (available → refund_pending; key refund:<out_refund_no>) ─► RefundCreated
    ─► platform refund ─► succeeded: RefundSucceeded + wallet complete_refund
                        ─► failed:    RefundFailed + wallet fail_refund (the money goes back)
                        ─► processing: the WeChat refund notification (or a query) decides later

The wallet is moved first, so two refund requests racing on one wallet cannot send out more than it
holds; an order that refuses the refund (already refunded in full by a racing request) gives the
money straight back.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from adapters.payments.alipay import AlipayAdapter
from adapters.payments.base import (
    AppMismatch,
    IgnoredNotice,
    PaymentNotice,
    PaymentProvider,
    ProviderError,
    RefundNotice,
    RefundOutcome,
)
from adapters.payments.config import Channel, Channels
from adapters.payments.wechat import WeChatPayAdapter
from domain.clock import utcnow
from domain.errors import DomainError, IdempotencyConflict, InsufficientFunds, InvalidAmount, NotFound
from domain.ledger import Ledger
from domain.payment import PaymentAmountMismatch, PaymentOrder, Payments, RefundRefused
from domain.wallet import Wallet


@dataclass(frozen=True)
class Payer:
    """Who pays: the driver as the verified token says (tenant, driver, the channel they logged in with)."""

    tenant_id: UUID
    driver_id: str
    channel: str
    payer: str  # WeChat openid / Alipay open id or 2088 user id, for this channel's app


@dataclass(frozen=True)
class TopUp:
    out_trade_no: str
    provider: str
    amount_fen: int
    pay_params: dict[str, str]


@dataclass
class RefundView:
    out_trade_no: str
    out_refund_no: str
    provider: str
    amount_fen: int
    status: str
    reason: str = ""


@dataclass
class NotificationResult:
    outcome: str  # credited | duplicate | refund_<status> | ignored
    out_trade_no: str = ""
    details: dict[str, Any] = field(default_factory=dict)


ProviderFactory = Callable[[Channel], Any]


@dataclass(frozen=True)
class TopUpLimits:
    """What one driver may ask of the platforms' prepay: each top-up is a call to WeChat Pay or Alipay.

    ``pending``: unpaid top-ups at once (created within ``pending_window``, after which the platform's
    prepay has expired: WeChat's prepay_id lives 2 h); ``per_hour``: top-ups created in any hour.
    """

    pending: int = 5
    per_hour: int = 10
    pending_window: timedelta = timedelta(hours=2)


class TopUpLimitReached(DomainError):
    """A driver asked for more top-ups than :class:`TopUpLimits` allows; ``retry_after`` in seconds."""

    code = "too_many_top_ups"

    def __init__(self, message: str, retry_after: int, **details: Any) -> None:
        super().__init__(message, **details)
        self.retry_after = retry_after


class TooManyPendingTopUps(TopUpLimitReached):
    code = "too_many_pending_top_ups"


class Providers:
    """Builds the adapter for a channel: notification URLs under ``public_base_url``.

    ``gateways`` points the SDKs elsewhere (``{"wechat": url, "alipay": url}``); only the offline
    contract tests use it, to play the platforms on loopback.
    """

    def __init__(self, public_base_url: str, *, gateways: dict[str, str] | None = None,
                 now: Callable[[], datetime] = utcnow) -> None:
        self.base = public_base_url.rstrip("/")
        self.gateways = gateways or {}
        self.now = now

    def notify_url(self, channel: Channel) -> str:
        return f"{self.base}/pay/{channel.provider}/notify/{channel.tenant_id}/{channel.name}"

    def __call__(self, channel: Channel) -> Any:
        kind = {"wechat": WeChatPayAdapter, "alipay": AlipayAdapter}[channel.provider]
        return kind(channel.config, self.notify_url(channel), gateway=self.gateways.get(channel.provider),
                    now=self.now)


def request_tag(wallet_id: UUID, request_id: str) -> str:
    """The tail of the refund numbers one operator refund request makes: ``O`` + 16 hex (44 characters in all)."""
    return "O" + hashlib.sha256(f"{wallet_id}:{request_id}".encode()).hexdigest()[:16]


def new_out_trade_no(at: datetime) -> str:
    """``T`` + UTC yyyymmddHHMMSS + 12 hex: 27 characters, within both platforms' limits."""
    return f"T{at.astimezone(UTC):%Y%m%d%H%M%S}{secrets.token_hex(6)}"


def created_at(out_trade_no: str) -> datetime | None:
    """When an order was created, read back from its ``out_trade_no`` (None if it is not one of ours)."""
    try:
        return datetime.strptime(out_trade_no[1:15], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None


class PaymentService:
    def __init__(self, ledger: Ledger, payments: Payments, channels: Channels, providers: ProviderFactory,
                 *, now: Callable[[], datetime] = utcnow, description: str = "Charging wallet top-up",
                 limits: TopUpLimits | None = None) -> None:
        self.limits = limits or TopUpLimits()
        self.ledger = ledger
        self.payments = payments
        self.channels = channels
        self.providers = providers
        self.now = now
        self.description = description

    def provider_for(self, tenant_id: UUID, channel_name: str) -> tuple[Channel, PaymentProvider]:
        channel = self.channels.open(tenant_id, channel_name)
        return channel, self.providers(channel)

    def wallet_id(self, tenant_id: UUID, driver_id: str) -> UUID:
        wallet_id = Wallet.create_id(tenant_id, driver_id)
        if wallet_id not in self.ledger.wallets.repository:
            self.ledger.open_wallet(tenant_id, driver_id, "driver")
        return wallet_id

    # ---- top-up ----------------------------------------------------------------------------
    def create_top_up(self, payer: Payer, amount_fen: int) -> TopUp:
        channel, provider = self.provider_for(payer.tenant_id, payer.channel)
        if not channel.enabled:
            raise NotFound(f"no payment channel {payer.channel}", channel=payer.channel)
        at = self.now()
        self.check_top_up_limits(self.wallet_id(payer.tenant_id, payer.driver_id), at)
        out_trade_no = new_out_trade_no(at)
        order = PaymentOrder.create(tenant_id=payer.tenant_id, wallet_id=self.wallet_id(payer.tenant_id, payer.driver_id),
                                    driver_id=payer.driver_id, provider=channel.provider, channel=channel.name,
                                    amount_fen=amount_fen, out_trade_no=out_trade_no, at=at)
        self.payments.create_order(order)
        try:
            prepay = provider.prepay(out_trade_no, amount_fen, self.description, payer.payer)
        except ProviderError as error:
            self._order(out_trade_no, lambda o: o.fail_prepay(reason=error.message, at=self.now()))
            raise
        self._order(out_trade_no, lambda o: o.prepare(provider_ref=prepay.provider_ref, at=self.now()))
        return TopUp(out_trade_no, channel.provider, amount_fen, prepay.pay_params)

    def check_top_up_limits(self, wallet_id: UUID, now: datetime) -> None:
        """Refuse a top-up beyond :class:`TopUpLimits`, before the platform is called. Orders' creation times
        are read from their numbers, so only the unpaid recent ones are loaded. Requests racing each other
        may each pass: the overshoot is at most the driver's requests in flight."""
        hour = timedelta(hours=1)
        recent = [(no, at) for no in self.payments.orders_of(wallet_id)
                  if (at := created_at(no)) is not None and at > now - max(hour, self.limits.pending_window)]
        this_hour = sorted(at for _, at in recent if at > now - hour)
        if len(this_hour) >= self.limits.per_hour:
            wait = this_hour[-self.limits.per_hour] + hour - now
            raise TopUpLimitReached(f"at most {self.limits.per_hour} top-ups an hour", int(wait.total_seconds()) + 1,
                                    limit=self.limits.per_hour, window_s=3600)
        pending = [no for no, at in recent if at > now - self.limits.pending_window
                   and self.payments.order(no).state in ("created", "prepared")]
        if len(pending) >= self.limits.pending:
            raise TooManyPendingTopUps(f"at most {self.limits.pending} unpaid top-ups at once: pay or wait for one",
                                       60, limit=self.limits.pending, pending=pending)

    def order_of(self, payer: Payer, out_trade_no: str) -> PaymentOrder:
        """A driver's own order; anyone else's is not found."""
        try:
            order = self.payments.order(out_trade_no)
        except NotFound:
            order = None
        if order is None or order.tenant_id != payer.tenant_id or order.driver_id != payer.driver_id:
            raise NotFound(f"no top-up {out_trade_no}", out_trade_no=out_trade_no)
        return order

    # ---- notifications ---------------------------------------------------------------------
    def handle_notification(self, provider_name: str, tenant_id: UUID, channel_name: str,
                            headers: dict[str, str], body: bytes) -> NotificationResult:
        """Verify a platform's notification and act on it; raises a NotificationRefused subclass (or
        NotFound, PaymentAmountMismatch) before writing anything if it is not acceptable."""
        channel, provider = self.provider_for(tenant_id, channel_name)
        if channel.provider != provider_name:
            raise NotFound(f"no {provider_name} channel {channel_name}", channel=channel_name)
        notice = provider.parse_notification(headers, body)
        if isinstance(notice, PaymentNotice):
            return self._paid(channel, notice)
        if isinstance(notice, RefundNotice):
            order = self._order_of_channel(channel, notice.out_trade_no)
            status = self._apply_refund(order, notice.out_refund_no, notice.outcome)
            return NotificationResult(f"refund_{status}", order.out_trade_no, {"out_refund_no": notice.out_refund_no})
        assert isinstance(notice, IgnoredNotice)
        return NotificationResult("ignored", details={"reason": notice.reason, **notice.details})

    def _order_of_channel(self, channel: Channel, out_trade_no: str) -> PaymentOrder:
        try:
            order = self.payments.order(out_trade_no)
        except NotFound:
            raise NotFound(f"no payment order {out_trade_no}", out_trade_no=out_trade_no) from None
        if (order.tenant_id, order.channel, order.provider) != (channel.tenant_id, channel.name, channel.provider):
            raise AppMismatch(f"order {out_trade_no} belongs to another channel", out_trade_no=out_trade_no)
        return order

    def _paid(self, channel: Channel, notice: PaymentNotice) -> NotificationResult:
        order = self._order_of_channel(channel, notice.out_trade_no)
        if notice.amount_fen != order.amount_fen:
            raise PaymentAmountMismatch(f"order {order.out_trade_no} is for {order.amount_fen} fen, the "
                                        f"notification says {notice.amount_fen}", out_trade_no=order.out_trade_no)
        first = self._order(order.out_trade_no, lambda o: o.pay(
            transaction_id=notice.transaction_id, amount_fen=notice.amount_fen, notified_at=notice.notified_at,
            notification_digest=notice.digest))
        credited = self.credit_paid(order.out_trade_no)
        return NotificationResult("credited" if first or credited else "duplicate", order.out_trade_no)

    def credit_paid(self, out_trade_no: str) -> bool:
        """Top the wallet up from a paid order, once. True if this call recorded ``Credited``."""
        order = self.payments.order(out_trade_no)
        if order.state != "paid":
            return False
        self.ledger.top_up(order.wallet_id, key=f"topup:{out_trade_no}", amount=order.amount_fen,
                           provider=order.provider, payment_ref=out_trade_no)
        return bool(self._order(out_trade_no, lambda o: o.credit(at=self.now())))

    # ---- refunds ---------------------------------------------------------------------------
    def request_refund(self, payer: Payer, amount_fen: int | None = None,
                       reason: str = "wallet refund") -> list[RefundView]:
        """A driver's refund of ``amount_fen`` (default: all available) through the payments it came from."""
        return self.refund_wallet(payer.tenant_id, payer.driver_id, amount_fen, reason)

    def refund_wallet(self, tenant_id: UUID, driver_id: str, amount_fen: int | None, reason: str, *,
                      request_id: str | None = None, provider: str | None = None) -> list[RefundView]:
        """Refund ``amount_fen`` (default: all available) through the payments it came from, newest first
        (only ``provider``'s, when named). With a ``request_id`` (an operator's refund id) the refund
        numbers derive from it, so asking again with it returns the refunds it made instead of new ones."""
        wallet_id = Wallet.create_id(tenant_id, driver_id)
        wallet = self.ledger.wallet(wallet_id)
        tag = None if request_id is None else request_tag(wallet_id, request_id)
        if tag is not None:
            done = self._refunds_tagged(wallet_id, tag)
            if done:
                if amount_fen is not None and sum(v.amount_fen for v in done) != amount_fen:
                    raise IdempotencyConflict(f"refund {request_id} was asked before with another amount",
                                              refund_id=request_id)
                return done
        amount = wallet.available if amount_fen is None else amount_fen
        if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
            raise InvalidAmount(f"a refund is a positive number of fen, got {amount!r}")
        if amount > wallet.available:
            raise InsufficientFunds(f"cannot refund {amount} fen: {wallet.available} fen available",
                                    available=wallet.available, wanted=amount)
        plan: list[tuple[PaymentOrder, int]] = []
        left = amount
        for out_trade_no in reversed(self.payments.orders_of(wallet_id)):
            if left == 0:
                break
            order = self.payments.order(out_trade_no)
            part = min(left, order.refundable) if provider in (None, order.provider) else 0
            if part > 0:
                plan.append((order, part))
                left -= part
        if left:
            raise RefundRefused(f"only {amount - left} fen of the wallet came from refundable payments",
                                refundable=amount - left, wanted=amount)
        return [self._refund(wallet_id, order, part, reason,
                             f"{order.out_trade_no}{tag or 'R' + secrets.token_hex(4)}") for order, part in plan]

    def refunds_requested(self, tenant_id: UUID, driver_id: str, request_id: str) -> list[RefundView]:
        """The refunds an operator's refund request ``request_id`` made for this driver, as they stand now."""
        wallet_id = Wallet.create_id(tenant_id, driver_id)
        return self._refunds_tagged(wallet_id, request_tag(wallet_id, request_id))

    def _refunds_tagged(self, wallet_id: UUID, tag: str) -> list[RefundView]:
        """The refunds an earlier request with this tag made, as they stand now."""
        status = {"pending": "processing", "succeeded": "succeeded", "failed": "failed"}
        return [RefundView(order.out_trade_no, no, order.provider, refund["amount"], status[refund["state"]],
                           refund.get("reason", ""))
                for order in map(self.payments.order, self.payments.orders_of(wallet_id))
                for no, refund in order.refunds.items() if no.endswith(tag)]

    def _refund(self, wallet_id: UUID, order: PaymentOrder, amount_fen: int, reason: str,
                out_refund_no: str) -> RefundView:
        view = RefundView(order.out_trade_no, out_refund_no, order.provider, amount_fen, "failed")
        self.ledger.request_refund(wallet_id, key=f"refund:{out_refund_no}",
                                   refund_id=out_refund_no, amount=amount_fen, provider=order.provider)
        try:
            self._order(order.out_trade_no, lambda o: o.create_refund(
                out_refund_no=out_refund_no, amount_fen=amount_fen, reason=reason, at=self.now()))
        except RefundRefused as refused:  # a racing refund took this order's refundable amount
            self.ledger.fail_refund(wallet_id, key=f"refund-failed:{out_refund_no}",
                                    refund_id=out_refund_no, reason=refused.message)
            view.reason = refused.message
            return view
        _, provider = self.provider_for(order.tenant_id, order.channel)
        outcome = provider.refund(order.out_trade_no, out_refund_no, amount_fen, order.amount_fen, reason)
        view.status = self._apply_refund(self.payments.order(order.out_trade_no), out_refund_no, outcome)
        view.reason = outcome.reason
        return view

    def reconcile_refund(self, out_trade_no: str, out_refund_no: str) -> str:
        """Ask the platform about a refund still processing (a lost answer, a missed notification)."""
        order = self.payments.order(out_trade_no)
        _, provider = self.provider_for(order.tenant_id, order.channel)
        return self._apply_refund(order, out_refund_no, provider.query_refund(out_trade_no, out_refund_no))

    def _apply_refund(self, order: PaymentOrder, out_refund_no: str, outcome: RefundOutcome) -> str:
        """Record a refund's outcome on the order and the wallet; each step idempotent."""
        refund = order.refunds.get(out_refund_no)
        if refund is None:
            raise NotFound(f"no refund {out_refund_no} on order {order.out_trade_no}", out_refund_no=out_refund_no)
        at = self.now()
        if outcome.status == "succeeded":
            amount = refund["amount"] if outcome.amount_fen is None else outcome.amount_fen
            self._order(order.out_trade_no, lambda o: o.refund_succeeded(
                out_refund_no=out_refund_no, provider_ref=outcome.provider_ref, amount_fen=amount, at=at))
            ref = self.payments.order(order.out_trade_no).refunds[out_refund_no]["provider_ref"]
            self.ledger.complete_refund(order.wallet_id, key=f"refund-done:{out_refund_no}",
                                        refund_id=out_refund_no, provider_ref=ref)
        elif outcome.status == "failed":
            self._order(order.out_trade_no, lambda o: o.refund_failed(
                out_refund_no=out_refund_no, reason=outcome.reason, at=at))
            why = self.payments.order(order.out_trade_no).refunds[out_refund_no]["reason"]
            self.ledger.fail_refund(order.wallet_id, key=f"refund-failed:{out_refund_no}",
                                    refund_id=out_refund_no, reason=why)
        return outcome.status

    def _order(self, out_trade_no: str, change: Callable[[PaymentOrder], Any]) -> Any:
        return self.payments.update(PaymentOrder.create_id(out_trade_no), PaymentOrder, "payment order", change)
