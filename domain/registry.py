"""The registry: tenants (operators), stations, piles and their guns.

Every change is an event carrying its author. A pile's aggregate id is derived from its 14-digit
YKC pile number, so a pile number is registered at most once platform-wide and the pile link can
find a pile from a login frame without an index.
"""

from __future__ import annotations

import re
from uuid import NAMESPACE_URL, UUID, uuid5
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from eventsourcing.domain import Aggregate, event

from domain.errors import InvalidRegistration

PILE_NO = re.compile(r"^\d{14}$")
DEFAULT_TIMEZONE = "Asia/Shanghai"


def _required(value: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidRegistration(f"{what} is required")
    return value.strip()


class Tenant(Aggregate):
    """An operator (运营商) sharing the platform."""

    @event("Created")
    def __init__(self, name: str, author: str) -> None:
        self.name = name

    @classmethod
    def create(cls, name: str, author: str) -> Tenant:
        return cls(name=_required(name, "tenant name"), author=author)

    @event("Renamed")
    def rename(self, name: str, author: str) -> None:
        self.name = name


class Station(Aggregate):
    @event("Created")
    def __init__(self, tenant_id: UUID, name: str, address: str, latitude: float, longitude: float,
                 timezone: str, author: str) -> None:
        self.tenant_id = tenant_id
        self.name = name
        self.address = address
        self.latitude = latitude
        self.longitude = longitude
        self.timezone = timezone
        self.tariff_id: UUID | None = None

    @classmethod
    def create(cls, tenant_id: UUID, name: str, address: str, latitude: float, longitude: float,
               author: str, timezone: str = DEFAULT_TIMEZONE) -> Station:
        if not -90 <= latitude <= 90 or not -180 <= longitude <= 180:
            raise InvalidRegistration(f"coordinates out of range: {latitude}, {longitude}")
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidRegistration(f"unknown time zone {timezone!r}") from None
        return cls(tenant_id=tenant_id, name=_required(name, "station name"), address=address,
                   latitude=float(latitude), longitude=float(longitude), timezone=timezone, author=author)

    @event("Changed")
    def change(self, name: str, address: str, author: str) -> None:
        self.name = name
        self.address = address

    @event("TariffAssigned")
    def assign_tariff(self, tariff_id: UUID | None, author: str) -> None:
        self.tariff_id = tariff_id


class Pile(Aggregate):
    """A charging pile with its guns (numbered from 1, as on the YKC wire)."""

    @staticmethod
    def create_id(pile_no: str) -> UUID:
        return uuid5(NAMESPACE_URL, f"chargeledger:pile:{pile_no}")

    @event("Registered")
    def __init__(self, pile_no: str, tenant_id: UUID, station_id: UUID, kind: str, gun_count: int,
                 author: str) -> None:
        self.pile_no = pile_no
        self.tenant_id = tenant_id
        self.station_id = station_id
        self.kind = kind
        self.guns = {str(n): {"enabled": True} for n in range(1, gun_count + 1)}
        self.enabled = True
        self.tariff_id: UUID | None = None

    @classmethod
    def register(cls, pile_no: str, tenant_id: UUID, station_id: UUID, kind: str, gun_count: int,
                 author: str) -> Pile:
        if not isinstance(pile_no, str) or not PILE_NO.match(pile_no):
            raise InvalidRegistration(f"a YKC pile number is 14 digits, got {pile_no!r}")
        if kind not in ("DC", "AC"):
            raise InvalidRegistration(f"pile kind is DC or AC, got {kind!r}")
        if not isinstance(gun_count, int) or not 1 <= gun_count <= 99:
            raise InvalidRegistration(f"gun count must be 1..99 (a BCD byte), got {gun_count!r}")
        return cls(pile_no=pile_no, tenant_id=tenant_id, station_id=station_id, kind=kind,
                   gun_count=gun_count, author=author)

    @property
    def gun_count(self) -> int:
        return len(self.guns)

    def has_gun(self, gun_no: int) -> bool:
        return str(gun_no) in self.guns

    @event("Enabled")
    def enable(self, author: str) -> None:
        self.enabled = True

    @event("Disabled")
    def disable(self, author: str, reason: str = "") -> None:
        self.enabled = False

    @event("TariffAssigned")
    def assign_tariff(self, tariff_id: UUID | None, author: str) -> None:
        self.tariff_id = tariff_id

    @event("Moved")
    def move(self, station_id: UUID, author: str) -> None:
        self.station_id = station_id
