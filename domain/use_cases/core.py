"""What every use case shares: the Applications, and the machinery run once for all of them.

* :meth:`LedgerCore.change_session` / :meth:`LedgerCore.change_wallet`: run one command on one
  aggregate, retried on a version conflict (:meth:`LedgerApplication.update_recorded`); a session
  command is then followed by the wallet commands it calls for (:meth:`apply_to_wallet`).
* :meth:`LedgerCore.change_batch`: many commands on many aggregates of one Application saved in one
  transaction, else, if another writer got in between, each aggregate's on its own.
* :data:`WALLET_COMMANDS`: the ONE registry from a wallet command's stored name (the settlement
  policy's :class:`~domain.settlement.WalletCommand`, a ``wallet_followups`` row) to the
  :class:`~domain.wallet.Wallet` method it names. Nothing is looked up by ``getattr``: a name not in
  it is refused.

Replays are idempotent below this layer: every wallet command carries its idempotency key, and a
session command on a closed session changes nothing or is refused.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from domain.applications import LedgerApplication, Registry, Sessions, Tariffs, Wallets
from domain.errors import DomainError, InvalidTariff, InvalidTransition, WrongPile
from domain.payment import Payments
from domain.registry import Pile
from domain.session import ChargingSession
from domain.settlement import WalletCommand, wallet_commands
from domain.tariff import Tariff
from domain.wallet import Wallet

A = TypeVar("A")

WALLET_COMMANDS: Mapping[str, Callable[..., None]] = {  # late-bound: the Wallet class as it is when run
    "top_up": lambda wallet, **arguments: wallet.top_up(**arguments),
    "hold": lambda wallet, **arguments: wallet.hold(**arguments),
    "capture": lambda wallet, **arguments: wallet.capture(**arguments),
    "release": lambda wallet, **arguments: wallet.release(**arguments),
    "charge": lambda wallet, **arguments: wallet.charge(**arguments),
    "credit_back": lambda wallet, **arguments: wallet.credit_back(**arguments),
    "request_refund": lambda wallet, **arguments: wallet.request_refund(**arguments),
    "complete_refund": lambda wallet, **arguments: wallet.complete_refund(**arguments),
    "fail_refund": lambda wallet, **arguments: wallet.fail_refund(**arguments),
    "adjust": lambda wallet, **arguments: wallet.adjust(**arguments),
    "open_credit_line": lambda wallet, **arguments: wallet.open_credit_line(**arguments),
    "capture_to_payable": lambda wallet, **arguments: wallet.capture_to_payable(**arguments),
    "charge_to_payable": lambda wallet, **arguments: wallet.charge_to_payable(**arguments),
}
"""Stored wallet command names (settlement policy, ``wallet_followups``) and the commands they name."""


@dataclass(frozen=True)
class PileGun:
    """Who sent a pile's frame: the pile logged in on the connection, and the gun the frame names.

    A command given one runs only on a session of that pile and gun (else :class:`WrongPile`, and
    nothing is written): a pile speaks for its own sessions only."""

    pile_no: str
    gun_no: int

    def require_owns(self, session: ChargingSession) -> None:
        if session.pile_no != self.pile_no or session.gun_no != self.gun_no:
            raise WrongPile(f"session {session.trade_no} is not on pile {self.pile_no} gun {self.gun_no}",
                            trade_no=session.trade_no, pile_no=self.pile_no, gun_no=self.gun_no)

    def require_offline_serial(self, trade_no: str, pile: Pile) -> None:
        """An offline record's serial (a session the ledger never saw start) must be this pile's:
        it starts with the pile number (YKC composes serials as pile + gun + time + sequence, the
        charger offline too), and the gun the record names must be one the pile has. The two digits
        after the pile number are not required to spell the gun: real piles' do not (see
        docs/protocols/ykc.md, "The pile link's boundary")."""
        if not trade_no.startswith(self.pile_no):
            raise WrongPile(f"serial {trade_no} is not pile {self.pile_no}'s", trade_no=trade_no,
                            pile_no=self.pile_no)
        if not pile.has_gun(self.gun_no):
            raise WrongPile(f"pile {self.pile_no} has no gun {self.gun_no}", trade_no=trade_no,
                            pile_no=self.pile_no, gun_no=self.gun_no)


class LedgerCore:
    """The Applications and the shared machinery; the use cases (:mod:`domain.use_cases`) build on it."""

    def __init__(self, env: Mapping[str, str] | None = None, serials: random.Random | None = None) -> None:
        """``serials`` draws the random part of trade serials (a seeded one makes them repeatable:
        the fault simulator's); by default the process's own."""
        env = dict(env or {})
        self.serials = serials or random.Random()
        self.registry = Registry(env)
        self.tariffs = Tariffs(env)
        self.sessions = Sessions(env)
        self.wallets = Wallets(env)
        self.payments = Payments(env)

    @property
    def applications(self) -> tuple[Any, ...]:
        return (self.registry, self.tariffs, self.sessions, self.wallets, self.payments)

    def close(self) -> None:
        for app in self.applications:
            app.close()

    # ---- reads every use case needs -----------------------------------------------------------
    def session(self, trade_no: str) -> ChargingSession:
        return self.sessions.session(trade_no)

    def wallet(self, wallet_id: UUID) -> Wallet:
        return self.wallets.wallet(wallet_id)

    def tariff_for(self, pile: Pile) -> Tariff:
        tariff_id = pile.tariff_id or self.registry.station(pile.station_id).tariff_id
        if tariff_id is None:
            raise InvalidTariff(f"pile {pile.pile_no} has no tariff assigned (neither it nor its station)")
        return self.tariffs.tariff(tariff_id)

    # ---- one command on one aggregate ---------------------------------------------------------
    def change_session(self, trade_no: str, change: Callable[[ChargingSession], Any], *,
                       sent_by: PileGun | None = None) -> tuple[Any, ChargingSession]:
        """Run one session command (retried on a conflict), then bring the wallet in line with what
        it decided. Returns (the command's result, the session).

        ``sent_by``: the command comes from a pile's frame, and runs only on a session of that pile
        and gun (checked on the loaded aggregate, so it costs no query)."""
        def checked(session: ChargingSession) -> Any:
            if sent_by is not None:
                sent_by.require_owns(session)
            return change(session)

        result, session, events = self.sessions.update_recorded(
            ChargingSession.create_id(trade_no), ChargingSession, "session", checked)
        self.apply_to_wallet(session, events)
        return result, session

    def change_wallet(self, wallet_id: UUID, change: Callable[[Wallet], None]) -> tuple[Wallet, list[Any]]:
        """Run one wallet command (retried on a conflict): the wallet and the events recorded (none
        if its idempotency key was seen before)."""
        _, wallet, events = self.wallets.update_recorded(wallet_id, Wallet, "wallet", change)
        return wallet, events

    def run_wallet_command(self, wallet_id: UUID, command: WalletCommand) -> tuple[Wallet, list[Any]]:
        """A wallet command given by its stored name (:data:`WALLET_COMMANDS`), as :meth:`change_wallet`."""
        name, arguments = command
        run = WALLET_COMMANDS.get(name)
        if run is None:
            raise InvalidTransition(f"no wallet command {name!r}; known: {', '.join(WALLET_COMMANDS)}")
        arguments = dict(arguments)
        return self.change_wallet(wallet_id, lambda wallet: run(wallet, **arguments))

    def apply_to_wallet(self, session: ChargingSession, events: list[Any]) -> None:
        """The wallet commands a session's new events call for (:func:`domain.settlement.wallet_commands`)."""
        for event in events:
            for command in wallet_commands(session, type(event).__name__, event):
                self.run_wallet_command(session.wallet_id, command)  # type: ignore[arg-type]

    # ---- many commands, one transaction -------------------------------------------------------
    def change_batch(self, app: LedgerApplication, kind: type[A], what: str,
                     changes: list[tuple[UUID, Callable[[A], Any]]], *, loaded: dict[UUID, A] | None = None,
                     on_copy_first: bool = False) -> list[Exception | None]:
        """Many changes, each ``(aggregate id, function of the aggregate)``, saved in one transaction.

        A change that raises a domain error is skipped and its error returned in its place (with
        ``on_copy_first`` it is tried on a copy first, so a change of several events that fails
        half-way leaves nothing behind). ``loaded``: aggregates already at hand (copies, by id). If
        the batch conflicts with another writer, each aggregate's remaining changes are saved on
        their own, so one hot aggregate never holds back the others.
        """
        outcomes: list[Exception | None] = [None] * len(changes)
        batch: dict[UUID, A] = {}
        for i, (aggregate_id, change) in enumerate(changes):  # the pile link's hot path: few lookups
            try:
                aggregate = batch.get(aggregate_id)
                if aggregate is None:
                    aggregate = loaded.get(aggregate_id) if loaded else None
                    if aggregate is None:
                        aggregate = app.get(aggregate_id, kind, what)
                _apply(change, aggregate, on_copy_first)
                batch[aggregate_id] = aggregate
            except DomainError as error:
                outcomes[i] = error
        try:
            app.save(*batch.values())
        except IntegrityError:
            for aggregate_id in batch:
                app.evict(aggregate_id)
            for aggregate_id in batch:
                mine = [i for i, (a, _) in enumerate(changes) if a == aggregate_id and outcomes[i] is None]
                refused = app.update(aggregate_id, kind, what,
                                     lambda a, mine=mine: _each(a, [changes[i][1] for i in mine], on_copy_first))
                for i, error in zip(mine, refused, strict=True):
                    outcomes[i] = error
        return outcomes


def _apply(change: Callable[[A], Any], aggregate: A, on_copy_first: bool) -> None:
    if on_copy_first:
        change(copy.deepcopy(aggregate))  # a change that raises half-way leaves nothing behind
    change(aggregate)


def _each(aggregate: A, changes: list[Callable[[A], Any]], on_copy_first: bool) -> list[Exception | None]:
    """Apply each change to one aggregate: per change, None or the domain error that refused it."""
    outcomes: list[Exception | None] = []
    for change in changes:
        try:
            _apply(change, aggregate, on_copy_first)
            outcomes.append(None)
        except DomainError as error:
            outcomes.append(error)
    return outcomes

