"""The rules of the infrastructure operator's side, without servers: our ids as T/CEC ids and back, a gun as a
connector status, the ledger's fixed-point amounts as T/CEC decimals (exact, never rounded), a bill's details
adding up to its totals, what a peer's answer to a push means, and the retry pauses."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.interconnect.amounts import Unrepresentable, charge_details, policy_infos, price, tier_spans, yuan
from adapters.interconnect.mapping import (connector_code, connector_status, parse_connector, station_code,
                                           station_range, stop_reason)
from adapters.interconnect.outbox.sender import RetryPolicy, judge
from adapters.interconnect.tcec.models.charge import ResultAck
from adapters.interconnect.tcec.models.orders import ChargeOrderAck, ChargeOrderInfo, CheckChargeOrdersResponse
from adapters.interconnect.tcec.models.status import StationStatusAck
from domain.money import NANO_PER_FEN, apportion_fen, nano_to_fen
from domain.pricing import price as bill_for
from domain.tariff import TariffSchedule
from tests.factories import PRICES, SLOTS

SCHEDULE = TariffSchedule.build(PRICES, SLOTS)
SEQ = "BPLATFORM000000000000000001"
T0 = datetime(2026, 11, 22, 1, 45, tzinfo=timezone.utc)  # 09:45 in Shanghai: flat, then peak at 10:00


def test_ids_go_to_tcec_and_back() -> None:
    station = uuid.UUID("8c2b7f0e-5d4a-4c3b-9a1f-0123456789ab")
    code = station_code(station)
    assert (code, len(code)) == ("8c2b7f0e5d4a4c3b9a1f", 20)
    low, high = station_range(code.upper())  # type: ignore[misc]
    assert low <= station <= high and low.hex.startswith(code) and high.hex.startswith(code)
    assert station_range("not-a-station") is None and station_range(code[:19]) is None
    assert connector_code("32010600019236", 1) == "3201060001923601"
    assert parse_connector("3201060001923601") == ("32010600019236", 1)
    for wrong in ("3201060001923600", "320106000192361", "32010600019236012", "32010600019236ab", 3201060001923601):
        assert parse_connector(wrong) is None  # type: ignore[arg-type]


@pytest.mark.parametrize("enabled, online, status, plugged, faults, code", [
    (True, False, "idle", True, [], 0), (False, True, "idle", False, [], 0), (True, True, "offline", False, [], 0),
    (True, True, "idle", False, ["hw:3"], 255), (True, True, "fault", False, [], 255),
    (True, True, "charging", True, [], 3), (True, True, "idle", True, [], 2), (True, True, "idle", False, [], 1)])
def test_a_gun_as_a_connector_status(enabled: bool, online: bool, status: str, plugged: bool, faults: list[str],
                                     code: int) -> None:
    assert connector_status(enabled=enabled, online=online, status=status, plugged=plugged, faults=faults) == code


def test_stop_reasons() -> None:
    assert [stop_reason(r, by_peer=False) for r in (0x40, 0x41, 0x45, 0x4B, 0x6A, None)] == [0, 2, 0, 4, 3, 5]
    assert stop_reason(0x41, by_peer=True) == 1


def test_prices_go_to_four_decimals_exactly_or_not_at_all() -> None:
    assert price(120000) == Decimal("1.2000")
    assert str(price(123450)) == "1.2345" and str(yuan(5)) == "0.05" and str(yuan(0)) == "0.00"
    with pytest.raises(Unrepresentable):
        price(123456)
    with pytest.raises(Unrepresentable):
        policy_infos(TariffSchedule.build(PRICES, [n % 2 for n in range(48)]))  # 48 changes: more than 32


def test_tier_spans_follow_the_stations_local_half_hours() -> None:
    spans = tier_spans(SCHEDULE, "Asia/Shanghai", T0, T0 + timedelta(minutes=50))
    assert spans == {2: (T0, T0 + timedelta(minutes=15)), 1: (T0 + timedelta(minutes=15), T0 + timedelta(minutes=50))}


@given(st.lists(st.integers(0, 10**6), min_size=4, max_size=4))
def test_details_add_up_to_the_bills_totals_to_the_fen(energy: list[int]) -> None:
    bill = bill_for(energy, SCHEDULE).as_dict()
    details = charge_details(bill, SCHEDULE, "Asia/Shanghai", T0, T0 + timedelta(hours=14))
    assert sum((d.DetailElecMoney for d in details), Decimal(0)) == yuan(bill["electricity_fen"])
    assert sum((d.DetailSeviceMoney for d in details), Decimal(0)) == yuan(bill["service_fen"])
    assert sum((d.DetailPower for d in details), Decimal(0)) == Decimal(sum(energy)).scaleb(-4)
    assert [d.DetailStartTime for d in details] == sorted(d.DetailStartTime for d in details)


@given(st.lists(st.integers(0, 10**12), min_size=1, max_size=6))
def test_apportioning_keeps_the_total_and_each_share_within_a_fen(parts: list[int]) -> None:
    total = nano_to_fen(sum(parts))
    shares = apportion_fen(total, parts)
    assert sum(shares) == total
    assert all(abs(share * NANO_PER_FEN - part) < NANO_PER_FEN for share, part in zip(shares, parts, strict=True))


ORDER = ChargeOrderInfo(StartChargeSeq=SEQ, ConnectorID="3201060001923601", StartTime=T0, EndTime=T0,
                        TotalPower=Decimal("1.5"), TotalElecMoney=Decimal("1.00"), TotalSeviceMoney=Decimal("0.50"),
                        TotalMoney=Decimal("1.50"), StopReason=0)


def test_what_a_peers_answer_to_a_push_means() -> None:
    assert judge("notification_stationStatus", ORDER, StationStatusAck(Status=0)).state == "delivered"
    assert judge("notification_stationStatus", ORDER, StationStatusAck(Status=1)).state == "ignored"  # never resent
    assert judge("notification_start_charge_result", ORDER, ResultAck(StartChargeSeq=SEQ, SuccStat=0)).state \
        == "delivered"
    failed = judge("notification_start_charge_result", ORDER, ResultAck(StartChargeSeq=SEQ, SuccStat=1, FailReason=1))
    assert failed.state is None and "FailReason 1" in failed.note  # receive failed: sent again
    agreed = judge("notification_charge_order_info", ORDER, ChargeOrderAck(StartChargeSeq=SEQ,
                                                                           ConnectorID=ORDER.ConnectorID, ConfirmResult=0))
    assert (agreed.state, agreed.disputes) == ("delivered", ())
    disputed = judge("notification_charge_order_info", ORDER, ChargeOrderAck(
        StartChargeSeq=SEQ, ConnectorID=ORDER.ConnectorID, ConfirmResult=1))
    assert disputed.state == "delivered" and [(d.start_charge_seq, d.reason, d.total_money)
                                              for d in disputed.disputes] == [(SEQ, 1, "1.50")]
    check = judge("check_charge_orders", ORDER, CheckChargeOrdersResponse.model_validate({
        "CheckOrderSeq": SEQ, "StartTime": "2026-11-22 00:00:00", "EndTime": "2026-11-22 23:59:59",
        "TotalDisputeOrder": 1, "TotalDisputePower": 1, "TotalDisputeMoney": 2, "DisputeOrders": [
            {"StartChargeSeq": SEQ, "TotalPower": 1, "TotalMoney": 2, "DisputeReason": 2}]}))
    assert [(d.reason, d.total_money) for d in check.disputes] == [(2, "2")]


def test_retry_pauses_double_up_to_the_longest_then_give_up() -> None:
    policy = RetryPolicy(timedelta(seconds=30), timedelta(hours=1), 10)
    assert [policy.pause(n) for n in (1, 2, 3, 7, 8)] == [timedelta(seconds=s) for s in (30, 60, 120, 1920, 3600)]
    assert policy.pause(9) == timedelta(hours=1) and policy.pause(10) is None
