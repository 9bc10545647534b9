"""The pile simulator's pure parts: the charging curve, the tier meter, seeded fleet specs."""

from __future__ import annotations

import random
from datetime import datetime

import pytest

from pile_link.simulator import BillingModel, ChargeCurve, PileSpec, TierMeter, Vehicle, generate_specs
from tests.e2e.simulator_platform import SLOTS, TIER_RATES


def test_the_charging_curve_ramps_holds_then_tapers_and_replays_from_a_seed() -> None:
    def charge(seed: int) -> list[tuple[int, int, int]]:
        rng = random.Random(seed)
        vehicle = Vehicle.draw(rng)
        curve = ChargeCurve(vehicle, 120_000, rng)
        out = []
        for _ in range(2000):
            r = curve.step(5.0)
            out.append((r.power_w, r.soc_pct, r.energy_delta))
            if r.full:
                break
        return out

    a, b = charge(11), charge(11)
    assert a == b  # same seed, same curve
    assert a != charge(12)
    powers = [p for p, _, _ in a]
    peak = max(powers)
    assert powers[0] < peak / 2  # ramp-up
    assert powers[-1] < peak * 0.5  # taper at high SOC
    socs = [s for _, s, _ in a]
    assert socs == sorted(socs)
    assert sum(e for _, _, e in a) > 0


def test_the_tier_meter_splits_energy_by_the_model_and_stops_within_the_balance() -> None:
    model = BillingModel("0001", tuple(t.electricity_price for t in TIER_RATES),
                         tuple(t.service_price for t in TIER_RATES), SLOTS)
    assert model.tier_at(datetime(2024, 6, 1, 7, 59)) == 3
    assert model.tier_at(datetime(2024, 6, 1, 8, 0)) == 2
    assert model.tier_at(datetime(2024, 6, 1, 12, 30)) == 0
    meter = TierMeter(model)
    meter.add(3, 10_000)  # 1 kWh valley at 0.50 yuan/kWh
    meter.add(2, 5_000)  # 0.5 kWh flat at 1.10
    assert meter.amount == 5_000 + 5_500  # 0.0001 yuan
    budget = 12_000
    fit = meter.affordable(0, 10_000, budget)  # sharp at 1.80 yuan/kWh: 1500 left -> 0.0833 kWh
    assert fit == 833
    meter.add(0, fit)
    assert meter.amount <= budget
    meter.add(0, 1)
    assert meter.amount > budget  # one more 0.0001 kWh would not fit


def test_generated_specs_are_seeded() -> None:
    specs = generate_specs(200, guns=2, seed=9, quirky=0.25)
    assert [s.crc_order for s in specs] == [s.crc_order for s in generate_specs(200, guns=2, seed=9, quirky=0.25)]
    assert 20 < sum(s.crc_order == "be" for s in specs) < 80
    assert specs[0].pile_no == "99000000000001" and specs[-1].pile_no == "99000000000200"
    with pytest.raises(ValueError):
        PileSpec("123")
