"""The billing model a pile holds (0x0A / 0x58) and the per-tier meter of one charging session.

A real pile prices the charge itself, from the model the platform gave it: its display, the
running amount in 0x13 and the per-tier split in 0x3B all come from that model (protocol note §6).
The platform re-prices from the per-tier energy with its own single rounding rule and records
any difference; so the pile's rounding here is its own (per tier, half up to 0.0001 yuan), and
is allowed to differ from the platform's by a fraction of a fen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from pile_link.ykc import TIERS, BillingModelReply, BillingModelSet, TierUsage

NANO_PER_AMOUNT = 100_000  # 0.0001 kWh x 0.00001 yuan/kWh = 1e-9 yuan; 0.0001 yuan = 1e5 of those


@dataclass(frozen=True)
class BillingModel:
    """Tier rates (sharp, peak, flat, valley) in 0.00001 yuan/kWh and 48 half-hour slots of local time."""

    model_no: str
    electricity: tuple[int, int, int, int]
    service: tuple[int, int, int, int]
    slots: tuple[int, ...]
    loss_ratio: int = 0  # percent, added to the energy billed ("计损"); the platform sends 0

    @classmethod
    def from_message(cls, msg: BillingModelReply | BillingModelSet) -> BillingModel:
        return cls(
            model_no=msg.model_no,
            electricity=tuple(t.electricity_price for t in msg.tiers),  # type: ignore[arg-type]
            service=tuple(t.service_price for t in msg.tiers),  # type: ignore[arg-type]
            slots=tuple(msg.slots),
            loss_ratio=msg.loss_ratio,
        )

    def tier_at(self, local: datetime) -> int:
        """Tier number (0 sharp .. 3 valley) in force at a local wall-clock time."""
        return self.slots[local.hour * 2 + local.minute // 30]

    def price(self, tier: int) -> int:
        """Electricity + service rate of a tier, 0.00001 yuan/kWh: the 0x3B "unit price"."""
        return self.electricity[tier] + self.service[tier]

    def with_loss(self, energy: int) -> int:
        return energy * (100 + self.loss_ratio) // 100

    def describe(self) -> str:
        rates = ", ".join(f"{name} {self.price(i) / 100_000:.4f}" for i, name in enumerate(TIERS))
        return f"model {self.model_no}: {rates} yuan/kWh"


@dataclass
class TierMeter:
    """Energy of one session split by the tier in force when it was delivered."""

    model: BillingModel
    energy: list[int] = field(default_factory=lambda: [0, 0, 0, 0])  # 0.0001 kWh per tier

    def tier_amount(self, tier: int) -> int:
        """0.0001 yuan, this pile's rounding: half up, per tier."""
        nano = self.model.with_loss(self.energy[tier]) * self.model.price(tier)
        return (nano + NANO_PER_AMOUNT // 2) // NANO_PER_AMOUNT

    @property
    def total_energy(self) -> int:
        return sum(self.energy)

    @property
    def amount(self) -> int:
        return sum(self.tier_amount(t) for t in range(4))

    def affordable(self, tier: int, energy: int, budget: int) -> int:
        """The part of ``energy`` (0.0001 kWh) that can be added in ``tier`` keeping the amount <= ``budget``."""
        if self.model.price(tier) == 0:
            return energy
        lo, hi = 0, energy
        other = self.amount - self.tier_amount(tier)
        base = self.energy[tier]
        while lo < hi:  # largest e in [0, energy] with the amount still within budget
            mid = (lo + hi + 1) // 2
            self.energy[tier] = base + mid
            if other + self.tier_amount(tier) <= budget:
                lo = mid
            else:
                hi = mid - 1
        self.energy[tier] = base
        return lo

    def add(self, tier: int, energy: int) -> None:
        self.energy[tier] += energy

    def usage(self) -> tuple[TierUsage, TierUsage, TierUsage, TierUsage]:
        return tuple(  # type: ignore[return-value]
            TierUsage(
                price=self.model.price(t),
                energy=self.energy[t],
                loss_energy=self.model.with_loss(self.energy[t]),
                amount=self.tier_amount(t),
            )
            for t in range(4)
        )
