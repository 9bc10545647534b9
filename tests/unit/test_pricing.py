"""The pricing function against an independent reference pricer (Decimal yuan, written here)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import InvalidTariff
from domain.money import nano_to_fen
from domain.pricing import price
from domain.tariff import TIERS, TariffSchedule

prices_st = st.tuples(*[st.tuples(st.integers(0, 5_000_000), st.integers(0, 5_000_000)) for _ in TIERS])
slots_st = st.lists(st.integers(0, 3), min_size=48, max_size=48)
energy_st = st.tuples(*[st.integers(0, 5_000_000) for _ in TIERS])  # up to 500 kWh per tier


def schedule_of(prices: tuple, slots: list[int]) -> TariffSchedule:
    return TariffSchedule.build({t: {"electricity": e, "service": s} for t, (e, s) in zip(TIERS, prices)}, slots)


def reference_fee(energies: tuple, unit_prices: list[int]) -> int:
    """Yuan arithmetic the way a finance clerk writes it: kWh × yuan/kWh, summed, rounded to 0.01 half up."""
    yuan = sum((Decimal(e) / 10000) * (Decimal(p) / 100000) for e, p in zip(energies, unit_prices))
    return int((yuan.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP) * 100).to_integral_value())


@settings(max_examples=400)
@given(prices=prices_st, slots=slots_st, energies=energy_st)
def test_price_matches_reference(prices: tuple, slots: list[int], energies: tuple) -> None:
    bill = price(energies, schedule_of(prices, slots))
    assert bill.electricity_fen == reference_fee(energies, [p[0] for p in prices])
    assert bill.service_fen == reference_fee(energies, [p[1] for p in prices])
    assert bill.total_fen == bill.electricity_fen + bill.service_fen
    assert bill.energy == sum(energies)
    assert sum(t.electricity_nano for t in bill.tiers) == sum(e * p[0] for e, p in zip(energies, prices))


def test_rounding_is_half_up_once() -> None:
    assert nano_to_fen(4_999_999) == 0
    assert nano_to_fen(5_000_000) == 1  # exactly half a fen rounds up
    assert nano_to_fen(15_000_000) == 2
    # three tiers of 0.4 fen each: rounding per tier would give 0, rounding the total gives 1
    flat = {"electricity": 40000, "service": 0}
    sched = TariffSchedule.build({t: flat for t in TIERS}, [0] * 48)
    assert price((1, 1, 1, 0), sched).electricity_fen == 0  # 3 × 0.00004 yuan rounds to 0
    assert price((100, 100, 100, 0), sched).electricity_fen == 1  # 3 × 0.4 fen = 1.2 fen -> 1


@given(slots=slots_st, minute_of_day=st.integers(0, 24 * 60 - 1))
def test_tier_at_uses_half_hour_slots(slots: list[int], minute_of_day: int) -> None:
    sched = schedule_of(((1, 1),) * 4, slots)
    local = datetime(2026, 3, 1, tzinfo=ZoneInfo("Asia/Shanghai")) + timedelta(minutes=minute_of_day)
    assert sched.tier_at(local) == slots[minute_of_day // 30]


def test_slot_edges_and_midnight_in_station_zone() -> None:
    slots = [3] * 16 + [2] * 32  # valley until 08:00 local
    sched = schedule_of(((1, 1),) * 4, slots)
    zone = ZoneInfo("Asia/Shanghai")
    assert sched.tier_at(datetime(2026, 1, 1, 7, 59, 59, tzinfo=zone)) == 3
    assert sched.tier_at(datetime(2026, 1, 1, 8, 0, 0, tzinfo=zone)) == 2
    # 23:59 UTC is 07:59 next day in Shanghai: valley, not the UTC slot 47 (flat)
    utc = datetime(2026, 1, 1, 23, 59, tzinfo=timezone.utc)
    assert sched.tier_at(utc.astimezone(zone)) == 3


@pytest.mark.parametrize(
    ("prices", "slots", "message"),
    [
        ({t: {"electricity": 1, "service": 1} for t in TIERS}, [0] * 47, "48 half-hour slots"),
        ({t: {"electricity": 1, "service": 1} for t in TIERS}, [0] * 47 + [4], "slot 47 (23:30-00:00)"),
        ({t: {"electricity": 1, "service": 1} for t in TIERS}, [0] * 47 + [None], "is not assigned"),
        ({**{t: {"electricity": 1, "service": 1} for t in TIERS}, "peak": {"electricity": -1, "service": 1}},
         [0] * 48, "peak electricity price must be >= 0"),
        ({t: {"electricity": 1.5, "service": 1} for t in TIERS}, [0] * 48, "must be an integer"),
        ({t: {"electricity": 1, "service": 1} for t in TIERS[:3]}, [0] * 48, "no price for tier(s) ['valley']"),
    ],
)
def test_invalid_schedules_are_refused_with_a_clear_reason(prices: dict, slots: list, message: str) -> None:
    with pytest.raises(InvalidTariff, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace("]", r"\]")):
        TariffSchedule.build(prices, slots)
