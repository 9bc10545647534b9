"""Pricing: per-tier energy and a tariff schedule in, a bill in fen out.

This is the one place a session's money is computed. Each tier's electricity and service amounts
are exact (energy × unit price, in 1e-9 yuan); the electricity total and the service total are each
rounded once, by :func:`domain.money.nano_to_fen`. The per-tier exact amounts are kept on the bill
so a driver or an auditor can see where every fen came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from domain.money import nano_to_fen
from domain.tariff import TIERS, TariffSchedule


@dataclass(frozen=True)
class TierCharge:
    tier: str
    energy: int  # 0.0001 kWh
    electricity_price: int  # 0.00001 yuan/kWh
    service_price: int
    electricity_nano: int  # exact, 1e-9 yuan
    service_nano: int


@dataclass(frozen=True)
class Bill:
    tiers: tuple[TierCharge, ...]
    energy: int
    electricity_fen: int
    service_fen: int

    @property
    def total_fen(self) -> int:
        return self.electricity_fen + self.service_fen

    def as_dict(self) -> dict[str, Any]:
        return {
            "energy": self.energy,
            "electricity_fen": self.electricity_fen,
            "service_fen": self.service_fen,
            "total_fen": self.total_fen,
            "tiers": [t.__dict__.copy() for t in self.tiers],
        }


def price(energy_by_tier: Sequence[int], schedule: TariffSchedule) -> Bill:
    """Price per-tier energy (sharp, peak, flat, valley; 0.0001 kWh each) with a schedule."""
    if len(energy_by_tier) != len(TIERS):
        raise ValueError(f"need energy for {len(TIERS)} tiers, got {len(energy_by_tier)}")
    charges = []
    for tier, energy, p in zip(TIERS, energy_by_tier, schedule.prices, strict=True):
        if energy < 0:
            raise ValueError(f"negative energy in tier {tier}")
        charges.append(TierCharge(tier, energy, p.electricity, p.service, energy * p.electricity, energy * p.service))
    return Bill(
        tiers=tuple(charges),
        energy=sum(energy_by_tier),
        electricity_fen=nano_to_fen(sum(c.electricity_nano for c in charges)),
        service_fen=nano_to_fen(sum(c.service_nano for c in charges)),
    )
