"""The ledger's fixed-point amounts as T/CEC's decimals, exactly (docs/interconnect.md, "Money").

Money on the ledger is integer fen, energy integer 0.0001 kWh, unit prices integer 0.00001 yuan/kWh
(``domain/money.py``). T/CEC writes yuan with 2 decimals, kWh with (up to) 4 and prices in yuan/kWh
with 4: every conversion here is a shift of the decimal point on an integer (``Decimal.scaleb``),
never a float and never a rounding. A price with a non-zero fifth decimal has no 4-decimal form: it is
not rounded, the caller is told (:class:`Unrepresentable`) and says so to the peer.

* :func:`policy_infos`: a tariff schedule as ``PolicyInfo``s, one per change of tier over the day.
* :func:`charge_details`: a bill as ``ChargeDetail``s, one per tier that carried energy, spanning that
  tier's time within the session; each detail's money is its tier's share of the bill's totals
  (:func:`domain.money.apportion_fen`), so the details add up to the totals to the fen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from adapters.interconnect.tcec.models.charge import ChargeDetail
from adapters.interconnect.tcec.models.policy import MAX_PERIODS, PolicyInfo
from domain.money import apportion_fen
from domain.tariff import TariffSchedule

HALF_HOUR = timedelta(minutes=30)


class Unrepresentable(ValueError):
    """An amount T/CEC's decimals cannot carry exactly (a price's fifth decimal, more than 32 periods)."""


def yuan(fen: int) -> Decimal:
    """1234 fen -> Decimal('12.34')."""
    return Decimal(int(fen)).scaleb(-2)


def kwh(energy: int) -> Decimal:
    """123456 (0.0001 kWh) -> Decimal('12.3456')."""
    return Decimal(int(energy)).scaleb(-4)


def tenths(value: int | None) -> Decimal:
    """A YKC measure in tenths (voltage_dv, current_da) as its unit: 7500 -> Decimal('750.0')."""
    return Decimal(int(value or 0)).scaleb(-1)


def price(value: int) -> Decimal:
    """A unit price in 0.00001 yuan/kWh as yuan/kWh with 4 decimals: 120000 -> Decimal('1.2000').
    :class:`Unrepresentable` if its fifth decimal is not zero (123456 = 1.23456 yuan/kWh)."""
    if value % 10:
        raise Unrepresentable(f"the price {Decimal(value).scaleb(-5)} yuan/kWh has 5 decimal places; T/CEC "
                              "carries 4")
    return Decimal(value // 10).scaleb(-4)


def day_time(slot: int) -> str:
    """The start of a half-hour slot as ``HHmmss``: slot 17 -> '083000'."""
    return f"{slot // 2:02d}{30 * (slot % 2):02d}00"


def policy_infos(schedule: TariffSchedule) -> list[PolicyInfo]:
    """One PolicyInfo per change of tier over the day (the first at 000000), each running until the
    next StartTime, in the station's local time; :class:`Unrepresentable` for a price with 5 decimals
    or more than 32 changes."""
    infos: list[PolicyInfo] = []
    previous = None
    for slot, tier in enumerate(schedule.slots):
        if tier == previous:
            continue
        previous = tier
        tier_price = schedule.prices[tier]
        infos.append(PolicyInfo(StartTime=day_time(slot), ElecPrice=price(tier_price.electricity),
                                SevicePrice=price(tier_price.service)))
    if len(infos) > MAX_PERIODS:
        raise Unrepresentable(f"the tariff changes tier {len(infos)} times a day; T/CEC carries {MAX_PERIODS}")
    return infos


def tier_spans(schedule: TariffSchedule, timezone: str, start: datetime, end: datetime) -> dict[int, tuple[datetime,
                                                                                                          datetime]]:
    """For each tier in force between ``start`` and ``end`` (aware), the first instant it was in force
    and the last: a tier that came back later in the session spans both of its periods."""
    zone = ZoneInfo(timezone)
    spans: dict[int, tuple[datetime, datetime]] = {}
    cursor = start
    while cursor < end:
        local = cursor.astimezone(zone)
        slot_start = local.replace(minute=30 if local.minute >= 30 else 0, second=0, microsecond=0)
        boundary = min((slot_start + HALF_HOUR).astimezone(start.tzinfo), end)
        tier = schedule.tier_at(local)
        first = spans.get(tier, (cursor, boundary))[0]
        spans[tier] = (first, boundary)
        cursor = boundary
    return spans


def charge_details(bill: Mapping[str, Any], schedule: TariffSchedule, timezone: str, start: datetime,
                   end: datetime) -> list[ChargeDetail]:
    """A bill (``Bill.as_dict()``) as ChargeDetails, in time order (see the module); empty when a
    price has no 4-decimal form (the totals are exact all the same, and are sent without details)."""
    tiers: Sequence[Mapping[str, Any]] = bill["tiers"]
    electricity = apportion_fen(bill["electricity_fen"], [t["electricity_nano"] for t in tiers])
    service = apportion_fen(bill["service_fen"], [t["service_nano"] for t in tiers])
    spans = tier_spans(schedule, timezone, start, max(start, end))
    details = []
    try:
        for index, tier in enumerate(tiers):
            if not tier["energy"]:
                continue
            first, last = spans.get(index, (start, max(start, end)))
            details.append(ChargeDetail(
                DetailStartTime=first, DetailEndTime=last, ElecPrice=price(tier["electricity_price"]),
                SevicePrice=price(tier["service_price"]), DetailPower=kwh(tier["energy"]),
                DetailElecMoney=yuan(electricity[index]), DetailSeviceMoney=yuan(service[index])))
    except Unrepresentable:
        return []
    return sorted(details, key=lambda d: (d.DetailStartTime, d.DetailEndTime))
