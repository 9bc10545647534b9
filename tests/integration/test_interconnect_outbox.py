"""A's pushes to B through the outbox: a session's start result, stop result and order (the bill to the fen,
owed on B's receivable in A's books, the auditor's replay balanced), every gun status change once,
charge statuses at B's interval, the daily check with the orders B disputes, and a push that failed while
B was down sent again by a restarted outbox and delivered once."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from decimal import Decimal

from adapters.audit.replay import replay
from adapters.interconnect.mapping import connector_code
from adapters.interconnect.outbox.sender import RetryPolicy
from adapters.interconnect.tcec.envelope import SHANGHAI
from adapters.interconnect.tcec.models.charge import StartChargeRequest, StopChargeRequest
from domain.pricing import price
from domain.session import SettlementRecord
from domain.wallet import Wallet
from tests.integration.roaming_harness import A_ID, B_ID, OTHER_PILE, Roaming, online, roaming, seq, step  # noqa: F401

GUN1 = connector_code("32010600019236", 1)
ENERGY = (0, 31_000, 21_345, 0)  # peak and flat


def started(roaming: Roaming, n: int, *, b_knows: bool = True) -> str:
    """B starts a charge on gun 1 (for one of its drivers, unless not ``b_knows``: then B's pushes from A
    are about a charge B never made); the pile takes it and charges. Returns the trade serial."""
    online(roaming.a.ledger, roaming.world.pile_no)
    if b_knows:
        roaming.driver(f"outbox-{n}")
        wallet_id = Wallet.create_id(roaming.b.tenant_id, f"wechat:wx-main:outbox-{n}")
        roaming.b.ledger.start_roaming(tenant_id=roaming.b.tenant_id, wallet_id=wallet_id, peer=A_ID,
                                       connector_id=GUN1, station_id="", start_charge_seq=seq(n), hold_fen=100_00,
                                       at=datetime.now(timezone.utc), author="test")
    answer = roaming.call("query_start_charge", StartChargeRequest(StartChargeSeq=seq(n), ConnectorID=GUN1))
    assert answer.SuccStat == 0
    trade_no = roaming.a.scalar("SELECT trade_no FROM tcec_starts WHERE start_charge_seq = %s", seq(n))
    now = datetime.now(timezone.utc)
    roaming.a.ledger.acknowledge_start(trade_no, at=now, ok=True)
    roaming.a.ledger.mark_charging(trade_no, at=now)
    return trade_no


def settle(roaming: Roaming, trade_no: str, ended: datetime, energy: tuple[int, int, int, int] = ENERGY) -> None:
    roaming.a.ledger.settle(trade_no, SettlementRecord(energy, (0, 0, 0, 0), 0, sum(energy), 0, sum(energy),
                                                       ended - timedelta(minutes=50), ended, 0x40), ended)


def test_a_session_is_pushed_in_order_and_its_order_is_the_bill_owed_on_bs_account(roaming: Roaming) -> None:
    outbox = roaming.outbox()
    trade_no = started(roaming, 1)
    step(outbox)
    (start,) = roaming.received("notification_start_charge_result")
    assert (start["data"]["StartChargeSeqStat"], start["data"]["ConnectorID"]) == (2, GUN1)
    roaming.call("query_stop_charge", StopChargeRequest(StartChargeSeq=seq(1), ConnectorID=GUN1))
    ended = datetime.now(timezone.utc)
    settle(roaming, trade_no, ended)
    step(outbox)
    (stop,) = roaming.received("notification_stop_charge_result")
    (order,) = roaming.received("notification_charge_order_info")
    assert (stop["data"]["StartChargeSeqStat"], stop["data"]["SuccStat"]) == (4, 0)
    session = roaming.a.ledger.session(trade_no)
    bill = price(ENERGY, session.schedule)
    data = order["data"]
    assert data["TotalMoney"] == Decimal(bill.total_fen) / 100 == Decimal(session.bill["total_fen"]) / 100
    assert (data["TotalElecMoney"], data["TotalSeviceMoney"]) == (Decimal(bill.electricity_fen) / 100,
                                                                 Decimal(bill.service_fen) / 100)
    assert data["TotalPower"] == Decimal("5.2345") and data["StopReason"] == 1  # stopped by B
    assert sum(d["DetailElecMoney"] + d["DetailSeviceMoney"] for d in data["ChargeDetails"]) == data["TotalMoney"]
    assert {d["DetailPower"] for d in data["ChargeDetails"]} == {Decimal("3.1000"), Decimal("2.1345")}
    assert [(r["interface"], r["state"], r["attempts"]) for r in roaming.pushes()] == [
        ("notification_start_charge_result", "delivered", 1), ("notification_stop_charge_result", "delivered", 1),
        ("notification_charge_order_info", "delivered", 1)]
    assert step(outbox)["answered"] == 0  # nothing owed twice

    assert roaming.receivable() == bill.total_fen  # A's books: B owes exactly the bill
    roaming.views()
    assert roaming.a.scalar("SELECT driver_id || ' ' || origin || ' ' || total_fen FROM orders WHERE trade_no = %s",
                            trade_no) == f"partner:{B_ID} tcec {bill.total_fen}"
    report = replay(roaming.a.database_url)
    assert report.ok, report.as_text()
    assert report.trial_balance == 0 and report.accounts[f"receivable:{B_ID}"] == bill.total_fen
    assert report.accounts["revenue:electricity"] == -bill.electricity_fen


def test_every_gun_status_change_of_the_tenant_is_pushed_once(roaming: Roaming) -> None:
    outbox = roaming.outbox()
    a, pile = roaming.a.ledger, roaming.world.pile_no
    now = datetime.now(timezone.utc)
    online(a, pile)  # gun 1 idle with a plug in (2), gun 2 idle (1)
    a.report_gun(pile, 1, "charging", True, {}, now)
    a.report_gun(pile, 1, "charging", True, {}, now)  # no change: no event, no push
    a.report_gun(pile, 2, "idle", False, {"hw:3": "meter"}, now)
    a.pile_disconnected(pile, now, "link lost")
    online(a, OTHER_PILE)  # another tenant's: never B's business
    step(outbox)
    pushed = [(r["data"]["ConnectorStatusInfo"]["ConnectorID"][-2:], r["data"]["ConnectorStatusInfo"]["Status"])
              for r in roaming.received("notification_stationStatus")]
    assert pushed == [("01", 2), ("02", 1), ("01", 3), ("02", 255), ("01", 0), ("02", 0)]
    assert step(outbox)["answered"] == 0
    assert roaming.a.store.outbox.prune(now + timedelta(days=29)) == 0  # answered rows are kept 30 days
    assert roaming.a.store.outbox.prune(now + timedelta(days=31)) == 6


def test_charge_statuses_go_at_bs_interval_and_stop_with_the_session(roaming: Roaming) -> None:
    outbox = roaming.outbox()
    trade_no = started(roaming, 2)
    roaming.a.ledger.record_reading(trade_no, at=datetime.now(timezone.utc), energy=10_000, voltage_dv=7500,
                                    current_da=1000, soc_pct=40)
    charging_at = roaming.a.ledger.session(trade_no).started_at
    step(outbox, charging_at + timedelta(seconds=30))
    assert roaming.received("notification_equip_charge_status") == []  # B's interval is 60 s
    step(outbox, charging_at + timedelta(seconds=61))
    step(outbox, charging_at + timedelta(seconds=62))  # the same interval: nothing more
    (first,) = roaming.received("notification_equip_charge_status")
    assert (first["data"]["StartChargeSeqStat"], first["data"]["TotalPower"], first["data"]["Soc"]) == (
        2, Decimal("1.0000"), 40)
    settle(roaming, trade_no, datetime.now(timezone.utc))
    step(outbox, charging_at + timedelta(seconds=125))
    assert len(roaming.received("notification_equip_charge_status")) == 1  # closed: no more snapshots


def test_a_push_that_failed_while_b_was_down_is_sent_again_after_a_restart_and_delivered_once(
        roaming: Roaming) -> None:
    policy = RetryPolicy(first=timedelta(seconds=30))
    roaming.b_down[0] = True
    first = roaming.outbox(policy)
    started(roaming, 3)
    before = datetime.now(timezone.utc)
    step(first, before)
    (row,) = roaming.pushes()
    assert (row["state"], row["attempts"]) == ("pending", 1) and "ConnectError" in row["last_error"]
    assert row["due"] >= before + timedelta(seconds=30)
    first.close()  # the process ends

    roaming.b_down[0] = False
    restarted = roaming.outbox(policy)
    assert step(restarted, before + timedelta(seconds=5))["answered"] == 0  # not due yet: the pause survived
    assert roaming.received("notification_start_charge_result") == []
    due = row["due"]
    step(restarted, due + timedelta(seconds=1))
    (received,) = roaming.received("notification_start_charge_result")
    assert received["times"] == 1
    (row,) = roaming.pushes()
    assert (row["state"], row["attempts"]) == ("delivered", 2)
    assert step(restarted, due + timedelta(seconds=2))["answered"] == 0
    assert roaming.received("notification_start_charge_result")[0]["times"] == 1


def test_the_daily_check_lists_the_days_orders_and_records_what_b_disputes(roaming: Roaming) -> None:
    outbox = roaming.outbox()
    agreed, disputed = started(roaming, 4), None
    settle(roaming, agreed, datetime.now(timezone.utc))
    step(outbox)
    disputed = started(roaming, 5)
    settle(roaming, disputed, datetime.now(timezone.utc), (0, 0, 10_000, 0))
    step(outbox)
    with roaming.a.client.app.state.pool.connection() as conn:  # A's record of the second order says otherwise
        conn.execute("UPDATE tcec_starts SET total_fen = total_fen + 1 WHERE start_charge_seq = %s", (seq(5),))
    ended = roaming.a.scalar("SELECT max(ended_at) FROM tcec_starts")
    day = ended.astimezone(SHANGHAI).date()
    step(outbox, datetime.combine(day + timedelta(days=1), time(0, 30), SHANGHAI))
    assert roaming.received("check_charge_orders") == []  # not before 01:00 the next day
    step(outbox, datetime.combine(day + timedelta(days=1), time(2, 0), SHANGHAI))
    checks = [r["data"] for r in roaming.received("check_charge_orders")]
    check = checks[-1]
    assert (check["OrderCount"], [o["StartChargeSeq"] for o in check["ChargeOrders"]]) == (2, [seq(4), seq(5)])
    assert check["TotalOrderMoney"] == sum(o["TotalMoney"] for o in check["ChargeOrders"])
    assert check["CheckOrderSeq"] == f"APLATFORM{day:%Y%m%d}0000000000"
    disputes = roaming.a.store.outbox.disputes([roaming.b_on_a.peer_id])
    assert [(d["source"], d["start_charge_seq"], d["reason"], d["total_money"]) for d in disputes] == [
        (f"check:{day.isoformat()}", seq(5), 2, "1.11")]
    assert step(outbox, datetime.combine(day + timedelta(days=1), time(3, 0), SHANGHAI))["scheduled"] == 0
