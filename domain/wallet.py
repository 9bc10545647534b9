"""A driver's wallet as a double-entry ledger in fen.

Every command records one or more *posting sets*: lists of ``[account, amount]`` where a positive
amount is a debit and a negative one a credit, and every set sums to zero. The wallet's own accounts
are liabilities towards the driver (``available``, ``held``, ``refund_pending``) and an asset
(``arrears``, what the driver owes after a bill the wallet could not cover).

A **partner account** (a platform paying for its users' sessions: T/CEC's customer platform) has a
credit line (:meth:`Wallet.open_credit_line`): what it is billed beyond its available balance is owed,
without limit, on its receivable account (``receivable:<partner>``) instead of ``arrears``. The counter-accounts
are the platform's: payment-provider clearing, electricity and service revenue, operator
adjustments. Their balances are the sums of postings over all wallets (see ``trial_balance``).

A driver's **roaming charge** (on another operator's pile: :mod:`domain.roaming`) is paid to that
infrastructure peer, not to revenue: ``capture_to_payable`` and ``charge_to_payable`` post to
``payable:<peer>``, what we owe the peer. They are commands of their own, so the fingerprints and stored
events of ``capture`` and ``charge`` are unchanged.

Every command carries an idempotency key. Repeating a key with the same arguments changes nothing
and returns the earlier outcome; reusing it with different arguments is refused.
"""

from __future__ import annotations

import re
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain import changes
from domain.aggregate import shallow_clone
from domain.errors import (
    CaptureExceedsHold,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidAmount,
    UnknownHold,
    UnknownRefund,
)
from domain.ids import derived_id
from domain.postings import Posting, idempotent, posting_sets_of
from domain.postings import checked_amount as _amount
from domain.postings import fingerprint as _fingerprint
from domain.postings import posting_set as _posting_set

AVAILABLE, HELD, REFUND_PENDING, ARREARS = "available", "held", "refund_pending", "arrears"
REVENUE_ELECTRICITY, REVENUE_SERVICE = "revenue:electricity", "revenue:service"
ADJUSTMENTS = "operator:adjustments"
RECEIVABLE = "receivable:"  # a partner's account of what it owes: receivable:<partner>
PARTNER = "partner:"  # the driver id of a partner's account: partner:<partner> (reserved: no driver has it)
PAYABLE = "payable:"  # what we owe an infrastructure peer for our drivers' roaming charges: payable:<peer>
PROVIDERS = ("wechat", "alipay", "cash")
PEER = re.compile(r"^[0-9A-Za-z]{9}$")  # a T/CEC OperatorID


def clearing(provider: str) -> str:
    return f"clearing:{provider}"


def receivable(partner: str) -> str:
    """The account of what a partner platform owes us (T/CEC: its OperatorID)."""
    return f"{RECEIVABLE}{partner}"


def partner_driver_id(partner: str) -> str:
    """The driver id of a partner platform's account (``Wallet.create_id(tenant, partner_driver_id(p))``)."""
    return f"{PARTNER}{partner}"


def payable(peer: str) -> str:
    """The account of what we owe an infrastructure peer (T/CEC: its OperatorID) for our drivers'
    charges on its piles; refuses anything that is not an OperatorID, so no other account is named."""
    if not isinstance(peer, str) or not PEER.match(peer):
        raise InvalidAmount(f"a peer is a T/CEC OperatorID (9 letters or digits), got {peer!r}", peer=str(peer))
    return f"{PAYABLE}{peer}"


class Wallet(Aggregate):
    # What a bill the available balance cannot cover is owed on: arrears, or a partner's receivable
    # (open_credit_line). A class default for snapshots taken before credit lines existed.
    owed_to: str = ARREARS

    @staticmethod
    def create_id(tenant_id: UUID, driver_id: str) -> UUID:
        return derived_id("wallet", tenant_id, driver_id)

    @event("Opened")
    def __init__(self, tenant_id: UUID, driver_id: str, author: str) -> None:
        self.tenant_id = tenant_id
        self.driver_id = driver_id
        changes.wallet_opened(self, {})  # the books: balances, holds, refunds (domain/changes.py)
        self.outcomes: dict[str, str] = {}  # idempotency key -> fingerprint of the command

    def __deepcopy__(self, memo: dict[int, Any]) -> Wallet:
        """Commands get a copy of the cached wallet: copy the containers commands mutate in place."""
        clone = shallow_clone(self)
        clone.balances = dict(self.balances)
        clone.holds = dict(self.holds)
        clone.refunds = {k: dict(v) for k, v in self.refunds.items()}
        clone.outcomes = dict(self.outcomes)
        clone._pending_events = list(self._pending_events)
        return clone

    # ---- read side -------------------------------------------------------------------------
    @property
    def available(self) -> int:
        return -self.balances.get(AVAILABLE, 0)

    @property
    def held(self) -> int:
        return -self.balances.get(HELD, 0)

    @property
    def refund_pending(self) -> int:
        return -self.balances.get(REFUND_PENDING, 0)

    @property
    def arrears(self) -> int:
        return self.balances.get(ARREARS, 0)

    @property
    def owed(self) -> int:
        """What the holder owes: arrears, or for a partner's account its receivable."""
        return self.balances.get(self.owed_to, 0)

    def seen(self, key: str, command: str, args: dict[str, Any]) -> bool:
        """True if this exact command already ran; raises if the key was used for another."""
        fp = self.outcomes.get(key)
        if fp is None:
            return False
        if fp != _fingerprint(command, args):
            raise IdempotencyConflict(f"idempotency key {key!r} was already used for a different command", key=key)
        return True

    # ---- commands --------------------------------------------------------------------------
    @idempotent
    def open_credit_line(self, key: str, fp: str, account: str) -> None:
        """Make this a partner's account: what a bill leaves uncovered is owed on ``account`` (its
        receivable, ``receivable:<partner>``), without limit. Only before any money moved."""
        if not isinstance(account, str) or not account.startswith(RECEIVABLE) or account == RECEIVABLE:
            raise InvalidAmount(f"a credit line is owed on a receivable account ({RECEIVABLE}<partner>), "
                                f"got {account!r}")
        if self.owed_to != ARREARS or any(self.balances.values()) or self.holds or self.refunds:
            raise InvalidAmount("a credit line is opened on a new wallet, before any money moved")
        self._credit_line_opened(key=key, fp=fp, account=account)

    @idempotent
    def top_up(self, key: str, fp: str, amount: int, provider: str, payment_ref: str) -> None:
        _amount(amount, "top-up amount")
        if provider not in PROVIDERS:
            raise InvalidAmount(f"unknown payment provider {provider!r}; known: {list(PROVIDERS)}")
        postings = self._back_to_driver(clearing(provider), amount)
        self._topped_up(key=key, fp=fp, postings=postings, provider=provider,
                        payment_ref=payment_ref)

    @idempotent
    def hold(self, key: str, fp: str, hold_id: str, amount: int) -> None:
        _amount(amount, "hold amount")
        if hold_id in self.holds:
            raise InvalidAmount(f"hold {hold_id} already exists", hold_id=hold_id)
        if amount > self.available:
            raise InsufficientFunds(
                f"cannot hold {amount} fen: {self.available} fen available", available=self.available, wanted=amount
            )
        self._hold_placed(key=key, fp=fp, hold_id=hold_id,
                          postings=_posting_set((AVAILABLE, amount), (HELD, -amount)))

    @idempotent
    def capture(self, key: str, fp: str, hold_id: str, electricity: int, service: int) -> None:
        """Take a bill out of a hold, then release what is left of it back to available."""
        _amount(electricity, "electricity amount", allow_zero=True)
        _amount(service, "service amount", allow_zero=True)
        held = self._open_hold(hold_id)
        if electricity + service > held:
            raise CaptureExceedsHold(
                f"capture of {electricity + service} fen exceeds hold {hold_id} of {held} fen",
                hold_id=hold_id, held=held, wanted=electricity + service,
            )
        rest = held - electricity - service
        capture = _posting_set((HELD, electricity + service), (REVENUE_ELECTRICITY, -electricity),
                               (REVENUE_SERVICE, -service))
        release = self._back_to_driver(HELD, rest)
        self._captured(key=key, fp=fp, hold_id=hold_id,
                       postings=capture, release=release)

    @idempotent
    def release(self, key: str, fp: str, hold_id: str) -> None:
        held = self._open_hold(hold_id)
        self._released(key=key, fp=fp, hold_id=hold_id,
                       postings=self._back_to_driver(HELD, held))

    @idempotent
    def charge(self, key: str, fp: str, electricity: int, service: int, reference: str) -> None:
        """Bill without a hold (an offline start, a bill above its hold, a re-price, a partner's session).

        Takes what the available balance covers; the rest becomes arrears, repaid by the next top-up
        (on a partner's account: its receivable).
        """
        _amount(electricity, "electricity amount", allow_zero=True)
        _amount(service, "service amount", allow_zero=True)
        total = electricity + service
        covered = min(total, self.available)
        postings = _posting_set((AVAILABLE, covered), (self.owed_to, total - covered),
                                (REVENUE_ELECTRICITY, -electricity), (REVENUE_SERVICE, -service))
        self._charged(key=key, fp=fp, reference=reference, postings=postings)

    @idempotent
    def capture_to_payable(self, key: str, fp: str, hold_id: str, amount: int, peer: str) -> None:
        """Pay an infrastructure peer's bill out of a hold (a roaming charge): ``held`` -> ``payable:<peer>``,
        then the rest of the hold back to the driver. No revenue: the money is the peer's."""
        _amount(amount, "payable amount", allow_zero=True)
        account = payable(peer)
        held = self._open_hold(hold_id)
        if amount > held:
            raise CaptureExceedsHold(f"capture of {amount} fen exceeds hold {hold_id} of {held} fen",
                                     hold_id=hold_id, held=held, wanted=amount)
        self._captured_to_payable(key=key, fp=fp, hold_id=hold_id, peer=peer,
                                  postings=_posting_set((HELD, amount), (account, -amount)),
                                  release=self._back_to_driver(HELD, held - amount))

    @idempotent
    def charge_to_payable(self, key: str, fp: str, amount: int, peer: str, reference: str) -> None:
        """What a peer's bill comes to beyond its hold: from the available balance, the rest owed
        (arrears), all of it to ``payable:<peer>``."""
        _amount(amount, "payable amount")
        account = payable(peer)
        covered = min(amount, self.available)
        self._charged_to_payable(key=key, fp=fp, peer=peer, reference=reference,
                                 postings=_posting_set((AVAILABLE, covered), (self.owed_to, amount - covered),
                                                       (account, -amount)))

    @idempotent
    def credit_back(self, key: str, fp: str, electricity: int, service: int, reference: str) -> None:
        """Give back part of a bill (a re-price that came out lower): revenue back to arrears, then available."""
        _amount(electricity, "electricity amount", allow_zero=True)
        _amount(service, "service amount", allow_zero=True)
        postings = _posting_set((REVENUE_ELECTRICITY, electricity), (REVENUE_SERVICE, service),
                                *self._owed_first(electricity + service))
        self._credited_back(key=key, fp=fp, reference=reference, postings=postings)

    @idempotent
    def request_refund(self, key: str, fp: str, refund_id: str, amount: int, provider: str) -> None:
        _amount(amount, "refund amount")
        if provider not in PROVIDERS:
            raise InvalidAmount(f"unknown payment provider {provider!r}")
        if refund_id in self.refunds:
            raise InvalidAmount(f"refund {refund_id} already exists", refund_id=refund_id)
        if amount > self.available:
            raise InsufficientFunds(f"cannot refund {amount} fen: {self.available} fen available",
                                    available=self.available, wanted=amount)
        self._refund_requested(key=key, fp=fp, refund_id=refund_id,
                               amount=amount, provider=provider,
                               postings=_posting_set((AVAILABLE, amount), (REFUND_PENDING, -amount)))

    @idempotent
    def complete_refund(self, key: str, fp: str, refund_id: str, provider_ref: str) -> None:
        refund = self._pending_refund(refund_id)
        self._refund_completed(key=key, fp=fp, refund_id=refund_id,
                               provider_ref=provider_ref,
                               postings=_posting_set((REFUND_PENDING, refund["amount"]),
                                                     (clearing(refund["provider"]), -refund["amount"])))

    @idempotent
    def fail_refund(self, key: str, fp: str, refund_id: str, reason: str) -> None:
        refund = self._pending_refund(refund_id)
        self._refund_failed(key=key, fp=fp, refund_id=refund_id, reason=reason,
                            postings=self._back_to_driver(REFUND_PENDING, refund["amount"]))

    @idempotent
    def adjust(self, key: str, fp: str, amount: int, reason: str, author: str) -> None:
        """An operator's correction: positive credits the driver, negative debits (never below zero)."""
        if not isinstance(amount, int) or isinstance(amount, bool) or amount == 0:
            raise InvalidAmount(f"an adjustment is a non-zero integer number of fen, got {amount!r}")
        if not reason.strip():
            raise InvalidAmount("an adjustment needs a reason")
        if -amount > self.available:
            raise InsufficientFunds(f"cannot debit {-amount} fen: {self.available} fen available",
                                    available=self.available, wanted=-amount)
        postings = (self._back_to_driver(ADJUSTMENTS, amount) if amount > 0
                    else _posting_set((ADJUSTMENTS, amount), (AVAILABLE, -amount)))
        self._adjusted(key=key, fp=fp, reason=reason, author=author, postings=postings)

    # ---- helpers ---------------------------------------------------------------------------
    def _owed_first(self, amount: int) -> tuple[tuple[str, int], tuple[str, int]]:
        """The credit legs of money coming to the driver: what they owe (arrears, or a partner's
        receivable) is repaid first."""
        repay = min(amount, self.owed)
        return (self.owed_to, -repay), (AVAILABLE, -(amount - repay))

    def _back_to_driver(self, source: str, amount: int) -> list[Posting]:
        """``amount`` fen from ``source`` to the driver: arrears first, the rest to available.

        Every path that gives the driver money (a top-up, the rest of a hold, a released hold, a
        failed refund, a credit back, a positive adjustment) goes through here, so a wallet never
        shows money available while the driver still owes.
        """
        return _posting_set((source, amount), *self._owed_first(amount))

    def _open_hold(self, hold_id: str) -> int:
        try:
            return self.holds[hold_id]
        except KeyError:
            raise UnknownHold(f"no open hold {hold_id} on this wallet", hold_id=hold_id) from None

    def _pending_refund(self, refund_id: str) -> dict[str, Any]:
        refund = self.refunds.get(refund_id)
        if refund is None or refund["state"] != "requested":
            raise UnknownRefund(f"no pending refund {refund_id} on this wallet", refund_id=refund_id)
        return refund

    def _done(self, key: str, fp: str) -> None:
        """Every event body ends here: its key is spent, and the balances the driver sees hold."""
        self.outcomes[key] = fp
        assert self.available >= 0 and self.held >= 0 and self.refund_pending >= 0 and self.arrears >= 0
        assert self.owed >= 0

    # ---- events: each body applies its change of the books (domain/changes.py), then spends its key
    @event("CreditLineOpened")
    def _credit_line_opened(self, key: str, fp: str, account: str) -> None:
        changes.credit_line_opened(self, {"account": account})
        self._done(key, fp)

    @event("ToppedUp")
    def _topped_up(self, key: str, fp: str, postings: list[Posting], provider: str, payment_ref: str) -> None:
        changes.posted(self, {"postings": postings})
        self._done(key, fp)

    @event("HoldPlaced")
    def _hold_placed(self, key: str, fp: str, hold_id: str, postings: list[Posting]) -> None:
        changes.hold_placed(self, {"hold_id": hold_id, "postings": postings})
        self._done(key, fp)

    @event("Captured")
    def _captured(self, key: str, fp: str, hold_id: str, postings: list[Posting], release: list[Posting]) -> None:
        changes.captured(self, {"hold_id": hold_id, "postings": postings, "release": release})
        self._done(key, fp)

    @event("Released")
    def _released(self, key: str, fp: str, hold_id: str, postings: list[Posting]) -> None:
        changes.released(self, {"hold_id": hold_id, "postings": postings})
        self._done(key, fp)

    @event("Charged")
    def _charged(self, key: str, fp: str, reference: str, postings: list[Posting]) -> None:
        changes.posted(self, {"postings": postings})
        self._done(key, fp)

    @event("CapturedToPayable")
    def _captured_to_payable(self, key: str, fp: str, hold_id: str, peer: str, postings: list[Posting],
                             release: list[Posting]) -> None:
        changes.captured(self, {"hold_id": hold_id, "postings": postings, "release": release})
        self._done(key, fp)

    @event("ChargedToPayable")
    def _charged_to_payable(self, key: str, fp: str, peer: str, reference: str, postings: list[Posting]) -> None:
        changes.posted(self, {"postings": postings})
        self._done(key, fp)

    @event("CreditedBack")
    def _credited_back(self, key: str, fp: str, reference: str, postings: list[Posting]) -> None:
        changes.posted(self, {"postings": postings})
        self._done(key, fp)

    @event("RefundRequested")
    def _refund_requested(self, key: str, fp: str, refund_id: str, amount: int, provider: str,
                          postings: list[Posting]) -> None:
        changes.refund_requested(self, {"refund_id": refund_id, "amount": amount, "provider": provider,
                                "postings": postings})
        self._done(key, fp)

    @event("RefundCompleted")
    def _refund_completed(self, key: str, fp: str, refund_id: str, provider_ref: str,
                          postings: list[Posting]) -> None:
        changes.refund_completed(self, {"refund_id": refund_id, "postings": postings})
        self._done(key, fp)

    @event("RefundFailed")
    def _refund_failed(self, key: str, fp: str, refund_id: str, reason: str, postings: list[Posting]) -> None:
        changes.refund_failed(self, {"refund_id": refund_id, "postings": postings})
        self._done(key, fp)

    @event("Adjusted")
    def _adjusted(self, key: str, fp: str, reason: str, author: str, postings: list[Posting]) -> None:
        changes.posted(self, {"postings": postings})
        self._done(key, fp)


__all__ = ["Posting", "Wallet", "idempotent", "posting_sets_of"]
