"""The service layer: commands that span aggregates, over the four Applications.

It is what the API, the pile link and the demo call. It owns no state of its own; each method is a
short sequence of single-aggregate commands, ordered so that a crash between two of them leaves
something a retry (or the settlement follower) completes without doing anything twice.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from eventsourcing.persistence import IntegrityError

from domain.applications import Registry, Sessions, Tariffs, Wallets
from domain.errors import AlreadyExists, DomainError, InvalidRegistration, InvalidTariff, NotFound, PileUnavailable
from domain.registry import Pile, Station, Tenant
from domain.session import ChargingSession, TransactionRecord, make_trade_no
from domain.settlement import wallet_commands
from domain.tariff import Tariff, TariffSchedule
from domain.wallet import Wallet


class Ledger:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = dict(env or {})
        self.registry = Registry(env)
        self.tariffs = Tariffs(env)
        self.sessions = Sessions(env)
        self.wallets = Wallets(env)

    @property
    def applications(self) -> tuple[Any, ...]:
        return (self.registry, self.tariffs, self.sessions, self.wallets)

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
        def change(pile: Pile) -> None:
            if enabled and not pile.enabled:
                pile.enable(author=author)
            elif not enabled and pile.enabled:
                pile.disable(author=author, reason=reason)

        self.registry.update(Pile.create_id(pile_no), Pile, "pile", change)

    # ---- tariffs -----------------------------------------------------------------------------
    def create_tariff(self, tenant_id: UUID, name: str, prices: Any, slots: Any, author: str) -> UUID:
        self.registry.tenant(tenant_id)
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
        return self._wallet_update(wallet_id, command, **kwargs)[0]

    def _wallet_update(self, wallet_id: UUID, command: str, **kwargs: Any) -> tuple[Wallet, list[Any]]:
        """As wallet_command, also returning the events recorded (none if the key was seen before)."""
        _, wallet, events = self.wallets.update_recorded(wallet_id, Wallet, "wallet",
                                                         lambda w: getattr(w, command)(**kwargs))
        return wallet, events

    # ---- sessions ----------------------------------------------------------------------------
    def session(self, trade_no: str) -> ChargingSession:
        return self.sessions.session(trade_no)

    def request_start(self, *, pile_no: str, gun_no: int, wallet_id: UUID | None, hold_fen: int, at: datetime,
                      author: str, origin: str = "app", tenant_id: UUID | None = None) -> str:
        """Hold the driver's money and open a session in 'requested'. Returns the trade serial.

        The hold comes first: if it is refused nothing is written. If opening the session fails
        after the hold, the hold is released before the error propagates.
        """
        pile = self.registry.pile(pile_no)
        if tenant_id is not None and pile.tenant_id != tenant_id:
            raise NotFound(f"no pile {pile_no}", pile_no=pile_no)
        if not pile.enabled:
            raise PileUnavailable(f"pile {pile_no} is disabled", pile_no=pile_no)
        if not pile.has_gun(gun_no):
            raise PileUnavailable(f"pile {pile_no} has no gun {gun_no}", pile_no=pile_no, gun_no=gun_no)
        station = self.registry.station(pile.station_id)
        tariff = self.tariff_for(pile)
        if wallet_id is not None and self.wallet(wallet_id).tenant_id != pile.tenant_id:
            raise NotFound(f"no wallet {wallet_id}", id=str(wallet_id))
        local = at.astimezone(ZoneInfo(station.timezone))
        for _ in range(20):
            trade_no = make_trade_no(pile_no, gun_no, local, random.randrange(10000))
            if ChargingSession.create_id(trade_no) not in self.sessions.repository:
                break
        placed = False
        if wallet_id is not None and hold_fen:
            _, events = self._wallet_update(wallet_id, "hold", key=f"hold:{trade_no}", hold_id=trade_no,
                                            amount=hold_fen)
            placed = bool(events)
        session = self._new_session(trade_no, pile, station, tariff, gun_no, wallet_id,
                                    hold_fen if wallet_id else 0, origin, at, author)
        try:
            self.sessions.create(session, "session")
        except BaseException:
            if placed:  # release only the hold this call placed, never an earlier session's
                self.wallet_command(wallet_id, "release", key=f"release:{trade_no}", hold_id=trade_no)
            raise
        return trade_no

    def session_command(self, trade_no: str, command: str, **kwargs: Any) -> ChargingSession:
        """Run one session command, then bring the wallet in line with what it decided."""
        _, session, events = self.sessions.update_recorded(
            ChargingSession.create_id(trade_no), ChargingSession, "session",
            lambda s: getattr(s, command)(**kwargs),
        )
        self.apply_to_wallet(session, events)
        return session

    def record_readings(self, readings: list[dict[str, Any]]) -> list[Exception | None]:
        """Record realtime readings of many sessions in one transaction (the pile link's batch).

        Each item is ``{"trade_no", "at", "energy", **measurements}``. Returns, per item, None or
        the domain error that refused it. If the batch's save conflicts with another writer, the
        items are retried one by one, so one hot session never holds back the others.
        """
        outcomes: list[Exception | None] = [None] * len(readings)
        sessions: dict[str, ChargingSession] = {}
        for i, reading in enumerate(readings):
            trade_no = reading["trade_no"]
            try:
                session = sessions.get(trade_no) or self.session(trade_no)
                session.record_reading(**{k: v for k, v in reading.items() if k != "trade_no"})
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
                        self.session_command(reading["trade_no"], "record_reading",
                                             **{k: v for k, v in reading.items() if k != "trade_no"})
                    except DomainError as error:
                        outcomes[i] = error
        return outcomes

    def settle(self, trade_no: str, record: TransactionRecord, at: datetime, *, pile_no: str | None = None,
               gun_no: int | None = None, wallet_id: UUID | None = None) -> ChargingSession:
        """Settle a transaction record idempotently by trade serial.

        A record for a session never seen starting (an offline start) opens the session from the
        record and settles it in the same transaction.
        """
        if ChargingSession.create_id(trade_no) in self.sessions.repository:
            return self.session_command(trade_no, "settle", record=record, at=at)
        pile = self.registry.pile(pile_no or trade_no[:14])
        station = self.registry.station(pile.station_id)
        gun = gun_no if gun_no is not None else int(trade_no[14:16])
        session = self._new_session(trade_no, pile, station, self.tariff_for(pile), gun, wallet_id, 0,
                                    "offline", at, "pile")
        session.settle(record, at)
        try:
            recordings = self.sessions.save(session)
        except IntegrityError:  # a concurrent delivery of the same record got there first
            return self.session_command(trade_no, "settle", record=record, at=at)
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

