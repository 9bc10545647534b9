"""Hypothesis strategies for T/CEC business objects (tests/unit/interconnect/test_models.py)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from adapters.interconnect.tcec.envelope import SHANGHAI
from adapters.interconnect.tcec.models import charge, codes, orders, policy, stations, status

ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
VISIBLE = "".join(chr(c) for c in range(0x21, 0x7F))

operator_ids = st.text(ALNUM, min_size=9, max_size=9)
seq_ids = st.text(ALNUM, min_size=27, max_size=27)
station_ids = st.text(VISIBLE, min_size=1, max_size=20)
equipment_ids = st.text(VISIBLE, min_size=1, max_size=23)
connector_ids = st.text(VISIBLE, min_size=1, max_size=26)
# names and remarks: Latin, CJK, emoji, punctuation; no control characters
words = st.text(st.characters(codec="utf-8", categories=("L", "N", "P", "S", "Zs")), max_size=30)


def decimals(places: int, high: int, low: int = 0) -> st.SearchStrategy[Decimal]:
    return st.integers(low * 10**places, high * 10**places).map(lambda n: Decimal(n).scaleb(-places))


money = decimals(2, 99_999)
prices = decimals(4, 99)
energy = decimals(4, 9_999)
measures = decimals(4, 9_999, -9_999)
times = st.datetimes(datetime(2016, 1, 1), datetime(2040, 1, 1)).map(
    lambda t: t.replace(microsecond=0, tzinfo=SHANGHAI))
day_times = st.times().map(lambda t: t.strftime("%H%M%S"))


def enum(cls: Any) -> st.SearchStrategy[Any]:
    return st.sampled_from(list(cls))


connector_status = st.builds(status.ConnectorStatusInfo, ConnectorID=connector_ids,
                             Status=enum(codes.ConnectorStatus),
                             ParkStatus=st.none() | enum(codes.ParkStatus), LockStatus=st.none() | enum(codes.LockStatus))

connector_info = st.builds(stations.ConnectorInfo, ConnectorID=connector_ids, ConnectorName=st.none() | words,
                           ConnectorType=enum(codes.ConnectorType), VoltageUpperLimits=measures,
                           VoltageLowerLimits=measures, Current=measures, Power=measures,
                           NationalStandard=st.none() | enum(codes.NationalStandard))

equipment_info = st.builds(stations.EquipmentInfo, EquipmentID=equipment_ids, ManufacturerName=st.none() | words,
                           EquipmentModel=st.none() | words, ProductionDate=st.none() | st.dates(),
                           EquipmentType=enum(codes.EquipmentType),
                           ConnectorInfos=st.lists(connector_info, max_size=3),
                           EquipmentLng=st.none() | decimals(6, 180, -180), EquipmentLat=st.none() | decimals(6, 90, -90),
                           Power=measures)

station_info = st.builds(
    stations.StationInfo, StationID=station_ids, OperatorID=operator_ids, EquipmentOwnerID=operator_ids,
    StationName=words, CountryCode=st.just("CN"), AreaCode=st.text("0123456789", min_size=6, max_size=6),
    Address=words, ServiceTel=st.text("0123456789-", max_size=15), StationType=enum(codes.StationType),
    StationStatus=enum(codes.StationStatus), ParkNums=st.integers(0, 500), StationLng=decimals(6, 180, -180),
    StationLat=decimals(6, 90, -90), Construction=enum(codes.Construction),
    Pictures=st.none() | st.lists(words, max_size=2), BusineHours=st.none() | words,
    SupportOrder=st.none() | st.integers(0, 1), EquipmentInfos=st.lists(equipment_info, max_size=2))


@st.composite
def charge_details(draw: Any, count: int) -> list[charge.ChargeDetail]:
    start = draw(times)
    result = []
    for _ in range(count):
        end = start + timedelta(seconds=draw(st.integers(0, 7200)))
        result.append(charge.ChargeDetail(DetailStartTime=start, DetailEndTime=end, ElecPrice=draw(prices),
                                          SevicePrice=draw(prices), DetailPower=draw(energy),
                                          DetailElecMoney=draw(money), DetailSeviceMoney=draw(money)))
        start = end
    return result


@st.composite
def order_info(draw: Any) -> orders.ChargeOrderInfo:
    details = draw(st.integers(0, 4).flatmap(charge_details))
    start = details[0].DetailStartTime if details else draw(times)
    end = details[-1].DetailEndTime if details else start + timedelta(minutes=draw(st.integers(0, 600)))
    return orders.ChargeOrderInfo(
        StartChargeSeq=draw(seq_ids), ConnectorID=draw(connector_ids), StartTime=start, EndTime=end,
        TotalPower=draw(energy), TotalElecMoney=draw(money), TotalSeviceMoney=draw(money), TotalMoney=draw(money),
        StopReason=draw(st.integers(0, 99)), SumPeriod=len(details), ChargeDetails=details)


@st.composite
def charge_status(draw: Any) -> charge.ChargeStatus:
    order = draw(order_info())
    return charge.ChargeStatus(
        StartChargeSeq=order.StartChargeSeq, StartChargeSeqStat=draw(enum(codes.StartChargeSeqStat)),
        ConnectorID=order.ConnectorID, ConnectorStatus=draw(enum(codes.ConnectorStatus)), CurrentA=draw(measures),
        VoltageA=draw(measures), VoltageB=draw(st.none() | measures), Soc=draw(st.none() | decimals(1, 100)),
        StartTime=order.StartTime, EndTime=order.EndTime, TotalPower=order.TotalPower,
        ElecMoney=draw(st.none() | money), SeviceMoney=draw(st.none() | money), TotalMoney=order.TotalMoney,
        SumPeriod=order.SumPeriod, ChargeDetails=order.ChargeDetails)


@st.composite
def policy_answer(draw: Any) -> policy.BusinessPolicyResponse:
    starts = sorted(draw(st.sets(day_times, max_size=8)))
    infos = [policy.PolicyInfo(StartTime=s, ElecPrice=draw(prices), SevicePrice=draw(prices)) for s in starts]
    return policy.BusinessPolicyResponse(EquipBizSeq=draw(seq_ids), ConnectorID=draw(connector_ids),
                                         SuccStat=draw(enum(codes.SuccStat)), FailReason=draw(st.integers(0, 99)),
                                         SumPeriod=len(infos), PolicyInfos=infos)


check_orders = st.builds(
    orders.CheckChargeOrders, CheckOrderSeq=seq_ids, StartTime=times, EndTime=times,
    OrderCount=st.integers(0, 10**6), TotalOrderPower=energy, TotalOrderMoney=money,
    ChargeOrders=st.lists(st.builds(orders.CheckedOrder, StartChargeSeq=seq_ids, TotalPower=energy,
                                    TotalMoney=money), max_size=5))

business_objects = st.one_of(connector_status, station_info, order_info(), charge_status(), policy_answer(),
                             check_orders)
