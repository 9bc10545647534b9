"""Small builders shared by the tests: a tenant with a station, a pile, a tariff and a wallet."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from domain.ledger import Ledger
from domain.session import SettlementRecord
from domain.tariff import TIERS

PILE_NO = "32010600019236"
# sharp 1.20 + 0.60, peak 1.00 + 0.50, flat 0.70 + 0.40, valley 0.30 + 0.20 yuan/kWh
PRICES = {
    "sharp": {"electricity": 120000, "service": 60000},
    "peak": {"electricity": 100000, "service": 50000},
    "flat": {"electricity": 70000, "service": 40000},
    "valley": {"electricity": 30000, "service": 20000},
}
# valley 00-08, flat 08-10, peak 10-12, sharp 12-14, flat 14-18, peak 18-22, valley 22-24
SLOTS = [3] * 16 + [2] * 4 + [1] * 4 + [0] * 4 + [2] * 8 + [1] * 8 + [3] * 4


@dataclass
class World:
    tenant_id: UUID
    station_id: UUID
    tariff_id: UUID
    wallet_id: UUID
    pile_no: str = PILE_NO


def build_world(ledger: Ledger, *, top_up: int = 100_00, pile_no: str = PILE_NO, driver: str = "driver-1") -> World:
    tenant = ledger.create_tenant("Test Operator", "admin")
    station = ledger.create_station(tenant, "Station 1", "1 Test Road", 31.23, 121.47, "admin")
    ledger.register_pile(station, pile_no, "DC", 2, "admin")
    tariff = ledger.create_tariff(tenant, "standard", PRICES, SLOTS, "admin")
    ledger.assign_tariff(tariff, "admin", station_id=station)
    wallet = ledger.open_wallet(tenant, driver, "driver")
    if top_up:
        ledger.top_up(wallet, key=f"topup:{driver}", amount=top_up, provider="wechat",
                      payment_ref=f"wx-{driver}")
    return World(tenant, station, tariff, wallet, pile_no)


def record(tier_energy: tuple[int, int, int, int], started: datetime, minutes: int = 30,
           pile_total_amount: int | None = None) -> SettlementRecord:
    """A transaction record as a pile computes it with the test tariff (amounts in 0.0001 yuan)."""
    amounts = tuple(
        e * (PRICES[t]["electricity"] + PRICES[t]["service"]) // 10**5 for e, t in zip(tier_energy, TIERS)
    )
    return SettlementRecord(
        tier_energy=tier_energy,
        pile_tier_amounts=amounts,  # type: ignore[arg-type]
        pile_total_amount=sum(amounts) if pile_total_amount is None else pile_total_amount,
        pile_total_energy=sum(tier_energy),
        meter_start=1_000_000,
        meter_end=1_000_000 + sum(tier_energy),
        started_at=started,
        ended_at=started + timedelta(minutes=minutes),
        stop_reason=0x40,
    )
