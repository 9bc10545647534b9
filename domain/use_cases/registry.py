"""Tenants, stations, piles and tariffs: the operator's registry."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from domain.errors import AlreadyExists, InvalidRegistration, NotFound
from domain.registry import Pile, Station, Tenant
from domain.tariff import Tariff, TariffSchedule
from domain.text import NAME, REASON, checked
from domain.use_cases.core import LedgerCore


class RegistryUseCases(LedgerCore):
    # ---- tenants, stations, piles ----------------------------------------------------------------
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

    def change_station(self, station_id: UUID, name: str, address: str, author: str,
                       tenant_id: UUID | None = None) -> None:
        """Rename or re-address a station; ``tenant_id`` scopes the call to an operator."""
        def change(station: Station) -> None:
            if tenant_id is not None and station.tenant_id != tenant_id:
                raise NotFound(f"no station {station_id}", id=str(station_id))
            station.change(name=name, address=address, author=author)
        self.registry.update(station_id, Station, "station", change)

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

    # ---- tariffs ---------------------------------------------------------------------------------
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
