"""The service layer: commands that span aggregates, over the four Applications.

It is what the API, the pile link and the demo call. It owns no state of its own. A start saves
its two aggregates (the wallet's hold, the session) in one transaction; every other method is a
short sequence of single-aggregate commands, ordered so that a crash between two of them leaves
something a retry (or the settlement follower) completes without doing anything twice.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from eventsourcing.persistence import IntegrityError

from domain.applications import Registry, Sessions, Tariffs, Wallets, get_together, retry_on_conflict, save_together
from domain.credential import Credential
from domain.errors import (
    AlreadyExists,
    DomainError,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidRegistration,
    InvalidTariff,
    InvalidTransition,
    NotFound,
    PileUnavailable,
    WrongPile,
)
from domain.payment import Payments
from domain.registry import Pile, Station, Tenant
from domain.session import TRADE_NO, ChargingSession, TransactionRecord, make_trade_no
from domain.settlement import wallet_commands
from domain.tariff import Tariff, TariffSchedule
from domain.text import NAME, REASON, checked
from domain.wallet import Wallet


class SerialTaken(IntegrityError):
    """A drawn trade serial was an earlier session's: draw another (retried as a conflict)."""


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


class Ledger:
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

    # ---- registry ----------------------------------------------------------------------------
    def create_tenant(self, name: str, author: str) -> UUID:
        tenant = Tenant.create(name, author)
        self.registry.create(tenant, "tenant")
        return tenant.id

    def create_station(self, tenant_id: UUID, name: str, address: str, latitude: float, longitude: float,
                       author: str, timezone: str = "Asia/Shanghai") -> UUID:
        self.registry.tenant(tenant_id)
        station = Station.create(tenant_id, name, address, latitude, longitude, author, timezone)
        self.registry.create(station, "station")
        return station.id

    def register_pile(self, station_id: UUID, pile_no: str, kind: str, gun_count: int, author: str) -> UUID:
        station = self.registry.station(station_id)
        pile = Pile.register(pile_no, station.tenant_id, station_id, kind, gun_count, author)
        try:
            self.registry.save(pile)
        except IntegrityError:
            raise AlreadyExists(f"pile {pile_no} is already registered", pile_no=pile_no) from None
        return pile.id

    def set_pile_enabled(self, pile_no: str, enabled: bool, author: str, reason: str = "") -> None:
        reason = checked(reason, "disable reason", REASON)

        def change(pile: Pile) -> None:
            if enabled and not pile.enabled:
                pile.enable(author=author)
            elif not enabled and pile.enabled:
                pile.disable(author=author, reason=reason)

        self.registry.update(Pile.create_id(pile_no), Pile, "pile", change)

    # ---- tariffs -----------------------------------------------------------------------------
    def create_tariff(self, tenant_id: UUID, name: str, prices: Any, slots: Any, author: str) -> UUID:
        self.registry.tenant(tenant_id)
        name = checked(name, "tariff name", NAME)  # empty: Tariff.create refuses it (invalid_tariff)
        tariff = Tariff.create(tenant_id, name, TariffSchedule.build(prices, slots), author)
        self.tariffs.create(tariff, "tariff")
        return tariff.id

    def revise_tariff(self, tariff_id: UUID, prices: Any, slots: Any, author: str) -> int:
        schedule = TariffSchedule.build(prices, slots)

        def change(tariff: Tariff) -> int:
            tariff.revise(schedule, author)
            return tariff.tariff_version

        return self.tariffs.update(tariff_id, Tariff, "tariff", change)

    def assign_tariff(self, tariff_id: UUID | None, author: str, *, station_id: UUID | None = None,
                      pile_no: str | None = None) -> None:
        """Assign a tariff to a station (its piles' default) or to one pile (overrides the station)."""
        if (station_id is None) == (pile_no is None):
            raise InvalidRegistration("assign a tariff to exactly one of a station or a pile")
        if station_id is not None:
            tenant_id = self.registry.station(station_id).tenant_id
            target = (station_id, Station, "station")
        else:
            pile = self.registry.pile(pile_no)  # type: ignore[arg-type]
            tenant_id = pile.tenant_id
            target = (pile.id, Pile, "pile")
        if tariff_id is not None and self.tariffs.tariff(tariff_id).tenant_id != tenant_id:
            raise NotFound(f"no tariff {tariff_id}", id=str(tariff_id))
        self.registry.update(*target, lambda a: a.assign_tariff(tariff_id=tariff_id, author=author))

    def tariff_for(self, pile: Pile) -> Tariff:
        tariff_id = pile.tariff_id or self.registry.station(pile.station_id).tariff_id
        if tariff_id is None:
            raise InvalidTariff(f"pile {pile.pile_no} has no tariff assigned (neither it nor its station)")
        return self.tariffs.tariff(tariff_id)

    # ---- wallets -----------------------------------------------------------------------------
    def open_wallet(self, tenant_id: UUID, driver_id: str, author: str) -> UUID:
        """Open a driver's wallet; opening it again returns the same wallet."""
        checked(driver_id, "driver id", NAME, required=True)  # an id: checked, kept as given
        wallet_id = Wallet.create_id(tenant_id, driver_id)
        try:
            self.wallets.save(Wallet(tenant_id=tenant_id, driver_id=driver_id, author=author))
        except IntegrityError:
            pass  # it exists: the id is derived from tenant and driver
        return wallet_id

    def wallet(self, wallet_id: UUID) -> Wallet:
        return self.wallets.wallet(wallet_id)

    def wallet_command(self, wallet_id: UUID, command: str, **kwargs: Any) -> Wallet:
        """Run one wallet command (top_up, hold, capture, ...) with optimistic-concurrency retry."""
        return self.wallet_update(wallet_id, command, **kwargs)[0]

    def wallet_update(self, wallet_id: UUID, command: str, **kwargs: Any) -> tuple[Wallet, list[Any]]:
        """As wallet_command, also returning the events recorded (none if the key was seen before)."""
        _, wallet, events = self.wallets.update_recorded(wallet_id, Wallet, "wallet",
                                                         lambda w: getattr(w, command)(**kwargs))
        return wallet, events

    # ---- sessions ----------------------------------------------------------------------------
    def session(self, trade_no: str) -> ChargingSession:
        return self.sessions.session(trade_no)

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

    def session_command(self, trade_no: str, command: str, *, sent_by: PileGun | None = None,
                        **kwargs: Any) -> ChargingSession:
        """Run one session command, then bring the wallet in line with what it decided.

        ``sent_by``: the command comes from a pile's frame, and runs only on a session of that pile
        and gun (checked on the loaded aggregate, so it costs no query)."""
        def change(session: ChargingSession) -> Any:
            if sent_by is not None:
                sent_by.require_owns(session)
            return getattr(session, command)(**kwargs)

        _, session, events = self.sessions.update_recorded(
            ChargingSession.create_id(trade_no), ChargingSession, "session", change)
        self.apply_to_wallet(session, events)
        return session

    def record_readings(self, readings: list[dict[str, Any]]) -> list[Exception | None]:
        """Record realtime readings of many sessions in one transaction (the pile link's batch).

        Each item is ``{"trade_no", "at", "energy", **measurements}``, with ``"sent_by"`` (a
        :class:`PileGun`) when a pile sent it: the session must then be that pile's gun's, checked on
        the loaded aggregate. Returns, per item, None or the domain error that refused it. If the
        batch's save conflicts with another writer, the items are retried one by one, so one hot
        session never holds back the others.
        """
        outcomes: list[Exception | None] = [None] * len(readings)
        sessions: dict[str, ChargingSession] = {}
        for i, reading in enumerate(readings):
            trade_no = reading["trade_no"]
            try:
                session = sessions.get(trade_no) or self.session(trade_no)
                if reading.get("sent_by") is not None:
                    reading["sent_by"].require_owns(session)
                session.record_reading(**_measurements(reading))
                sessions[trade_no] = session
            except DomainError as error:
                outcomes[i] = error
        try:
            self.sessions.save(*sessions.values())
        except IntegrityError:
            for trade_no in sessions:
                self.sessions.evict(ChargingSession.create_id(trade_no))
            for i, reading in enumerate(readings):
                if outcomes[i] is None:
                    try:
                        self.session_command(reading["trade_no"], "record_reading", sent_by=reading.get("sent_by"),
                                             **_measurements(reading))
                    except DomainError as error:
                        outcomes[i] = error
        return outcomes

    def settle(self, trade_no: str, record: TransactionRecord, at: datetime, *, pile_no: str | None = None,
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
            return self.session_command(trade_no, "settle", sent_by=sent_by, record=record, at=at)
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
            return self.session_command(trade_no, "settle", sent_by=sent_by, record=record, at=at)
        self.apply_to_wallet(session, [r.domain_event for r in recordings])
        return session

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

    def apply_to_wallet(self, session: ChargingSession, events: list[Any]) -> None:
        for event in events:
            for command, kwargs in wallet_commands(session, type(event).__name__, event):
                self.wallet_command(session.wallet_id, command, **kwargs)  # type: ignore[arg-type]


    # ---- pile link -----------------------------------------------------------------------------
    # What the gateway holding a pile's TCP connection reports, and the commands it carries out.
    def pile_login(self, pile_no: str) -> Pile:
        """May this pile log in? Refuses an unknown pile (NotFound) and a disabled one (PileUnavailable)."""
        pile = self.registry.pile(pile_no)
        if not pile.enabled:
            raise PileUnavailable(f"pile {pile_no} is disabled", pile_no=pile_no)
        return pile

    def pile_connected(self, pile_no: str, at: datetime, gateway: str, protocol_version: int,
                       program_version: str) -> None:
        """A pile logged in (checked as :meth:`pile_login` does). The gateway batches these instead."""
        self.pile_login(pile_no)
        self.record_pile_changes([(pile_no, lambda pile: pile.connect(
            at=at, gateway=gateway, protocol_version=protocol_version, program_version=program_version))])

    def pile_disconnected(self, pile_no: str, at: datetime, reason: str) -> None:
        self.record_pile_changes([(pile_no, lambda pile: pile.disconnect(at=at, reason=reason))])

    def report_gun(self, pile_no: str, gun_no: int, status: str, plugged: bool, faults: dict[str, str],
                   at: datetime) -> None:
        """A gun's status and fault bits from a realtime frame; only changes become events."""
        error = self.record_pile_changes([(pile_no, lambda pile: (pile.report_faults(gun_no, faults, at),
                                                                  pile.report_gun_status(gun_no, status, plugged,
                                                                                         at)))])[0]
        if error is not None:
            raise error

    def record_pile_changes(self, changes: list[tuple[str, Callable[[Pile], Any]]]) -> list[Exception | None]:
        """Many piles' link observations (online, offline, gun status) in one transaction.

        Each change is ``(pile number, function of the pile)``; a change that raises a domain error
        is skipped and its error returned in its place. If the batch conflicts with another writer,
        each pile's changes are retried on their own.
        """
        outcomes: list[Exception | None] = [None] * len(changes)
        piles: dict[str, Pile] = {}
        wanted = list(dict.fromkeys(pile_no for pile_no, _ in changes))
        try:  # the usual case, every pile logged in and cached: all brought up to date in one query
            piles = dict(zip(wanted, self.registry.get_all(*[(Pile.create_id(p), Pile, "pile") for p in wanted])))
        except NotFound:
            piles = {}  # one of them is unknown: load them one by one below, refusing only its changes
        for i, (pile_no, change) in enumerate(changes):
            try:
                pile = piles.get(pile_no) or self.registry.pile(pile_no)
                probe = copy.deepcopy(pile)
                change(probe)  # on a copy first: a change that raises leaves nothing half-applied
                change(pile)
                piles[pile_no] = pile
            except DomainError as error:
                outcomes[i] = error
        try:
            self.registry.save(*piles.values())
        except IntegrityError:
            for pile_no in piles:
                self.registry.evict(Pile.create_id(pile_no))
            for pile_no in piles:
                mine = [change for i, (p, change) in enumerate(changes) if p == pile_no and outcomes[i] is None]
                self.registry.update(Pile.create_id(pile_no), Pile, "pile",
                                     lambda pile, mine=mine: [change(pile) for change in mine])
        return outcomes

    def pile_command(self, pile_no: str, command: str, author: str, at: datetime, tenant_id: UUID | None = None,
                     **params: Any) -> None:
        """Ask the pile to do something (reboot, set_parameters, push_tariff, read_realtime).

        The command is an event; the gateway holding the pile sends the frame when it sees it.
        ``tenant_id`` scopes the call to an operator: another tenant's pile is NotFound.
        """
        pile = self.registry.pile(pile_no)
        if tenant_id is not None and pile.tenant_id != tenant_id:
            raise NotFound(f"no pile {pile_no}", pile_no=pile_no)
        if command == "push_tariff":
            tariff = self.tariff_for(pile)
            params = {**params, "tariff_id": str(tariff.id), "version": tariff.tariff_version}
        self.registry.update(pile.id, Pile, "pile",
                             lambda p: p.request_command(command=command, params=params, at=at, author=author))

    def billing_model_matches(self, pile_no: str, model_no: str) -> bool:
        """A pile's 0x05: is the model it holds the tariff version it should bill with now?"""
        pile = self.registry.pile(pile_no)
        tariff = self.tariff_for(pile)
        return model_no == f"{tariff.model_no:04d}" and _holds(pile, tariff)

    def tariff_owed(self, pile_no: str) -> Tariff | None:
        """The tariff in force for the pile, if the billing model it last confirmed is another
        (a push it is owed); None if it holds the one in force."""
        pile = self.registry.pile(pile_no)
        tariff = self.tariff_for(pile)
        return None if _holds(pile, tariff) else tariff

    def confirm_billing_model(self, pile_no: str, tariff_id: UUID, version: int, at: datetime) -> None:
        self.registry.update(Pile.create_id(pile_no), Pile, "pile",
                             lambda p: p.confirm_billing_model(tariff_id, version, at))

    def answer_pile_command(self, pile_no: str, command: str, ok: bool, detail: str, at: datetime) -> None:
        self.registry.update(Pile.create_id(pile_no), Pile, "pile",
                             lambda p: p.answer_command(command=command, ok=ok, detail=detail, at=at))

    def request_stop(self, trade_no: str, author: str, reason: str, at: datetime,
                     tenant_id: UUID | None = None) -> ChargingSession:
        if tenant_id is not None and self.session(trade_no).tenant_id != tenant_id:
            raise NotFound(f"no session {trade_no}", trade_no=trade_no)
        return self.session_command(trade_no, "request_stop", at=at, reason=reason, author=author)

    def expire_session(self, trade_no: str, now: datetime) -> tuple[ChargingSession, bool]:
        """The watchdog: apply the session's deadline if it passed (fails a start, abandons a stop or
        a session whose pile stayed offline). Returns the session and whether this call closed it
        (another watchdog may have, a moment before: then it changed nothing)."""
        closed, session, events = self.sessions.update_recorded(
            ChargingSession.create_id(trade_no), ChargingSession, "session", lambda s: s.expire(now))
        self.apply_to_wallet(session, events)
        return session, closed

    def bind_credential(self, wallet_id: UUID, kind: str, value: str, author: str) -> UUID:
        """Bind a charging card or a VIN to a wallet, for starts made at the pile (0x31)."""
        wallet = self.wallet(wallet_id)
        credential = Credential.bind(kind, value, wallet.tenant_id, wallet_id, author)
        self.wallets.create(credential, f"{kind} {credential.value}")
        return credential.id

    def start_at_pile(self, *, pile_no: str, gun_no: int, kind: str, value: str, at: datetime,
                      max_hold_fen: int) -> tuple[str, int]:
        """A start by card or VIN at the pile (0x31): hold the driver's money and open the session.

        Returns (trade serial, amount held in fen). The hold is the wallet's available balance, at
        most ``max_hold_fen``; refuses an unknown or unbound credential (NotFound), another tenant's
        card (NotFound), and an empty wallet (InsufficientFunds).
        """
        try:
            credential = self.wallets.get(Credential.create_id(kind, value), Credential, kind)
        except InvalidRegistration:
            raise NotFound(f"no {kind} {value!r}", kind=kind) from None
        pile = self.registry.pile(pile_no)
        if credential.wallet_id is None or credential.tenant_id != pile.tenant_id:
            raise NotFound(f"no {kind} {value!r}", kind=kind)
        available = self.wallet(credential.wallet_id).available
        hold = min(available, max_hold_fen)
        if hold <= 0:
            raise InsufficientFunds(f"the wallet behind {kind} {value!r} is empty", kind=kind)
        trade_no = self.request_start(pile_no=pile_no, gun_no=gun_no, wallet_id=credential.wallet_id,
                                      hold_fen=hold, at=at, author=f"{kind}:{credential.value}", origin=kind)
        return trade_no, hold

    def change_station(self, station_id: UUID, name: str, address: str, author: str,
                       tenant_id: UUID | None = None) -> None:
        """Rename or re-address a station; ``tenant_id`` scopes the call to an operator."""
        def change(station: Station) -> None:
            if tenant_id is not None and station.tenant_id != tenant_id:
                raise NotFound(f"no station {station_id}", id=str(station_id))
            station.change(name=name, address=address, author=author)
        self.registry.update(station_id, Station, "station", change)


def _holds(pile: Pile, tariff: Tariff) -> bool:
    """The pile's confirmed billing model is this tariff version."""
    return pile.billing_model == {"tariff_id": str(tariff.id), "version": tariff.tariff_version}


def _measurements(reading: dict[str, Any]) -> dict[str, Any]:
    """A reading item of :meth:`Ledger.record_readings` without its session and sender."""
    return {k: v for k, v in reading.items() if k not in ("trade_no", "sent_by")}
