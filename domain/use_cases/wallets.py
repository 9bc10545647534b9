"""A driver's wallet: open it, bind cards and VINs to it, and the money commands.

Each money command is the :class:`~domain.wallet.Wallet` command of the same name, with its
idempotency key, run with retry on a conflict (:meth:`LedgerCore.change_wallet`). Each returns the
wallet after it; a key seen before changes nothing and returns the wallet as it is.
"""

from __future__ import annotations

from uuid import UUID

from eventsourcing.persistence import IntegrityError

from domain.credential import Credential
from domain.errors import InvalidAmount
from domain.text import NAME, checked
from domain.use_cases.core import LedgerCore
from domain.wallet import PARTNER, Wallet, partner_driver_id, receivable


class WalletUseCases(LedgerCore):
    def open_wallet(self, tenant_id: UUID, driver_id: str, author: str) -> UUID:
        """Open a driver's wallet; opening it again returns the same wallet."""
        checked(driver_id, "driver id", NAME, required=True)  # an id: checked, kept as given
        if driver_id.startswith(PARTNER):
            raise InvalidAmount(f"driver ids starting {PARTNER!r} are partner platforms' accounts "
                                "(open_partner_account)", driver_id=driver_id)
        wallet_id = Wallet.create_id(tenant_id, driver_id)
        try:
            self.wallets.save(Wallet(tenant_id=tenant_id, driver_id=driver_id, author=author))
        except IntegrityError:
            pass  # it exists: the id is derived from tenant and driver
        return wallet_id

    def open_partner_account(self, tenant_id: UUID, partner: str, author: str) -> UUID:
        """A partner platform's account with this tenant (a T/CEC customer platform, named by its
        OperatorID): a wallet with a credit line, so what its users' sessions cost is owed on
        ``receivable:<partner>`` in the books. Opening it again returns the same account."""
        checked(partner, "partner", NAME, required=True)
        driver_id = partner_driver_id(partner)
        wallet_id = Wallet.create_id(tenant_id, driver_id)
        wallet = Wallet(tenant_id=tenant_id, driver_id=driver_id, author=author)
        wallet.open_credit_line(key=f"credit-line:{partner}", account=receivable(partner))
        try:
            self.wallets.save(wallet)  # opened with its credit line: both events in one transaction
        except IntegrityError:
            pass  # it exists: the id is derived from tenant and partner
        return wallet_id

    def bind_credential(self, wallet_id: UUID, kind: str, value: str, author: str) -> UUID:
        """Bind a charging card or a VIN to a wallet, for starts made at the pile (0x31)."""
        wallet = self.wallet(wallet_id)
        credential = Credential.bind(kind, value, wallet.tenant_id, wallet_id, author)
        self.wallets.create(credential, f"{kind} {credential.value}")
        return credential.id

    # ---- money in and out ------------------------------------------------------------------------
    def top_up(self, wallet_id: UUID, *, key: str, amount: int, provider: str, payment_ref: str) -> Wallet:
        """A payment cleared by ``provider``: ``amount`` fen to the driver (arrears repaid first)."""
        return self.change_wallet(wallet_id, lambda w: w.top_up(
            key=key, amount=amount, provider=provider, payment_ref=payment_ref))[0]

    def hold(self, wallet_id: UUID, *, key: str, hold_id: str, amount: int) -> Wallet:
        """Put ``amount`` fen of the available balance aside under ``hold_id``."""
        return self.change_wallet(wallet_id, lambda w: w.hold(key=key, hold_id=hold_id, amount=amount))[0]

    def capture(self, wallet_id: UUID, *, key: str, hold_id: str, electricity: int, service: int) -> Wallet:
        """Take a bill out of a hold; the rest of the hold goes back to the driver."""
        return self.change_wallet(wallet_id, lambda w: w.capture(
            key=key, hold_id=hold_id, electricity=electricity, service=service))[0]

    def release(self, wallet_id: UUID, *, key: str, hold_id: str) -> Wallet:
        """Give back a whole hold."""
        return self.change_wallet(wallet_id, lambda w: w.release(key=key, hold_id=hold_id))[0]

    def charge(self, wallet_id: UUID, *, key: str, electricity: int, service: int, reference: str) -> Wallet:
        """Bill without a hold; what the available balance cannot cover becomes arrears."""
        return self.change_wallet(wallet_id, lambda w: w.charge(
            key=key, electricity=electricity, service=service, reference=reference))[0]

    def credit_back(self, wallet_id: UUID, *, key: str, electricity: int, service: int, reference: str) -> Wallet:
        """Give back part of a bill (a re-price that came out lower)."""
        return self.change_wallet(wallet_id, lambda w: w.credit_back(
            key=key, electricity=electricity, service=service, reference=reference))[0]

    def request_refund(self, wallet_id: UUID, *, key: str, refund_id: str, amount: int, provider: str) -> Wallet:
        """Set ``amount`` fen aside for a refund to the provider the driver paid through."""
        return self.change_wallet(wallet_id, lambda w: w.request_refund(
            key=key, refund_id=refund_id, amount=amount, provider=provider))[0]

    def complete_refund(self, wallet_id: UUID, *, key: str, refund_id: str, provider_ref: str) -> Wallet:
        """The provider paid the refund out."""
        return self.change_wallet(wallet_id, lambda w: w.complete_refund(
            key=key, refund_id=refund_id, provider_ref=provider_ref))[0]

    def fail_refund(self, wallet_id: UUID, *, key: str, refund_id: str, reason: str) -> Wallet:
        """The provider refused the refund: the money goes back to the driver."""
        return self.change_wallet(wallet_id, lambda w: w.fail_refund(key=key, refund_id=refund_id, reason=reason))[0]

    def adjust(self, wallet_id: UUID, *, key: str, amount: int, reason: str, author: str) -> Wallet:
        """An operator's correction: positive credits the driver, negative debits."""
        return self.change_wallet(wallet_id, lambda w: w.adjust(key=key, amount=amount, reason=reason,
                                                                author=author))[0]
