"""A DC charging curve that looks like a real one: ramp up, a plateau, then a taper with SOC.

Deterministic given the vehicle (drawn from the pile's seeded ``random.Random``) and the step
size: :meth:`ChargeCurve.step` advances a fixed span of simulated time and returns what a meter
and a BMS would report. No wall clock is read here, so a seed replays the same curve.

The model, kept deliberately simple and documented in docs/simulator.md:

* power = min(pile limit, vehicle limit × taper(SOC)) × ramp(t), with ±0.5 % noise;
  taper is 1 up to the vehicle's knee SOC, then falls linearly to 8 % at 100 %;
  ramp rises linearly over the first ``RAMP_S`` seconds (insulation check, pre-charge, BMS);
* pack voltage follows the open-circuit voltage, rising with SOC (0.88 to 1.08 × nominal),
  plus a small IR rise under current; current = power / voltage;
* SOC += energy / capacity; battery and cable temperatures follow first-order heating with
  losses ∝ power and current², cooling towards the ambient.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

RAMP_S = 45.0
TAPER_FLOOR = 0.08


@dataclass(frozen=True)
class Vehicle:
    """The car on the gun: what its BMS accepts."""

    capacity_wh: int  # usable battery energy
    nominal_v: float  # pack nominal voltage
    max_power_w: int  # what the car accepts at low SOC
    knee_soc: float  # % where the taper starts
    start_soc: float  # %
    target_soc: float  # % where the BMS ends the charge
    ambient_c: float

    @classmethod
    def draw(cls, rng: random.Random) -> Vehicle:
        """A plausible car: 40-100 kWh, a 400 V or (one in five) 800 V class pack."""
        nominal = 720.0 if rng.random() < 0.2 else rng.choice((350.0, 370.0, 400.0))
        return cls(
            capacity_wh=rng.randrange(40, 101, 5) * 1000,
            nominal_v=nominal,
            max_power_w=rng.randrange(60, 181, 10) * 1000 if nominal < 700 else rng.randrange(150, 251, 10) * 1000,
            knee_soc=rng.uniform(45.0, 65.0),
            start_soc=rng.uniform(8.0, 40.0),
            target_soc=rng.choice((90.0, 95.0, 100.0)),
            ambient_c=rng.uniform(10.0, 30.0),
        )


@dataclass
class Reading:
    """What the pile measures after a step, in protocol units."""

    power_w: int
    voltage_dv: int  # 0.1 V
    current_da: int  # 0.1 A
    soc_pct: int
    battery_temp_c: int
    cable_temp_c: int
    energy_delta: int  # 0.0001 kWh delivered in this step
    remaining_min: int
    full: bool  # the BMS says it reached its target


class ChargeCurve:
    """The state of one charge; call :meth:`step` once per fixed span of simulated time."""

    def __init__(self, vehicle: Vehicle, pile_max_power_w: int, rng: random.Random) -> None:
        self.vehicle = vehicle
        self.pile_max_power_w = pile_max_power_w
        self.rng = rng
        self.t = 0.0
        self.soc = vehicle.start_soc
        self.battery_temp = vehicle.ambient_c + 3.0
        self.cable_temp = vehicle.ambient_c
        self._energy_wh_exact = 0.0  # delivered so far, before rounding to 0.0001 kWh
        self._energy_reported = 0  # 0.0001 kWh already returned in energy_delta

    def _taper(self, soc: float) -> float:
        knee = self.vehicle.knee_soc
        if soc <= knee:
            return 1.0
        return max(TAPER_FLOOR, 1.0 - (1.0 - TAPER_FLOOR) * (soc - knee) / (100.0 - knee))

    def power_at(self, t: float, soc: float) -> float:
        ramp = min(1.0, t / RAMP_S) if RAMP_S > 0 else 1.0
        limit = min(self.pile_max_power_w, self.vehicle.max_power_w * self._taper(soc))
        return limit * ramp

    def step(self, dt: float, *, power_cap_w: float | None = None) -> Reading:
        """Advance ``dt`` simulated seconds. ``power_cap_w`` lets the pile hold power lower (a limit)."""
        v = self.vehicle
        self.t += dt
        if self.soc >= v.target_soc:
            power = 0.0
        else:
            power = self.power_at(self.t, self.soc) * (1.0 + self.rng.uniform(-0.005, 0.005))
            if power_cap_w is not None:
                power = min(power, power_cap_w)
        energy_wh = power * dt / 3600.0
        self._energy_wh_exact += energy_wh
        self.soc = min(100.0, self.soc + 100.0 * energy_wh / v.capacity_wh)
        ocv = v.nominal_v * (0.88 + 0.20 * self.soc / 100.0)
        current = power / ocv if ocv else 0.0
        voltage = ocv + current * 0.05 * (v.nominal_v / 400.0)  # pack resistance ~50 mOhm at 400 V
        current = power / voltage if voltage else 0.0
        # first-order thermal models: heating from losses, cooling towards ambient
        self.battery_temp += dt * (power / 1000.0 * 0.0006 - (self.battery_temp - v.ambient_c) * 0.0004)
        self.cable_temp += dt * ((current / 100.0) ** 2 * 0.012 - (self.cable_temp - v.ambient_c) * 0.004)
        total = int(self._energy_wh_exact * 10)  # Wh -> 0.0001 kWh is x10
        delta, self._energy_reported = total - self._energy_reported, total
        remaining_wh = max(0.0, (v.target_soc - self.soc) / 100.0 * v.capacity_wh)
        avg_power = max(1000.0, (power + v.max_power_w * TAPER_FLOOR) / 2.0)
        return Reading(
            power_w=round(power),
            voltage_dv=round(voltage * 10) if power > 0 else 0,
            current_da=round(current * 10),
            soc_pct=int(self.soc),
            battery_temp_c=round(self.battery_temp),
            cable_temp_c=round(self.cable_temp),
            energy_delta=delta,
            remaining_min=round(remaining_wh / avg_power * 60.0),
            full=self.soc >= v.target_soc,
        )
