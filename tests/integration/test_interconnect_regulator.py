"""A's pushes to R, a regulator peer, through the outbox to R's door: every gun status change, a station's entry
on each change of its catalogue facts and once a day, every closed session's order whoever started it (the
app, a card, B), a re-priced one again, the daily check with what R disputes; and nothing new for B, a
customer peer."""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import psycopg

from adapters.interconnect.mapping import connector_code, session_range, session_seq, station_code
from adapters.interconnect.outbox import stations
from adapters.interconnect.store.profiles import StationProfile
from adapters.interconnect.tcec import wire
from adapters.interconnect.tcec.envelope import SHANGHAI
from adapters.interconnect.tcec.models.charge import StartChargeRequest
from domain.pricing import price
from domain.session import ChargingSession, SettlementRecord
from domain.start_rules import StartRules
from tests.integration.regulator_harness import A_FOR_R, Regulated, regulated, roaming  # noqa: F401
from tests.integration.roaming_harness import Roaming, online, seq, step

INFO, STATUS, ORDER = "notification_stationInfo", "notification_stationStatus", "notification_charge_order_info"
AC_PILE = "32010600019299"
CARD = "00000000deadbeef"
DAILY = re.compile(r"info:\d{4}-\d{2}-\d{2}:")


def changes(regulated: Regulated) -> list[dict[str, Any]]:
    """A's station entries for R made by a change (not the daily re-push, made whenever a test runs past 01:00)."""
    return [r for r in regulated.pushes(INFO) if not DAILY.match(r["key"])]


def settle(roaming: Roaming, trade_no: str, ended: datetime, energy: tuple[int, int, int, int]) -> None:
    roaming.a.ledger.settle(trade_no, SettlementRecord(energy, (0, 0, 0, 0), 0, sum(energy), 0, sum(energy),
                                                       ended - timedelta(minutes=50), ended, 0x40), ended)


def charging(roaming: Roaming, trade_no: str) -> str:
    now = datetime.now(timezone.utc)
    roaming.a.ledger.acknowledge_start(trade_no, at=now, ok=True)
    roaming.a.ledger.mark_charging(trade_no, at=now)
    return trade_no


def app_start(roaming: Roaming, gun_no: int) -> str:
    world = roaming.world
    return charging(roaming, roaming.a.ledger.request_start(
        pile_no=world.pile_no, gun_no=gun_no, wallet_id=world.wallet_id, hold_fen=50_00,
        at=datetime.now(timezone.utc), author="driver:driver-1"))


def b_start(roaming: Roaming, n: int) -> str:
    answer = roaming.call("query_start_charge", StartChargeRequest(
        StartChargeSeq=seq(n), ConnectorID=connector_code(roaming.world.pile_no, 1)))
    assert answer.SuccStat == 0
    return charging(roaming, roaming.a.scalar("SELECT trade_no FROM tcec_starts WHERE start_charge_seq = %s", seq(n)))


def test_a_regulator_hears_every_gun_status_and_each_change_of_a_stations_entry(regulated: Regulated) -> None:
    roaming, outbox = regulated.roaming, regulated.outbox()
    a, world = roaming.a.ledger, roaming.world
    step(outbox)
    assert changes(regulated) == []  # the stations registered before R was configured: not news
    online(a, world.pile_no)
    a.change_station(world.station_id, "Station 1 East", "2 Test Road", "admin")
    step(outbox)
    a.register_pile(world.station_id, AC_PILE, "AC", 1, "admin")
    step(outbox)
    a.set_pile_enabled(world.pile_no, False, "admin", "maintenance")
    a.set_pile_enabled(AC_PILE, False, "admin", "maintenance")  # one batch: one entry, the last change
    step(outbox)
    now = datetime.now(timezone.utc)
    roaming.a.store.profiles.set(world.tenant_id, world.station_id, StationProfile("310115", "021-55550000"), now,
                                 alongside=lambda cursor: stations.profile_changed(cursor, world.station_id, now))
    step(outbox)

    infos = [wire.loads(r["payload"])["StationInfo"] for r in changes(regulated)]
    assert [(i["StationName"], i["Address"], [e["EquipmentID"] for e in i["EquipmentInfos"]], i["StationStatus"],
             i["AreaCode"]) for i in infos] == [
        ("Station 1 East", "2 Test Road", [world.pile_no], 50, "000000"),
        ("Station 1 East", "2 Test Road", [world.pile_no, AC_PILE], 50, "000000"),
        ("Station 1 East", "2 Test Road", [world.pile_no, AC_PILE], 5, "000000"),
        ("Station 1 East", "2 Test Road", [world.pile_no, AC_PILE], 5, "310115")]
    assert {(i["StationID"], i["OperatorID"]) for i in infos} == {(station_code(world.station_id), A_FOR_R)}
    assert infos[1]["EquipmentInfos"][1]["ConnectorInfos"][0]["ConnectorID"] == connector_code(AC_PILE, 1)
    assert [(r["state"], r["answer"]) for r in changes(regulated)] == [("delivered", "Status 0")] * 4
    assert len(regulated.received(INFO)) == len(regulated.pushes(INFO))  # these (and the day's, if it is past 01:00)

    statuses = [(r["data"]["ConnectorStatusInfo"]["ConnectorID"], r["data"]["ConnectorStatusInfo"]["Status"])
                for r in regulated.received(STATUS)]
    gun1, gun2 = connector_code(world.pile_no, 1), connector_code(world.pile_no, 2)
    assert statuses == [(gun1, 2), (gun2, 1), (gun1, 0), (gun2, 0)]  # idle (plugged), idle, then disabled
    b_statuses = [(r["data"]["ConnectorStatusInfo"]["ConnectorID"], r["data"]["ConnectorStatusInfo"]["Status"])
                  for r in roaming.received(STATUS)]
    assert b_statuses == statuses  # B, a customer, as before
    assert regulated.pushes(INFO, roaming.b_on_a) == []  # and no station entries
    assert step(outbox)["answered"] == 0


def test_every_closed_session_of_the_tenant_is_an_order_for_the_regulator(regulated: Regulated) -> None:
    roaming, outbox = regulated.roaming, regulated.outbox()
    a, world = roaming.a.ledger, roaming.world
    online(a, world.pile_no)
    app = app_start(roaming, 2)
    settle(roaming, app, datetime.now(timezone.utc), (0, 0, 10_000, 0))
    a.bind_credential(world.wallet_id, "card", CARD, "admin")
    card, _ = a.start_at_pile(pile_no=world.pile_no, gun_no=2, kind="card", value=CARD,
                              at=datetime.now(timezone.utc), rules=StartRules())
    charging(roaming, card)
    roaming_seq = b_start(roaming, 7)
    settle(roaming, roaming_seq, datetime.now(timezone.utc), (0, 31_000, 21_345, 0))
    a.force_close(card, at=datetime.now(timezone.utc), reason="stuck", author="operator:ops")  # no record yet
    step(outbox)

    app_seq = session_seq(A_FOR_R, ChargingSession.create_id(app))
    card_seq = session_seq(A_FOR_R, ChargingSession.create_id(card))
    orders = {r["data"]["StartChargeSeq"]: r["data"] for r in regulated.received(ORDER)}
    assert set(orders) == {app_seq, card_seq, seq(7)}
    assert len(app_seq) == 27 and app_seq.startswith(A_FOR_R)
    low, high = session_range(app_seq)
    assert low <= ChargingSession.create_id(app) <= high
    bill = price((0, 0, 10_000, 0), a.session(app).schedule)
    assert (orders[app_seq]["TotalMoney"], orders[app_seq]["TotalPower"]) == (Decimal(bill.total_fen) / 100,
                                                                              Decimal("1.0000"))
    assert orders[app_seq]["ConnectorID"] == connector_code(world.pile_no, 2) and orders[app_seq]["StopReason"] == 0
    assert (orders[seq(7)]["StopReason"], orders[seq(7)]["TotalMoney"]) == (
        0, Decimal(a.session(roaming_seq).bill["total_fen"]) / 100)
    assert (orders[card_seq]["StopReason"], orders[card_seq]["TotalMoney"]) == (5, Decimal(0))  # closed without record
    assert [r["data"]["StartChargeSeq"] for r in roaming.received(ORDER)] == [seq(7)]  # B: its own order only

    settle(roaming, card, datetime.now(timezone.utc), (0, 0, 20_000, 0))  # the card's record, late: re-priced
    step(outbox)
    card_rows = [r for r in regulated.pushes(ORDER) if r["key"].startswith(f"order:{card_seq}")]
    assert [(r["key"].count(":"), r["state"]) for r in card_rows] == [(1, "delivered"), (2, "delivered")]
    (kept,) = [r for r in regulated.received(ORDER) if r["key"] == card_seq]
    assert kept["times"] == 2  # R's door: the same StartChargeSeq twice (it keeps the first copy)
    assert roaming.a.scalar("SELECT total_fen FROM tcec_peer_orders WHERE start_charge_seq = %s", card_seq) == \
        a.session(card).bill["total_fen"] == 2_20
    assert [r["data"]["StartChargeSeq"] for r in roaming.received(ORDER)] == [seq(7)]
    assert step(outbox)["answered"] == 0


def test_the_daily_batch_checks_the_days_orders_and_pushes_every_station_once_a_day(regulated: Regulated) -> None:
    roaming, outbox = regulated.roaming, regulated.outbox()
    a, world = roaming.a.ledger, roaming.world
    online(a, world.pile_no)
    app = app_start(roaming, 2)
    settle(roaming, app, datetime.now(timezone.utc), (0, 0, 10_000, 0))
    settle(roaming, b_start(roaming, 8), datetime.now(timezone.utc), (0, 0, 10_000, 0))
    step(outbox)
    app_seq = session_seq(A_FOR_R, ChargingSession.create_id(app))
    with psycopg.connect(regulated.r.database_url) as conn:  # R's copy of the app order says otherwise
        conn.execute("UPDATE tcec_received SET payload = replace(payload, '\"TotalMoney\":1.10', "
                     "'\"TotalMoney\":1.01') WHERE key = %s", (app_seq,))
    day = roaming.a.scalar("SELECT max(ended_at) FROM tcec_peer_orders").astimezone(SHANGHAI).date()

    def at(days: int, hour: int) -> datetime:
        return datetime.combine(day + timedelta(days=days), time(hour, 30), SHANGHAI)

    step(outbox, at(1, 0))
    assert regulated.received("check_charge_orders") == []  # not before 01:00 the next day
    before = len(regulated.received(INFO))  # today's re-push, if the test runs past 01:00
    step(outbox, at(1, 2))
    (check,) = [r["data"] for r in regulated.received("check_charge_orders")]
    assert (check["OrderCount"], {o["StartChargeSeq"] for o in check["ChargeOrders"]}) == (2, {app_seq, seq(8)})
    assert check["CheckOrderSeq"] == f"{A_FOR_R}{day:%Y%m%d}0000000000"
    assert check["TotalOrderMoney"] == sum(o["TotalMoney"] for o in check["ChargeOrders"])
    disputes = roaming.a.store.outbox.disputes([regulated.r_on_a.peer_id])
    assert [(d["source"], d["start_charge_seq"], d["reason"], d["total_money"]) for d in disputes] == [
        (f"check:{day.isoformat()}", app_seq, 2, "1.10")]
    (b_check,) = [r["data"] for r in roaming.received("check_charge_orders")]
    assert [o["StartChargeSeq"] for o in b_check["ChargeOrders"]] == [seq(8)]  # B's: the orders it started

    daily = regulated.received(INFO)[before:]
    assert [(r["data"]["StationInfo"]["StationID"], r["data"]["StationInfo"]["OperatorID"]) for r in daily] == [
        (station_code(world.station_id), A_FOR_R)]  # the tenant's one station; not the other tenant's
    assert [r["key"] for r in regulated.pushes(INFO)][-1] == (f"info:{(day + timedelta(days=1)).isoformat()}:"
                                                              f"{station_code(world.station_id)}")
    assert step(outbox, at(1, 3))["scheduled"] == 0  # once a day
    step(outbox, at(2, 2))
    assert len(regulated.received(INFO)) == before + 2  # the next day, again
    assert [r["data"]["OrderCount"] for r in regulated.received("check_charge_orders")] == [2, 0]
    assert regulated.pushes(INFO, roaming.b_on_a) == []
