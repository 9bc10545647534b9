"""We as infrastructure operator: B, a customer platform, calls A's query_* through A's door with TcecClient, as
it would over the network. Stations, statuses, prices and statistics of A's tenant only; a start is an
ordinary ledger session paid on B's receivable account, idempotent by StartChargeSeq; a connector of
another tenant is no such device, and nothing is written."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest

from adapters.interconnect.client import TcecRefused
from adapters.interconnect.mapping import connector_code, station_code
from adapters.interconnect.tcec.envelope import Ret
from adapters.interconnect.tcec.models.charge import (ChargeStatus, ChargeStatusRequest, StartChargeRequest,
                                                      StopChargeRequest)
from adapters.interconnect.tcec.models.policy import BusinessPolicyRequest, EquipAuthRequest
from adapters.interconnect.tcec.models.stations import StationsInfoRequest
from adapters.interconnect.tcec.models.status import StationStatsRequest, StationStatusRequest
from domain.pricing import price
from domain.session import SettlementRecord
from domain.wallet import Wallet, partner_driver_id
from tests.integration.roaming_harness import (B_ID, OTHER_PILE, T0, Roaming, online, roaming,  # noqa: F401
                                               seq)

GUN1 = connector_code("32010600019236", 1)


def test_b_reads_a_stations_page_by_page_and_only_its_tenants(roaming: Roaming) -> None:
    a = roaming.a
    second = a.ledger.create_station(roaming.world.tenant_id, "第二站", "2 Test Road\nNorth Gate", 31.2, 121.4,
                                     "admin")
    a.ledger.register_pile(second, "32010600019237", "AC", 1, "admin")
    roaming.views()
    first = roaming.call("query_stations_info", StationsInfoRequest(PageNo=1, PageSize=1))
    again = roaming.call("query_stations_info", StationsInfoRequest(PageNo=2, PageSize=1))
    assert (first.ItemSize, first.PageCount, again.PageNo) == (2, 2, 2)
    stations = {s.StationID: s for s in first.StationInfos + again.StationInfos}
    assert set(stations) == {station_code(roaming.world.station_id), station_code(second)}
    ours = stations[station_code(roaming.world.station_id)]
    assert (ours.OperatorID, ours.StationLat, ours.StationLng) == ("APLATFORM", Decimal("31.230000"),
                                                                   Decimal("121.470000"))
    (pile,) = ours.EquipmentInfos
    assert pile.EquipmentID == "32010600019236" and pile.EquipmentType == 1
    assert [c.ConnectorID for c in pile.ConnectorInfos] == [GUN1, connector_code("32010600019236", 2)]
    assert stations[station_code(second)].Address == "2 Test Road North Gate"  # a line break is no T/CEC text
    since = roaming.call("query_stations_info", StationsInfoRequest(LastQueryTime=T0 + timedelta(days=1)))
    assert (since.ItemSize, since.StationInfos) == (0, [])


def test_connector_statuses_follow_the_pile_link_and_other_tenants_stations_are_left_out(roaming: Roaming) -> None:
    online(roaming.a.ledger, roaming.world.pile_no)
    roaming.a.ledger.report_gun(roaming.world.pile_no, 2, "fault", False, {"hw:3": "meter"}, T0)
    roaming.views()
    mine, theirs = station_code(roaming.world.station_id), station_code(roaming.other.station_id)
    answer = roaming.call("query_station_status", StationStatusRequest(StationIDs=[mine, theirs, "nope"]))
    assert answer.Total == 1
    (station,) = answer.StationStatusInfos
    assert [(c.ConnectorID, int(c.Status)) for c in station.ConnectorStatusInfos] == [
        (GUN1, 2), (connector_code("32010600019236", 2), 255)]  # plugged in, not charging; a fault
    with pytest.raises(TcecRefused) as refused:
        roaming.call("query_station_status", StationStatusRequest.model_construct(StationIDs=[mine] * 51))
    assert refused.value.ret == Ret.BAD_DATA and "StationIDs" in refused.value.msg


def test_the_business_policy_is_our_tariff_to_the_fen_one_period_per_tier_change(roaming: Roaming) -> None:
    answer = roaming.call("query_equip_business_policy", BusinessPolicyRequest(EquipBizSeq=seq(1), ConnectorID=GUN1))
    assert (answer.SuccStat, answer.SumPeriod) == (0, 7)
    assert [(p.StartTime, str(p.ElecPrice), str(p.SevicePrice)) for p in answer.PolicyInfos] == [
        ("000000", "0.3000", "0.2000"), ("080000", "0.7000", "0.4000"), ("100000", "1.0000", "0.5000"),
        ("120000", "1.2000", "0.6000"), ("140000", "0.7000", "0.4000"), ("180000", "1.0000", "0.5000"),
        ("220000", "0.3000", "0.2000")]
    other = roaming.call("query_equip_business_policy",
                         BusinessPolicyRequest(EquipBizSeq=seq(2), ConnectorID=connector_code(OTHER_PILE, 1)))
    assert (other.SuccStat, other.FailReason, other.PolicyInfos) == (1, 1, [])


def test_prices_with_a_fifth_decimal_are_refused_not_rounded(roaming: Roaming) -> None:
    a = roaming.a.ledger
    prices = {t: {"electricity": 123456, "service": 10000} for t in ("sharp", "peak", "flat", "valley")}
    a.revise_tariff(roaming.world.tariff_id, prices, [2] * 48, "admin")
    answer = roaming.call("query_equip_business_policy", BusinessPolicyRequest(EquipBizSeq=seq(3), ConnectorID=GUN1))
    assert (answer.SuccStat, answer.FailReason) == (1, 2)


def test_equip_auth_says_whether_a_start_would_be_taken_up(roaming: Roaming) -> None:
    def auth(connector: str) -> tuple[int, int]:
        answer = roaming.call("query_equip_auth", EquipAuthRequest(EquipAuthSeq=seq(4), ConnectorID=connector))
        return int(answer.SuccStat), answer.FailReason

    assert auth(GUN1) == (1, 2)  # the pile is offline
    online(roaming.a.ledger, roaming.world.pile_no)
    assert auth(GUN1) == (0, 0)
    assert auth(connector_code("32010600019236", 2)) == (1, 1)  # no plug in
    assert auth(connector_code(OTHER_PILE, 1)) == (1, 2)


def test_a_start_on_another_tenants_connector_is_no_such_device_and_writes_nothing(roaming: Roaming) -> None:
    online(roaming.a.ledger, OTHER_PILE)
    before = (roaming.a.events(), roaming.a.scalar("SELECT count(*) FROM tcec_starts"))
    for connector in (connector_code(OTHER_PILE, 1), connector_code("32010600019236", 7), "0000000000000001"):
        answer = roaming.call("query_start_charge", StartChargeRequest(StartChargeSeq=seq(5), ConnectorID=connector))
        assert (answer.SuccStat, answer.FailReason, answer.StartChargeSeqStat) == (1, 1, 5)
    assert (roaming.a.events(), roaming.a.scalar("SELECT count(*) FROM tcec_starts")) == before


def test_a_start_on_an_offline_pile_is_refused_and_writes_nothing(roaming: Roaming) -> None:
    before = roaming.a.events()
    answer = roaming.call("query_start_charge", StartChargeRequest(StartChargeSeq=seq(6), ConnectorID=GUN1))
    assert (answer.SuccStat, answer.FailReason) == (1, 2)
    assert roaming.a.events() == before


def test_a_start_is_an_ordinary_session_paid_on_account_and_a_retry_starts_nothing(roaming: Roaming) -> None:
    a = roaming.a
    online(a.ledger, roaming.world.pile_no)
    start = StartChargeRequest(StartChargeSeq=seq(7), ConnectorID=GUN1)
    first = roaming.call("query_start_charge", start)
    assert (first.SuccStat, first.StartChargeSeqStat) == (0, 1)
    events = a.events()
    again = roaming.call("query_start_charge", start)
    assert again == first and a.events() == events  # the same answer, nothing new
    elsewhere = roaming.call("query_start_charge", StartChargeRequest(StartChargeSeq=seq(7),
                                                                      ConnectorID=connector_code("32010600019236", 2)))
    assert (elsewhere.SuccStat, elsewhere.FailReason) == (1, 5)
    trade_no = a.scalar("SELECT trade_no FROM tcec_starts WHERE start_charge_seq = %s", seq(7))
    session = a.ledger.session(trade_no)
    account = Wallet.create_id(roaming.world.tenant_id, partner_driver_id(B_ID))
    assert (session.origin, session.wallet_id, session.hold_fen) == ("tcec", account, 0)
    assert a.ledger.wallet(account).owed_to == f"receivable:{B_ID}"

    a.ledger.acknowledge_start(trade_no, at=T0, ok=True)
    a.ledger.mark_charging(trade_no, at=T0)
    a.ledger.record_reading(trade_no, at=T0 + timedelta(minutes=5), energy=52_000, voltage_dv=7500,
                            current_da=1200, soc_pct=60)
    status = roaming.call("query_equip_charge_status", ChargeStatusRequest(StartChargeSeq=seq(7)))
    assert isinstance(status, ChargeStatus)
    bill = a.ledger.session(trade_no).measured_bill()
    assert (status.StartChargeSeqStat, status.TotalPower, status.TotalMoney) == (2, Decimal("5.2000"),
                                                                                 Decimal(bill.total_fen) / 100)
    assert (status.VoltageA, status.CurrentA, status.Soc) == (Decimal("750.0"), Decimal("120.0"), Decimal(60))
    assert sum(d.DetailElecMoney + d.DetailSeviceMoney for d in status.ChargeDetails) == status.TotalMoney

    stop = StopChargeRequest(StartChargeSeq=seq(7), ConnectorID=GUN1)
    assert roaming.call("query_stop_charge", stop).StartChargeSeqStat == 3
    assert roaming.call("query_stop_charge", stop).SuccStat == 0  # sent again: the same answer
    energy = (0, 0, 0, 52_600)
    a.ledger.settle(trade_no, SettlementRecord(energy, (0, 0, 0, 0), 0, sum(energy), 0, sum(energy), T0,
                                               T0 + timedelta(minutes=6), 0x40), T0 + timedelta(minutes=6))
    total = price(energy, session.schedule).total_fen
    assert roaming.receivable() == total and a.ledger.wallet(account).owed == total
    closed = roaming.call("query_stop_charge", stop)
    assert (closed.SuccStat, closed.FailReason, closed.StartChargeSeqStat) == (1, 3, 4)


def test_an_unknown_charge_is_refused_for_the_status_and_failed_for_a_stop(roaming: Roaming) -> None:
    with pytest.raises(TcecRefused) as refused:
        roaming.call("query_equip_charge_status", ChargeStatusRequest(StartChargeSeq=seq(8)))
    assert refused.value.ret == Ret.BAD_DATA
    answer = roaming.call("query_stop_charge", StopChargeRequest(StartChargeSeq=seq(8), ConnectorID=GUN1))
    assert (answer.SuccStat, answer.FailReason) == (1, 4)


def test_station_stats_add_up_the_energy_of_the_closed_sessions(roaming: Roaming) -> None:
    a = roaming.a
    online(a.ledger, roaming.world.pile_no)
    roaming.call("query_start_charge", StartChargeRequest(StartChargeSeq=seq(9), ConnectorID=GUN1))
    trade_no = a.scalar("SELECT trade_no FROM tcec_starts WHERE start_charge_seq = %s", seq(9))
    energy = (0, 0, 12_345, 0)
    a.ledger.settle(trade_no, SettlementRecord(energy, (0, 0, 0, 0), 0, sum(energy), 0, sum(energy), T0,
                                               T0 + timedelta(minutes=6), 0x40), T0 + timedelta(minutes=6))
    roaming.views()
    today = (T0 + timedelta(hours=8)).date()
    answer = roaming.call("query_station_stats", StationStatsRequest(
        StationID=station_code(roaming.world.station_id), StartTime=today - timedelta(days=1),
        EndTime=today + timedelta(days=1)))
    stats = answer.StationStats
    assert stats.StationElectricity == Decimal("1.2345")
    assert [(c.ConnectorID, c.ConnectorElectricity) for e in stats.EquipmentStatsInfos
            for c in e.ConnectorStatsInfos] == [(GUN1, Decimal("1.2345")),
                                                (connector_code("32010600019236", 2), Decimal(0))]
    with pytest.raises(TcecRefused):
        roaming.call("query_station_stats", StationStatsRequest(StationID=station_code(roaming.other.station_id),
                                                                StartTime=date(2026, 1, 1), EndTime=date(2026, 1, 2)))
