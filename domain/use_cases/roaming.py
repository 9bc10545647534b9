"""Our driver's charge on an infrastructure peer's pile (T/CEC roaming, the customer platform's side).

Crash safety: every command that moves money saves the charge and the wallet **in one transaction**
(:func:`domain.applications.save_together`): the start's hold with ``Requested``; the release with
``Failed``; the payment of the peer's order (from the hold, and beyond it) with ``Settled``. So there
is no moment at which the charge says one thing and the wallet another, and nothing for the
watchdog's ``wallet_followups`` to complete (it follows only the ChargingSession topics). The wallet
commands of each charge event are :func:`domain.roaming.wallet_commands`, run through the one registry
of stored names (:data:`~domain.use_cases.core.WALLET_COMMANDS`) with keys derived from the
StartChargeSeq, so a command repeated after any failure changes nothing.

A resent notification (the same start result, the same order) changes nothing and returns the
charge; a real contradiction (a start result for a charge we failed) raises InvalidTransition.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

from domain.applications import StaleCopy, retry_on_conflict, save_together
from domain.errors import IdempotencyConflict, InvalidAmount, NotFound
from domain.roaming import RoamingCharge, hold_id, wallet_commands
from domain.text import NAME, checked
from domain.use_cases.core import WALLET_COMMANDS, LedgerCore
from domain.wallet import ARREARS, Wallet

WHAT = "roaming charge"


class RoamingUseCases(LedgerCore):
    # ---- starting ----------------------------------------------------------------------------------
    def start_roaming(self, *, tenant_id: UUID, wallet_id: UUID, peer: str, connector_id: str, station_id: str,
                      start_charge_seq: str, hold_fen: int, at: datetime, author: str) -> RoamingCharge:
        """Hold the driver's money and record the charge as 'requested', in ONE transaction.

        Idempotent by StartChargeSeq: the same start again returns the charge it made; the same
        seq for another connector or wallet is :class:`IdempotencyConflict`. A hold that does not
        fit is :class:`InsufficientFunds`, and nothing is written.
        """
        charge_id = RoamingCharge.create_id(tenant_id, peer, start_charge_seq)

        def attempt() -> RoamingCharge:
            if self.sessions.exists(charge_id):
                return self._same_start(charge_id, wallet_id, connector_id)
            wallet = self.wallets.get(wallet_id, Wallet, "wallet", fresh=False, copy=False)
            if wallet.tenant_id != tenant_id:
                raise NotFound(f"no wallet {wallet_id}", id=str(wallet_id))
            if wallet.owed_to != ARREARS:
                raise InvalidAmount("a partner platform's account does not roam", wallet_id=str(wallet_id))
            charge = RoamingCharge.request(
                tenant_id=tenant_id, peer=peer, start_charge_seq=start_charge_seq, connector_id=connector_id,
                station_id=station_id, wallet_id=wallet_id, driver_id=wallet.driver_id, hold_fen=hold_fen, at=at,
                author=author)
            hold = hold_id(start_charge_seq)
            _, held = self.wallets.decide(wallet_id, Wallet, "wallet", lambda w: w.hold(
                key=f"hold:{hold}", hold_id=hold, amount=hold_fen))
            # a hold already placed with this key (only if a charge was saved with it) adds no event
            save_together(*([(self.wallets, [held])] if held.pending_events else []), (self.sessions, [charge]))
            return charge

        return retry_on_conflict(attempt, on_conflict=lambda: self._evict(charge_id, wallet_id))

    def _same_start(self, charge_id: UUID, wallet_id: UUID, connector_id: str) -> RoamingCharge:
        charge = self.roaming_charge(charge_id)
        if (charge.wallet_id, charge.connector_id) != (wallet_id, checked(connector_id, "connector id", NAME)):
            raise IdempotencyConflict(f"StartChargeSeq {charge.start_charge_seq} was already used for connector "
                                      f"{charge.connector_id} of another start", key=charge.start_charge_seq)
        return charge

    # ---- reads -------------------------------------------------------------------------------------
    def roaming_charge(self, charge_id: UUID) -> RoamingCharge:
        """The charge as stored now: unlike a session, brought up to date on every read (one indexed
        query), since any API process may have written its last event (a peer's notification)."""
        return self.sessions.get(charge_id, RoamingCharge, WHAT, fresh=True)

    def find_roaming(self, tenant_id: UUID, peer: str, start_charge_seq: str) -> RoamingCharge | None:
        """The charge of this StartChargeSeq with this peer, if we made one."""
        try:
            return self.roaming_charge(RoamingCharge.create_id(tenant_id, peer, start_charge_seq))
        except NotFound:
            return None

    # ---- what the peer answers and tells, what we ask ------------------------------------------------
    def roaming_accepted(self, charge_id: UUID, *, at: datetime) -> RoamingCharge:
        """The peer answered the start with SuccStat 0 ('starting')."""
        return self._change(charge_id, lambda c: c.accept(at))

    def roaming_charging(self, charge_id: UUID, *, at: datetime, start_time: datetime) -> RoamingCharge:
        """The peer's start result says charging (StartChargeSeqStat 2)."""
        return self._change(charge_id, lambda c: c.mark_charging(at, start_time))

    def roaming_stop_requested(self, charge_id: UUID, *, at: datetime, author: str) -> RoamingCharge:
        """We asked the peer to stop ('stopping'); on a charge already stopping or over, nothing."""
        return self._change(charge_id, lambda c: c.request_stop(at, author))

    def roaming_failed(self, charge_id: UUID, *, at: datetime, reason: str) -> RoamingCharge:
        """The start was refused or never confirmed: 'failed', and its hold released (one transaction)."""
        return self._change(charge_id, lambda c: c.fail(at, reason))

    def settle_roaming(self, charge_id: UUID, *, at: datetime, energy: int, electricity_fen: int, service_fen: int,
                       start_time: datetime, end_time: datetime, stop_reason: int,
                       order: dict[str, str] | None = None) -> RoamingCharge:
        """The peer's order accepted: 'settled', and the bill paid to ``payable:<peer>`` from the hold
        (the rest of it back to the driver) and, above the hold, from the driver's balance (what it does
        not cover owed as arrears), in one transaction. The same order again changes nothing; a differing
        one after Settled is recorded as ``OrderDisputed`` (the caller answers ConfirmResult 1): look at
        ``disputes``. ``order`` (optional): the peer's amounts as it wrote them, kept with a dispute."""
        return self._change(charge_id, lambda c: c.settle(at, energy, electricity_fen, service_fen, start_time,
                                                          end_time, stop_reason, order))

    def dispute_roaming(self, charge_id: UUID, *, at: datetime, reason: int, order: dict[str, str]) -> RoamingCharge:
        """Record an order we refuse (reason 4: its totals do not add up), once per distinct order."""
        return self._change(charge_id, lambda c: c.dispute(at, reason, order))

    # ---- the charge and its wallet, together -------------------------------------------------------
    def _change(self, charge_id: UUID, change: Callable[[RoamingCharge], Any]) -> RoamingCharge:
        """Run one command on the charge and the wallet commands its new events call for, saved in ONE
        transaction; retried from fresh copies on a conflict. A command that records nothing is believed
        once one query shows the copy it ran on was current (as :meth:`LedgerApplication.update_recorded`)."""
        wallet_id = self.sessions.get(charge_id, RoamingCharge, WHAT, fresh=False, copy=False).wallet_id

        def attempt() -> RoamingCharge:
            _, charge = self.sessions.decide(charge_id, RoamingCharge, WHAT, change)
            commands = [c for e in charge.pending_events for c in wallet_commands(charge, type(e).__name__, e)]
            parts: list[tuple[Any, list[Any]]] = []
            if commands:
                def run(wallet: Wallet) -> None:
                    for name, arguments in commands:
                        WALLET_COMMANDS[name](wallet, **arguments)

                _, wallet = self.wallets.decide(wallet_id, Wallet, "wallet", run)
                if wallet.pending_events:
                    parts.append((self.wallets, [wallet]))
            if charge.pending_events:
                parts.append((self.sessions, [charge]))
                save_together(*parts)
            elif not self.sessions._caught_up(charge_id, charge.version):
                raise StaleCopy(f"{WHAT} {charge_id} moved past version {charge.version}")
            return charge

        return retry_on_conflict(attempt, on_conflict=lambda: self._evict(charge_id, wallet_id))

    def _evict(self, charge_id: UUID, wallet_id: UUID) -> None:
        self.sessions.evict(charge_id)
        self.wallets.evict(wallet_id)


__all__ = ["RoamingUseCases"]
