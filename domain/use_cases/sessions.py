"""A charging session from start to settlement, and what each step means for the wallet.

A start saves its two aggregates (the wallet's hold, the session) in one transaction; every other
use case is one session command followed by the wallet commands it calls for
(:meth:`LedgerCore.change_session`), ordered so that a crash between the two commits leaves
something a retry (or the watchdog's wallet follow-ups) completes without doing anything twice.
Commands from a pile's frame carry ``sent_by`` (:class:`PileGun`): they run only on that pile's
gun's sessions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from eventsourcing.persistence import IntegrityError

from domain.applications import get_together, retry_on_conflict, save_together
from domain.credential import Credential
from domain.errors import (
    IdempotencyConflict,
    InvalidRegistration,
    InvalidTariff,
    InvalidTransition,
    NotFound,
    PileUnavailable,
)
from domain.registry import Pile, Station
from domain.session import TRADE_NO, ChargingSession, SettlementRecord, make_trade_no
from domain.start_rules import StartRules
from domain.tariff import Tariff
from domain.use_cases.core import LedgerCore, PileGun
from domain.wallet import Wallet


class SerialTaken(IntegrityError):
    """A drawn trade serial was an earlier session's: draw another (retried as a conflict)."""


class SessionUseCases(LedgerCore):
    # ---- starting ----------------------------------------------------------------------------------
    def request_start(self, *, pile_no: str, gun_no: int, wallet_id: UUID | None, hold_fen: int, at: datetime,
                      author: str, origin: str = "app", tenant_id: UUID | None = None,
                      require_ready: bool = False, alongside: Callable[[str], Sequence[Any]] | None = None) -> str:
        """Hold the driver's money and open a session in 'requested'. Returns the trade serial.

        The hold, the opened session and what ``alongside`` gives for the trade serial (the driver
        API's idempotency record, written by the recorder as it is) commit in ONE transaction
        (:func:`save_together`): a crash at any point leaves all of them or none, never a hold
        without its session. A refused hold writes nothing. ``require_ready`` (a driver's start)
        also refuses a pile that is offline and a gun that is charging, faulted or disabled, as the
        pile link last reported it: without it such a start would hold the driver's money until
        the pile refused it or the start deadline passed.
        """
        pile, station, tariff, wallet = self._start_on(pile_no, gun_no, wallet_id, tenant_id, require_ready)
        local = at.astimezone(ZoneInfo(station.timezone))

        def attempt() -> str:
            # A trade serial is pile + gun + second + a random 4-digit sequence. It is not checked for
            # collisions beforehand (a query on every start): the session's key refuses a serial already
            # taken, and so does the hold's idempotency key, and then another sequence is drawn.
            trade_no = make_trade_no(pile_no, gun_no, local, self.serials.randrange(10000))
            parts: list[tuple[Any, list[Any]]] = []
            if wallet is not None and hold_fen:
                parts.append((self.wallets, [self._hold_for(wallet.id, trade_no, hold_fen)]))
            parts.append((self.sessions, [self._new_session(trade_no, pile, station, tariff, gun_no, wallet_id,
                                                            hold_fen if wallet_id else 0, origin, at, author)]))
            save_together(*parts, alongside=alongside(trade_no) if alongside else ())
            return trade_no

        return retry_on_conflict(attempt, on_conflict=lambda: self.wallets.evict(wallet_id) if wallet_id else None)

    def start_at_pile(self, *, pile_no: str, gun_no: int, kind: str, value: str, at: datetime,
                      rules: StartRules) -> tuple[str, int]:
        """A start by card or VIN at the pile (0x31): hold the driver's money and open the session.

        Returns (trade serial, amount held in fen). The hold is what ``rules`` say of the wallet's
        available balance (:meth:`StartRules.hold_for`); refuses an unknown or unbound credential
        (NotFound), another tenant's card (NotFound), and a balance below the rules' minimum
        (InsufficientFunds).
        """
        try:
            credential = self.wallets.get(Credential.create_id(kind, value), Credential, kind)
        except InvalidRegistration:
            raise NotFound(f"no {kind} {value!r}", kind=kind) from None
        pile = self.registry.pile(pile_no)
        if credential.wallet_id is None or credential.tenant_id != pile.tenant_id:
            raise NotFound(f"no {kind} {value!r}", kind=kind)
        hold = rules.hold_for(self.wallet(credential.wallet_id).available)
        trade_no = self.request_start(pile_no=pile_no, gun_no=gun_no, wallet_id=credential.wallet_id,
                                      hold_fen=hold, at=at, author=f"{kind}:{credential.value}", origin=kind)
        return trade_no, hold

    def _start_on(self, pile_no: str, gun_no: int, wallet_id: UUID | None, tenant_id: UUID | None,
                  require_ready: bool) -> tuple[Pile, Station, Tariff, Wallet | None]:
        """What a start reads, checked: the pile (enabled, with that gun, ready if asked), its station,
        the tariff in force, the wallet (the pile's tenant's)."""
        # The pile, its station and their tariff brought up to date in one query (the station and
        # the tariff are the ones the cached copies name, read again only if bringing the pile
        # forward changed them); the wallet's tenant never changes, so its cached copy answers.
        # All four are only read here, so they are the cached instances, not copies.
        pile = self.registry.get(Pile.create_id(pile_no), Pile, "pile", fresh=False, copy=False)
        station = self.registry.get(pile.station_id, Station, "station", fresh=False, copy=False)
        tariff_id = pile.tariff_id or station.tariff_id
        tariffs = [(tariff_id, Tariff, "tariff")] if tariff_id is not None else []
        (pile, station), fresh_tariff = get_together(
            (self.registry, [(pile.id, Pile, "pile"), (pile.station_id, Station, "station")]),
            (self.tariffs, tariffs), copy=False)
        if station.id != pile.station_id:  # moved since the cached copy: its new station, read fresh
            station = self.registry.get(pile.station_id, Station, "station", copy=False)
        if tenant_id is not None and pile.tenant_id != tenant_id:
            raise NotFound(f"no pile {pile_no}", pile_no=pile_no)
        if not pile.enabled:
            raise PileUnavailable(f"pile {pile_no} is disabled", pile_no=pile_no, reason="the pile is disabled")
        if not pile.has_gun(gun_no):
            raise PileUnavailable(f"pile {pile_no} has no gun {gun_no}", pile_no=pile_no, gun_no=gun_no,
                                  reason=f"the pile has no gun {gun_no}")
        if require_ready:
            pile.require_ready(gun_no)
        in_force = pile.tariff_id or station.tariff_id
        if in_force is None:
            raise InvalidTariff(f"pile {pile_no} has no tariff assigned (neither it nor its station)")
        if in_force == tariff_id:
            tariff = fresh_tariff[0]
        else:  # reassigned since the cached copies: the tariff now in force, read fresh on its own
            tariff = self.tariffs.get(in_force, Tariff, "tariff", copy=False)
        wallet = self.wallets.get(wallet_id, Wallet, "wallet", fresh=False, copy=False) if wallet_id else None
        if wallet is not None and wallet.tenant_id != pile.tenant_id:
            raise NotFound(f"no wallet {wallet_id}", id=str(wallet_id))
        return pile, station, tariff, wallet

    def _hold_for(self, wallet_id: UUID, trade_no: str, amount: int) -> Wallet:
        """A copy of the wallet with the start's hold placed, not yet saved (:meth:`request_start` saves
        it with the session). A serial an earlier session held for raises :class:`SerialTaken`."""
        try:
            _, wallet = self.wallets.decide(wallet_id, Wallet, "wallet", lambda w: w.hold(
                key=f"hold:{trade_no}", hold_id=trade_no, amount=amount))
        except IdempotencyConflict:
            raise SerialTaken(f"an earlier session with serial {trade_no} held another amount") from None
        if not wallet.pending_events:  # the key was seen: an earlier session with this serial held the same
            raise SerialTaken(f"an earlier session with serial {trade_no} held this amount")
        return wallet

    @staticmethod
    def _new_session(trade_no: str, pile: Pile, station: Station, tariff: Tariff, gun_no: int,
                     wallet_id: UUID | None, hold_fen: int, origin: str, at: datetime,
                     author: str) -> ChargingSession:
        """A session on a pile, with the tariff version in force and the station's time zone."""
        return ChargingSession.open(
            trade_no=trade_no, tenant_id=pile.tenant_id, station_id=pile.station_id, pile_no=pile.pile_no,
            gun_no=gun_no, wallet_id=wallet_id, hold_fen=hold_fen, tariff_id=tariff.id,
            tariff_version=tariff.tariff_version, schedule=tariff.schedule, timezone=station.timezone,
            origin=origin, at=at, author=author,
        )

    # ---- what the pile reports -------------------------------------------------------------------
    def acknowledge_start(self, trade_no: str, *, at: datetime, ok: bool, reason: str = "",
                          sent_by: PileGun | None = None) -> ChargingSession:
        """The pile's answer to a start (0x33), or a start at the pile it authorised itself."""
        return self.change_session(trade_no, lambda s: s.acknowledge_start(at=at, ok=ok, reason=reason),
                                   sent_by=sent_by)[1]

    def mark_charging(self, trade_no: str, *, at: datetime, sent_by: PileGun | None = None) -> ChargingSession:
        """The gun reports charging."""
        return self.change_session(trade_no, lambda s: s.mark_charging(at=at), sent_by=sent_by)[1]

    def record_reading(self, trade_no: str, *, at: datetime, energy: int, sent_by: PileGun | None = None,
                       **measurements: Any) -> ChargingSession:
        """One realtime reading (the pile link batches them: :meth:`record_readings`)."""
        return self.change_session(trade_no, lambda s: s.record_reading(at=at, energy=energy, **measurements),
                                   sent_by=sent_by)[1]

    def record_readings(self, readings: list[dict[str, Any]]) -> list[Exception | None]:
        """Record realtime readings of many sessions in one transaction (the pile link's batch).

        Each item is ``{"trade_no", "at", "energy", **measurements}``, with ``"sent_by"`` (a
        :class:`PileGun`) when a pile sent it: the session must then be that pile's gun's, checked on
        the loaded aggregate. Returns, per item, None or the domain error that refused it. If the
        batch's save conflicts with another writer, each session's readings are saved on their own
        (:meth:`LedgerCore.change_batch`), so one hot session never holds back the others.
        """
        return self.change_batch(self.sessions, ChargingSession, "session",
                                 [(ChargingSession.create_id(r["trade_no"]), _reading(r)) for r in readings])

    def record_fault(self, trade_no: str, *, at: datetime, source: str, code: str, detail: str,
                     sent_by: PileGun | None = None) -> ChargingSession:
        """A fault the pile or the car's BMS reported during the session."""
        return self.change_session(trade_no, lambda s: s.record_fault(at=at, source=source, code=code,
                                                                      detail=detail), sent_by=sent_by)[1]

    def session_pile_offline(self, trade_no: str, *, at: datetime) -> ChargingSession:
        """The session's pile lost its link: a charging or stopping session gets its offline deadline."""
        return self.change_session(trade_no, lambda s: s.pile_offline(at=at))[1]

    # ---- stopping and settling -------------------------------------------------------------------
    def request_stop(self, trade_no: str, author: str, reason: str, at: datetime,
                     tenant_id: UUID | None = None) -> ChargingSession:
        """Ask the pile to stop (0x36 follows); ``tenant_id`` scopes the call to an operator."""
        if tenant_id is not None and self.session(trade_no).tenant_id != tenant_id:
            raise NotFound(f"no session {trade_no}", trade_no=trade_no)
        return self.change_session(trade_no, lambda s: s.request_stop(at=at, reason=reason, author=author))[1]

    def force_close(self, trade_no: str, *, at: datetime, reason: str, author: str) -> ChargingSession:
        """An operator closes a session the pile will never settle, billed from its last reading."""
        return self.change_session(trade_no, lambda s: s.force_close(at=at, reason=reason, author=author))[1]

    def expire_session(self, trade_no: str, now: datetime) -> tuple[ChargingSession, bool]:
        """The watchdog: apply the session's deadline if it passed (fails a start, abandons a stop or
        a session whose pile stayed offline). Returns the session and whether this call closed it
        (another watchdog may have, a moment before: then it changed nothing)."""
        closed, session = self.change_session(trade_no, lambda s: s.expire(now))
        return session, closed

    def settle(self, trade_no: str, record: SettlementRecord, at: datetime, *, pile_no: str | None = None,
               gun_no: int | None = None, wallet_id: UUID | None = None) -> ChargingSession:
        """Settle a transaction record idempotently by trade serial.

        A record for a session never seen starting (an offline start) opens the session from the
        record and settles it in the same transaction.

        Given ``pile_no`` and ``gun_no`` (the pile link always gives them: the pile logged in on the
        connection and the gun the record names), the record is refused with :class:`WrongPile`,
        writing nothing, unless the session is that pile's gun's, or, for an offline record, its
        serial starts with that pile number and the pile has that gun.
        """
        sent_by = PileGun(pile_no, gun_no) if pile_no is not None and gun_no is not None else None
        if self.sessions.exists(ChargingSession.create_id(trade_no)):
            return self.change_session(trade_no, lambda s: s.settle(record, at), sent_by=sent_by)[1]
        if not TRADE_NO.match(trade_no):
            raise InvalidTransition(f"a trade serial is 32 digits, got {trade_no!r}")
        pile = self.registry.pile(pile_no or trade_no[:14])
        if sent_by is not None:
            sent_by.require_offline_serial(trade_no, pile)
        station = self.registry.station(pile.station_id)
        gun = gun_no if gun_no is not None else int(trade_no[14:16])
        session = self._new_session(trade_no, pile, station, self.tariff_for(pile), gun, wallet_id, 0,
                                    "offline", at, "pile")
        session.settle(record, at)
        try:
            recordings = self.sessions.save(session)
        except IntegrityError:  # a concurrent delivery of the same record got there first
            return self.change_session(trade_no, lambda s: s.settle(record, at), sent_by=sent_by)[1]
        self.apply_to_wallet(session, [r.domain_event for r in recordings])
        return session


def _reading(reading: dict[str, Any]) -> Callable[[ChargingSession], None]:
    """A reading item of :meth:`SessionUseCases.record_readings` as a change of its session."""
    sent_by: PileGun | None = reading.get("sent_by")
    measurements = {k: v for k, v in reading.items() if k not in ("trade_no", "sent_by")}

    def change(session: ChargingSession) -> None:
        if sent_by is not None:
            sent_by.require_owns(session)
        session.record_reading(**measurements)

    return change
