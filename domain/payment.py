"""Payments: a driver's wallet top-up as a payment order, its refunds, and the channels that take them.

A :class:`PaymentOrder` is keyed by our ``out_trade_no`` (aggregate id = uuid5 of it), so a payment
platform's notification, which names that number, finds its order without an index, and two
deliveries of one notification land on one aggregate: the version check lets one of them record
``Paid`` and the other sees it already paid. The order only moves to ``Paid`` after the adapter
verified the notification (signature, decryption, timestamp, app id, amount); the wallet top-up
that follows uses the key ``topup:<out_trade_no>`` (and ``payment_ref=<out_trade_no>``), so crediting
twice is impossible whichever process runs it, and ``Credited`` records that it happened.

A :class:`PaymentChannel` is one mini-program with its merchant account at one tenant. What the
platforms issued (app id, app secret, merchant keys) is kept only *sealed* (encrypted by
``adapters.payments.config``); the domain never sees it in plain text.

:class:`DriverPayments` lists a wallet's orders, so a refund can find the payments the money came
from without scanning the event store. It is saved in the same transaction as each new order.
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.applications import CACHED, LedgerApplication, retry_on_conflict
from domain.errors import DomainError, InvalidAmount, InvalidTransition, NotFound
from domain.ids import derived_id

PAYMENT_PROVIDERS = ("wechat", "alipay")
MAX_TOP_UP_FEN = 5_000_00  # one top-up is at most 5,000 yuan


class PaymentAmountMismatch(DomainError):
    code = "payment_amount_mismatch"


class DuplicatePayment(DomainError):
    """A second, different transaction claims to have paid an order already paid."""

    code = "duplicate_payment"


class RefundRefused(DomainError):
    code = "refund_refused"


class PaymentChannel(Aggregate):
    """A mini-program and its merchant account at one tenant; ``name`` is ours (it appears in URLs)."""

    @staticmethod
    def create_id(tenant_id: UUID, name: str) -> UUID:
        return derived_id("payment-channel", tenant_id, name)

    @event("Configured")
    def __init__(self, tenant_id: UUID, name: str, provider: str, sealed: str, author: str) -> None:
        self.tenant_id = tenant_id
        self.name = name
        self.provider = provider
        self.sealed = sealed  # the platform's credentials, encrypted; see adapters.payments.config
        self.enabled = True

    @classmethod
    def configure(cls, tenant_id: UUID, name: str, provider: str, sealed: str, author: str) -> PaymentChannel:
        if provider not in PAYMENT_PROVIDERS:
            raise InvalidAmount(f"unknown payment provider {provider!r}; known: {list(PAYMENT_PROVIDERS)}")
        if not name or not name.replace("-", "").replace("_", "").isalnum() or len(name) > 32:
            raise InvalidAmount(f"a channel name is 1-32 letters, digits, '-' or '_', got {name!r}")
        return cls(tenant_id=tenant_id, name=name, provider=provider, sealed=sealed, author=author)

    @event("Reconfigured")
    def reconfigure(self, sealed: str, author: str) -> None:
        self.sealed = sealed

    @event("Disabled")
    def disable(self, reason: str, author: str) -> None:
        self.enabled = False


class PaymentOrder(Aggregate):
    """created → prepared → paid → credited; refunds against a credited order."""

    @staticmethod
    def create_id(out_trade_no: str) -> UUID:
        return derived_id("payment-order", out_trade_no)

    @event("Created")
    def __init__(self, tenant_id: UUID, wallet_id: UUID, driver_id: str, provider: str, channel: str,
                 amount_fen: int, out_trade_no: str, at: datetime) -> None:
        self.tenant_id = tenant_id
        self.wallet_id = wallet_id
        self.driver_id = driver_id
        self.provider = provider
        self.channel = channel  # our channel name; the platform's app id stays sealed in the channel
        self.amount_fen = amount_fen
        self.out_trade_no = out_trade_no
        self.created_at = at
        self.state = "created"
        self.provider_ref = ""  # WeChat prepay_id / Alipay trade_no
        self.transaction_id = ""
        self.paid_at: datetime | None = None
        self.credited_at: datetime | None = None
        self.failure = ""
        self.refunds: dict[str, dict[str, Any]] = {}  # out_refund_no -> {amount, state, provider_ref, reason}

    @classmethod
    def create(cls, *, tenant_id: UUID, wallet_id: UUID, driver_id: str, provider: str, channel: str,
               amount_fen: int, out_trade_no: str, at: datetime) -> PaymentOrder:
        if provider not in PAYMENT_PROVIDERS:
            raise InvalidAmount(f"unknown payment provider {provider!r}")
        if not isinstance(amount_fen, int) or isinstance(amount_fen, bool) or not 0 < amount_fen <= MAX_TOP_UP_FEN:
            raise InvalidAmount(f"a top-up is 1 to {MAX_TOP_UP_FEN} fen, got {amount_fen!r}",
                                amount_fen=amount_fen)
        return cls(tenant_id=tenant_id, wallet_id=wallet_id, driver_id=driver_id, provider=provider,
                   channel=channel, amount_fen=amount_fen, out_trade_no=out_trade_no, at=at)

    # ---- read side -------------------------------------------------------------------------
    @property
    def refundable(self) -> int:
        """What may still be refunded: the paid amount less every refund not failed."""
        if self.state != "credited":
            return 0
        return self.amount_fen - sum(r["amount"] for r in self.refunds.values() if r["state"] != "failed")

    def as_dict(self) -> dict[str, Any]:
        return {"out_trade_no": self.out_trade_no, "provider": self.provider, "channel": self.channel,
                "amount_fen": self.amount_fen, "state": self.state, "created_at": self.created_at,
                "paid_at": self.paid_at, "credited_at": self.credited_at,
                "refunds": [{"out_refund_no": k, **v} for k, v in self.refunds.items()]}

    # ---- payment ---------------------------------------------------------------------------
    def prepare(self, provider_ref: str, at: datetime) -> None:
        if self.state != "created":
            return  # a repeated prepay call, or the notification came first: nothing to record
        self._prepared(provider_ref=provider_ref, at=at)

    @event("Prepared")
    def _prepared(self, provider_ref: str, at: datetime) -> None:
        self.provider_ref = provider_ref
        self.state = "prepared"

    def fail_prepay(self, reason: str, at: datetime) -> None:
        if self.state in ("created", "prepared"):
            self._prepay_failed(reason=reason, at=at)

    @event("PrepayFailed")
    def _prepay_failed(self, reason: str, at: datetime) -> None:
        self.state = "failed"
        self.failure = reason

    def pay(self, transaction_id: str, amount_fen: int, notified_at: datetime, notification_digest: str) -> bool:
        """Record a verified payment. False if this transaction was recorded before (a redelivery)."""
        if self.transaction_id:
            if self.transaction_id == transaction_id:
                return False
            raise DuplicatePayment(f"order {self.out_trade_no} was already paid by another transaction",
                                   out_trade_no=self.out_trade_no)
        if amount_fen != self.amount_fen:
            raise PaymentAmountMismatch(f"order {self.out_trade_no} is for {self.amount_fen} fen, paid {amount_fen}",
                                        out_trade_no=self.out_trade_no, expected=self.amount_fen, got=amount_fen)
        # a payment can arrive after our prepay call failed (a timeout that in fact went through):
        # the money is the driver's all the same, so it is recorded and credited
        self._paid(transaction_id=transaction_id, amount_fen=amount_fen, notified_at=notified_at,
                   notification_digest=notification_digest)
        return True

    @event("Paid")
    def _paid(self, transaction_id: str, amount_fen: int, notified_at: datetime, notification_digest: str) -> None:
        self.transaction_id = transaction_id
        self.paid_at = notified_at
        self.state = "paid"

    def credit(self, at: datetime) -> bool:
        """Record that the wallet was topped up. False if it was recorded before."""
        if self.state == "credited":
            return False
        if self.state != "paid":
            raise InvalidTransition(f"order {self.out_trade_no} is {self.state}, not paid")
        self._credited(at=at)
        return True

    @event("Credited")
    def _credited(self, at: datetime) -> None:
        self.credited_at = at
        self.state = "credited"

    # ---- refunds ---------------------------------------------------------------------------
    def create_refund(self, out_refund_no: str, amount_fen: int, reason: str, at: datetime) -> bool:
        """Record a refund about to be sent to the platform. False if this refund was created before."""
        known = self.refunds.get(out_refund_no)
        if known is not None:
            if known["amount"] != amount_fen:
                raise RefundRefused(f"refund {out_refund_no} exists with another amount", out_refund_no=out_refund_no)
            return False
        if not isinstance(amount_fen, int) or isinstance(amount_fen, bool) or amount_fen <= 0:
            raise InvalidAmount(f"a refund is a positive number of fen, got {amount_fen!r}")
        if amount_fen > self.refundable:
            raise RefundRefused(f"order {self.out_trade_no} has {self.refundable} fen refundable, asked {amount_fen}",
                                out_trade_no=self.out_trade_no, refundable=self.refundable, wanted=amount_fen)
        self._refund_created(out_refund_no=out_refund_no, amount_fen=amount_fen, reason=reason, at=at)
        return True

    @event("RefundCreated")
    def _refund_created(self, out_refund_no: str, amount_fen: int, reason: str, at: datetime) -> None:
        self.refunds[out_refund_no] = {"amount": amount_fen, "state": "pending", "provider_ref": "", "reason": reason}

    def refund_succeeded(self, out_refund_no: str, provider_ref: str, amount_fen: int, at: datetime) -> bool:
        refund = self._refund(out_refund_no)
        if refund["state"] == "succeeded":
            return False
        if refund["state"] == "failed":
            raise InvalidTransition(f"refund {out_refund_no} already failed", out_refund_no=out_refund_no)
        if amount_fen != refund["amount"]:
            raise PaymentAmountMismatch(f"refund {out_refund_no} is for {refund['amount']} fen, platform says "
                                        f"{amount_fen}", out_refund_no=out_refund_no)
        self._refund_succeeded(out_refund_no=out_refund_no, provider_ref=provider_ref, at=at)
        return True

    @event("RefundSucceeded")
    def _refund_succeeded(self, out_refund_no: str, provider_ref: str, at: datetime) -> None:
        self.refunds[out_refund_no]["state"] = "succeeded"
        self.refunds[out_refund_no]["provider_ref"] = provider_ref

    def refund_failed(self, out_refund_no: str, reason: str, at: datetime) -> bool:
        refund = self._refund(out_refund_no)
        if refund["state"] == "failed":
            return False
        if refund["state"] == "succeeded":
            raise InvalidTransition(f"refund {out_refund_no} already succeeded", out_refund_no=out_refund_no)
        self._refund_failed(out_refund_no=out_refund_no, reason=reason, at=at)
        return True

    @event("RefundFailed")
    def _refund_failed(self, out_refund_no: str, reason: str, at: datetime) -> None:
        self.refunds[out_refund_no]["state"] = "failed"
        self.refunds[out_refund_no]["reason"] = reason

    def _refund(self, out_refund_no: str) -> dict[str, Any]:
        try:
            return self.refunds[out_refund_no]
        except KeyError:
            raise NotFound(f"no refund {out_refund_no} on order {self.out_trade_no}",
                           out_refund_no=out_refund_no) from None


class DriverPayments(Aggregate):
    """The payment orders of one wallet, newest last."""

    @staticmethod
    def create_id(wallet_id: UUID) -> UUID:
        return derived_id("driver-payments", wallet_id)

    @event("Opened")
    def __init__(self, tenant_id: UUID, wallet_id: UUID) -> None:
        self.tenant_id = tenant_id
        self.wallet_id = wallet_id
        self.orders: list[str] = []

    @event("OrderAdded")
    def add_order(self, out_trade_no: str) -> None:
        self.orders = [*self.orders, out_trade_no]


class Payments(LedgerApplication):
    """Payment channels, orders and each wallet's list of orders, in the ``payments_events`` table."""

    name = "Payments"
    env = CACHED  # noqa: RUF012

    def channel(self, tenant_id: UUID, name: str) -> PaymentChannel:
        return self.get(PaymentChannel.create_id(tenant_id, name), PaymentChannel, "payment channel")

    def order(self, out_trade_no: str) -> PaymentOrder:
        return self.get(PaymentOrder.create_id(out_trade_no), PaymentOrder, "payment order")

    def orders_of(self, wallet_id: UUID) -> list[str]:
        try:
            return list(self.get(DriverPayments.create_id(wallet_id), DriverPayments, "payments").orders)
        except NotFound:
            return []

    def create_order(self, order: PaymentOrder) -> None:
        """Save a new order and add it to its wallet's list, in one transaction."""

        def attempt() -> None:
            try:
                index = self.get(DriverPayments.create_id(order.wallet_id), DriverPayments, "payments")
            except NotFound:
                index = DriverPayments(tenant_id=order.tenant_id, wallet_id=order.wallet_id)
            index.add_order(order.out_trade_no)
            self.save(copy.deepcopy(order), index)  # a copy: a save that loses a race consumed its events

        retry_on_conflict(attempt, on_conflict=lambda: self.evict(DriverPayments.create_id(order.wallet_id)))
