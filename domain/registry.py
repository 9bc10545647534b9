"""The registry: tenants (operators), stations, piles and their guns.

Every change is an event carrying its author. A pile's aggregate id is derived from its 14-digit
YKC pile number, so a pile number is registered at most once platform-wide and the pile link can
find a pile from a login frame without an index.
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from eventsourcing.domain import Aggregate, event

from domain.aggregate import shallow_clone
from domain.errors import InvalidRegistration, PileUnavailable
from domain.ids import derived_id
from domain.text import ADDRESS, NAME, TIMEZONE, checked

PILE_NO = re.compile(r"^\d{14}$")
DEFAULT_TIMEZONE = "Asia/Shanghai"
GUN_STATUSES = ("offline", "fault", "idle", "charging")  # the YKC 0x13 status byte, 0..3
PILE_COMMANDS = ("reboot", "set_parameters", "push_tariff", "read_realtime")


class Tenant(Aggregate):
    """An operator (运营商) sharing the platform."""

    @event("Created")
    def __init__(self, name: str, author: str) -> None:
        self.name = name

    @classmethod
    def create(cls, name: str, author: str) -> Tenant:
        return cls(name=checked(name, "tenant name", NAME, required=True), author=author)

    def rename(self, name: str, author: str) -> None:
        self._renamed(name=checked(name, "tenant name", NAME, required=True), author=author)

    @event("Renamed")
    def _renamed(self, name: str, author: str) -> None:
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
        name = checked(name, "station name", NAME, required=True)
        address = checked(address, "station address", ADDRESS, multiline=True)
        timezone = checked(timezone, "time zone", TIMEZONE, required=True)
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a directory ("Asia"), a long name
            raise InvalidRegistration(f"unknown time zone {timezone!r}") from None
        return cls(tenant_id=tenant_id, name=name, address=address, latitude=float(latitude),
                   longitude=float(longitude), timezone=timezone, author=author)

    def change(self, name: str, address: str, author: str) -> None:
        self._changed(name=checked(name, "station name", NAME, required=True),
                      address=checked(address, "station address", ADDRESS, multiline=True), author=author)

    @event("Changed")
    def _changed(self, name: str, address: str, author: str) -> None:
        self.name = name
        self.address = address

    @event("TariffAssigned")
    def assign_tariff(self, tariff_id: UUID | None, author: str) -> None:
        self.tariff_id = tariff_id


@lru_cache(maxsize=20_000)
def _pile_id(pile_no: str) -> UUID:
    """The aggregate id of a pile, a name-based uuid: hashed once per pile_no (every frame asks for it)."""
    return derived_id("pile", pile_no)


class Pile(Aggregate):
    """A charging pile with its guns (numbered from 1, as on the YKC wire)."""

    @staticmethod
    def create_id(pile_no: str) -> UUID:
        return _pile_id(pile_no)

    @event("Registered")
    def __init__(self, pile_no: str, tenant_id: UUID, station_id: UUID, kind: str, gun_count: int,
                 author: str) -> None:
        self.pile_no = pile_no
        self.tenant_id = tenant_id
        self.station_id = station_id
        self.kind = kind
        self.guns = {str(n): {"enabled": True, "status": "offline", "plugged": False, "faults": []}
                     for n in range(1, gun_count + 1)}
        self.enabled = True
        self.tariff_id: UUID | None = None
        self.online = False
        self.connection: dict[str, Any] | None = None
        self.billing_model: dict[str, Any] | None = None  # the tariff version the pile last took

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

    def not_ready_because(self, gun_no: int) -> str:
        """Why a start on this gun would not be taken up now ('' if it would), from what the pile
        link last reported: the pile offline or disabled, the gun charging, faulted or disabled.

        A gun still "offline" on a pile that is online is not a reason: the link marks every gun
        offline when it drops, and a pile that logged in again may report its guns only with its
        next realtime frame (minutes, when idle); the pile itself refuses a start it cannot take."""
        gun = self._gun(gun_no)
        if not self.enabled:
            return "the pile is disabled"
        if not self.online:
            return "the pile is offline"
        if not gun["enabled"]:
            return f"gun {gun_no} is disabled"
        if gun["faults"] or gun["status"] == "fault":
            return f"gun {gun_no} reports a fault"
        if gun["status"] == "charging":
            return f"gun {gun_no} is charging"
        return ""

    def require_ready(self, gun_no: int) -> None:
        reason = self.not_ready_because(gun_no)
        if reason:
            raise PileUnavailable(f"pile {self.pile_no}: {reason}", pile_no=self.pile_no, gun_no=gun_no,
                                  reason=reason)

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

    # ---- what the pile link observes ------------------------------------------------------
    # Heartbeats are not events (10,000 piles would write 1,000 a second for nothing); only changes
    # of state are: the link coming up or going down, a gun's status, a fault raised or cleared.
    @event("Connected")
    def connect(self, at: datetime, gateway: str, protocol_version: int, program_version: str) -> None:
        self.online = True
        self.connection = {"at": at, "gateway": gateway, "protocol_version": protocol_version,
                           "program_version": program_version}

    def disconnect(self, at: datetime, reason: str) -> None:
        if self.online:
            self._disconnected(at=at, reason=reason)

    @event("Disconnected")
    def _disconnected(self, at: datetime, reason: str) -> None:
        self.online = False
        for gun in self.guns.values():
            gun["status"] = "offline"

    def report_gun_status(self, gun_no: int, status: str, plugged: bool, at: datetime) -> bool:
        """Record a gun's status if it changed. Returns True if an event was recorded."""
        if status not in GUN_STATUSES:
            raise InvalidRegistration(f"gun status is one of {', '.join(GUN_STATUSES)}, got {status!r}")
        gun = self._gun(gun_no)
        if gun["status"] == status and gun["plugged"] == plugged:
            return False
        self._gun_status_changed(gun_no=gun_no, status=status, plugged=plugged, at=at)
        return True

    @event("GunStatusChanged")
    def _gun_status_changed(self, gun_no: int, status: str, plugged: bool, at: datetime) -> None:
        gun = self.guns[str(gun_no)]
        gun["status"] = status
        gun["plugged"] = plugged

    def report_faults(self, gun_no: int, faults: dict[str, str], at: datetime) -> None:
        """Raise the faults newly present and clear the ones gone (``faults``: code -> description)."""
        gun = self._gun(gun_no)
        for code in [c for c in gun["faults"] if c not in faults]:
            self._fault_cleared(gun_no=gun_no, code=code, at=at)
        for code, description in faults.items():
            if code not in gun["faults"]:
                self._fault_raised(gun_no=gun_no, code=code, description=description, at=at)

    @event("FaultRaised")
    def _fault_raised(self, gun_no: int, code: str, description: str, at: datetime) -> None:
        self.guns[str(gun_no)]["faults"] = [*self.guns[str(gun_no)]["faults"], code]

    @event("FaultCleared")
    def _fault_cleared(self, gun_no: int, code: str, at: datetime) -> None:
        self.guns[str(gun_no)]["faults"] = [c for c in self.guns[str(gun_no)]["faults"] if c != code]

    @event("FrameRefused")
    def report_refused_frames(self, kind: str, frame_type: int, detail: str, count: int, at: datetime) -> None:
        """The pile link refused ``count`` frames of this pile's connection for one reason (``kind``:
        ``other_pile``, ``unknown_gun``, ``foreign_session``); ``frame_type`` and ``detail`` are the
        last one's. The link writes at most one of these per pile and kind a minute."""

    def confirm_billing_model(self, tariff_id: UUID, version: int, at: datetime) -> None:
        """The pile now bills with this tariff version (it asked for it, or acknowledged a push).

        Model numbers are 4 digits and two tariffs can share one, so a pile's 0x05 is checked
        against this, not against the number alone."""
        model = {"tariff_id": str(tariff_id), "version": version}
        if self.billing_model != model:
            self._billing_model_confirmed(tariff_id=tariff_id, version=version, at=at)

    @event("BillingModelConfirmed")
    def _billing_model_confirmed(self, tariff_id: UUID, version: int, at: datetime) -> None:
        self.billing_model = {"tariff_id": str(tariff_id), "version": version}

    # ---- commands to the pile: each is an event the gateway holding the pile turns into a frame ----
    def request_command(self, command: str, params: dict[str, Any], at: datetime, author: str) -> None:
        if command not in PILE_COMMANDS:
            raise InvalidRegistration(f"pile command is one of {', '.join(PILE_COMMANDS)}, got {command!r}")
        self._command_requested(command=command, params=params, at=at, author=author)

    @event("CommandRequested")
    def _command_requested(self, command: str, params: dict[str, Any], at: datetime, author: str) -> None:
        pass

    @event("CommandAnswered")
    def answer_command(self, command: str, ok: bool, detail: str, at: datetime) -> None:
        pass

    def _gun(self, gun_no: int) -> dict[str, Any]:
        gun = self.guns.get(str(gun_no))
        if gun is None:
            raise InvalidRegistration(f"pile {self.pile_no} has no gun {gun_no}")
        return gun

    def __deepcopy__(self, memo: dict[int, Any]) -> Pile:
        """Commands get a copy of the cached pile; only the gun dicts and pending events are mutated."""
        clone = shallow_clone(self)
        clone.guns = {n: {**g, "faults": list(g["faults"])} for n, g in self.guns.items()}
        clone._pending_events = list(self._pending_events)
        return clone
