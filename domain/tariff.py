"""Time-of-use tariffs (尖峰平谷) as a versioned aggregate.

A schedule has four tiers (sharp, peak, flat, valley: the YKC rate numbers 00 to 03), each with an
electricity and a service price in 0.00001 yuan/kWh, and a table of 48 half-hour slots naming the
tier of each half hour of the station's local day. Every revision of the prices or slots makes a
new tariff version; a charging session keeps the schedule and version it started with.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import InvalidTariff

TIERS = ("sharp", "peak", "flat", "valley")
SLOTS_PER_DAY = 48
MAX_PRICE = 0xFFFFFFFF  # a YKC price field is 4 bytes


@dataclass(frozen=True)
class TierPrice:
    electricity: int  # 0.00001 yuan/kWh
    service: int  # 0.00001 yuan/kWh


@dataclass(frozen=True)
class TariffSchedule:
    prices: tuple[TierPrice, TierPrice, TierPrice, TierPrice]  # sharp, peak, flat, valley
    slots: tuple[int, ...]  # 48 tier indexes, slot 0 = 00:00-00:30 local

    @classmethod
    def build(cls, prices: Any, slots: Any) -> TariffSchedule:
        """Validate raw input (dicts, lists) into a schedule, or raise InvalidTariff saying what is wrong."""
        if isinstance(prices, dict):
            unknown = set(prices) - set(TIERS)
            if unknown:
                raise InvalidTariff(f"unknown tier(s) {sorted(unknown)}; tiers are {list(TIERS)}")
            missing = [t for t in TIERS if t not in prices]
            if missing:
                raise InvalidTariff(f"no price for tier(s) {missing}")
            prices = [prices[t] for t in TIERS]
        if len(prices) != len(TIERS):
            raise InvalidTariff(f"a tariff has {len(TIERS)} tiers, got {len(prices)}")
        parsed = []
        for tier, p in zip(TIERS, prices, strict=True):
            elec, serv = (p["electricity"], p["service"]) if isinstance(p, dict) else (p.electricity, p.service)
            for what, value in (("electricity", elec), ("service", serv)):
                if not isinstance(value, int) or isinstance(value, bool):
                    raise InvalidTariff(f"{tier} {what} price must be an integer in 0.00001 yuan/kWh, got {value!r}",
                                        tier=tier, price=what)
                if value < 0:
                    raise InvalidTariff(f"{tier} {what} price must be >= 0, got {value}", tier=tier, price=what)
                if value > MAX_PRICE:
                    raise InvalidTariff(f"{tier} {what} price {value} does not fit the YKC 4-byte field",
                                        tier=tier, price=what)
            parsed.append(TierPrice(elec, serv))
        slots = list(slots)
        if len(slots) != SLOTS_PER_DAY:
            raise InvalidTariff(f"the slot table needs {SLOTS_PER_DAY} half-hour slots, got {len(slots)}")
        for i, tier in enumerate(slots):
            if isinstance(tier, str) and tier in TIERS:
                slots[i] = TIERS.index(tier)
            elif not isinstance(tier, int) or isinstance(tier, bool) or not 0 <= tier < len(TIERS):
                raise InvalidTariff(f"slot {i} ({slot_label(i)}) is not assigned a tier: {tier!r}", slot=i)
        return cls(prices=tuple(parsed), slots=tuple(slots))  # type: ignore[arg-type]

    def tier_at(self, local: datetime) -> int:
        """The tier index in force at a local wall-clock time."""
        return self.slots[local.hour * 2 + (1 if local.minute >= 30 else 0)]

    def as_dict(self) -> dict[str, Any]:
        return {
            "prices": {t: {"electricity": p.electricity, "service": p.service} for t, p in zip(TIERS, self.prices)},
            "slots": list(self.slots),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TariffSchedule:
        return cls.build(d["prices"], d["slots"])


def slot_label(i: int) -> str:
    start = i * 30
    end = start + 30
    return f"{start // 60:02d}:{start % 60:02d}-{end // 60 % 24:02d}:{end % 60:02d}"


class Tariff(Aggregate):
    """A tenant's tariff. ``version`` counts revisions of the schedule, starting at 1."""

    @event("Created")
    def __init__(self, tenant_id: UUID, name: str, schedule: dict[str, Any], author: str) -> None:
        self.tenant_id = tenant_id
        self.name = name
        self.schedule_dict = schedule
        self.tariff_version = 1
        self.history: list[dict[str, Any]] = [schedule]

    @classmethod
    def create(cls, tenant_id: UUID, name: str, schedule: TariffSchedule, author: str) -> Tariff:
        if not name.strip():
            raise InvalidTariff("a tariff needs a name", field="name")
        return cls(tenant_id=tenant_id, name=name, schedule=schedule.as_dict(), author=author)

    def revise(self, schedule: TariffSchedule, author: str) -> None:
        self._revised(schedule=schedule.as_dict(), author=author)

    @event("Revised")
    def _revised(self, schedule: dict[str, Any], author: str) -> None:
        self.schedule_dict = schedule
        self.tariff_version += 1
        self.history.append(schedule)

    @property
    def schedule(self) -> TariffSchedule:
        return TariffSchedule.from_dict(self.schedule_dict)

    def schedule_at(self, tariff_version: int) -> TariffSchedule:
        if not 1 <= tariff_version <= self.tariff_version:
            raise InvalidTariff(f"tariff {self.id} has no version {tariff_version}")
        return TariffSchedule.from_dict(self.history[tariff_version - 1])

    @property
    def model_no(self) -> int:
        """The YKC billing-model number (4 BCD digits) the piles see for this version."""
        return self.tariff_version % 10000
