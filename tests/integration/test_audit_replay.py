"""`audit replay`: the books rebuilt from the stored events alone, every check, both decoding paths."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest

from adapters.audit.replay import replay
from adapters.audit.store import event_tables, read_events
from adapters.cli.demo import run_demo
from adapters.cli.relay import running_relay
from adapters.postgres.env import eventsourcing_env
from domain.audit import Audit, reference_mappers, session_view, wallet_view
from domain.applications import APPLICATIONS
from domain.ledger import Ledger
from projections.orders import Orders
from projections.revenue import Revenue
from projections.runner import Projections
from tests.factories import build_world, record

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=timezone.utc)


def sql(url: str, query: str, params: Any = None) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def project(ledger: Ledger, url: str) -> None:
    with Projections(ledger.applications, eventsourcing_env(url), views=(Orders, Revenue)) as views:
        views.catch_up()


@pytest.fixture
def demo(ledger: Ledger, database_url: str, nats_url: str) -> Iterator[str]:
    """The scripted demo day, with the order and revenue views caught up."""
    with running_relay(ledger, database_url, nats_url) as relay:
        assert run_demo(ledger, relay, out=lambda *_: None)
    project(ledger, database_url)
    yield database_url


def test_the_demo_replays_with_no_differences_and_its_totals_equal_the_revenue_view(demo: str) -> None:
    report = replay(demo)
    assert report.ok, report.as_text()
    assert report.trial_balance == 0
    assert report.counts["total_events"] == 98
    assert report.counts["sessions_by_state"] == {"finished": 4, "failed": 1}
    assert {k: v["status"] for k, v in report.checks.items()} == {
        "posting_sets_balance": "ok", "trial_balance": "ok", "wallets_equal_live": "ok", "sessions_reprice": "ok",
        "sessions_match_wallets": "ok", "roaming_match_wallets": "ok", "sessions_match_orders": "ok",
        "totals_match_revenue": "ok",
        "holds_closed": "ok", "topups_match_payments": "unavailable", "refunds_closed": "ok"}
    revenue = sql(demo, "SELECT sum(electricity_fen), sum(service_fen), sum(energy) FROM revenue_daily")[0]
    totals = report.totals
    assert (totals["billed_electricity_fen"], totals["billed_service_fen"], totals["billed_energy"]) == revenue
    assert (totals["revenue_electricity_fen"], totals["revenue_service_fen"]) == revenue[:2]
    assert report.accounts["clearing:cash"] == 20400 + 3000  # 330 yuan in, 96 refunded
    assert json.loads(json.dumps(report.as_dict()))["ok"] is True


def test_an_order_row_altered_by_hand_is_exactly_the_difference_reported(demo: str) -> None:
    trade_no, total = sql(demo, "SELECT trade_no, total_fen FROM orders WHERE state = 'finished' "
                                "ORDER BY seq LIMIT 1")[0]
    sql(demo, "UPDATE orders SET total_fen = total_fen + 100 WHERE trade_no = %s", [trade_no])
    report = replay(demo)
    assert [(d.check, d.details) for d in report.differences] == [
        ("sessions_match_orders", {"fields": {"total_fen": [total + 100, total]}})]
    (difference,) = report.differences
    assert trade_no in difference.message
    assert [e.event for e in difference.events] == ["ChargingSession.Settled"]


def test_the_fast_path_equals_the_reference_path(demo: str, ledger: Ledger) -> None:
    """The direct JSON decoding and mirrors give what the mappers and real aggregates give."""
    # add what the demo lacks: a tariff revision, a pending refund, a failed refund, an adjustment
    world = build_world(ledger, pile_no="32010600019299", driver="driver-x")
    ledger.revise_tariff(world.tariff_id, {"sharp": {"electricity": 1, "service": 2},
                                           "peak": {"electricity": 3, "service": 4},
                                           "flat": {"electricity": 5, "service": 6},
                                           "valley": {"electricity": 7, "service": 8}}, [2] * 48, "ops")
    ledger.request_refund(world.wallet_id, key="r1", refund_id="r1", amount=100, provider="wechat")
    ledger.request_refund(world.wallet_id, key="r2", refund_id="r2", amount=100, provider="wechat")
    ledger.fail_refund(world.wallet_id, key="r2f", refund_id="r2", reason="closed account")
    ledger.adjust(world.wallet_id, key="a1", amount=-50, reason="goodwill reversal", author="ops")
    audits = {}
    for fast in (True, False):
        audit = Audit(fast=fast, mappers=None if fast else reference_mappers(APPLICATIONS))
        with psycopg.connect(demo) as conn:
            for table in event_tables(conn):
                audit.replay(table.application, read_events(conn, table.table))
        audits[fast] = audit
    fast, slow = audits[True], audits[False]
    assert type(next(iter(slow.wallets.values()))).__name__ == "Wallet"  # the real aggregates
    assert {k: wallet_view(w) for k, w in fast.wallets.items()} == {k: wallet_view(w) for k, w in slow.wallets.items()}
    assert {k: session_view(s) for k, s in fast.sessions.items()} == \
        {k: session_view(s) for k, s in slow.sessions.items()}
    assert fast.report().as_dict() == slow.report().as_dict()
    assert fast.report().counts["by_type"]["Tariff.Revised"] == 1


def edit_state(url: str, table: str, nid: int, old: str, new: str) -> None:
    sql(url, f"UPDATE {table} SET state = convert_to(replace(convert_from(state, 'UTF8'), %s, %s), 'UTF8') "
             "WHERE notification_id = %s", [old, new, nid])


def test_a_bill_that_does_not_reprice_is_reported_at_its_event(demo: str) -> None:
    (nid, state), *_ = sql(demo, "SELECT notification_id, convert_from(state, 'UTF8') FROM sessions_events "
                                 "WHERE topic LIKE '%%.Settled' ORDER BY notification_id")
    bill = json.loads(state)["bill"]
    edit_state(demo, "sessions_events", nid, f'"service_fen":{bill["service_fen"]}',
               f'"service_fen":{bill["service_fen"] + 7}')
    report = replay(demo, orders=None)
    reprice = [d for d in report.differences if d.check == "sessions_reprice"]
    assert len(reprice) == 1 and reprice[0].events[0].notification_id == nid
    assert reprice[0].details["repriced"]["service_fen"] == bill["service_fen"]


def test_an_unbalanced_posting_set_breaks_the_trial_balance(demo: str) -> None:
    (nid,) = sql(demo, "SELECT notification_id FROM wallets_events WHERE topic LIKE '%%.ToppedUp' "
                       "ORDER BY notification_id LIMIT 1")[0]
    edit_state(demo, "wallets_events", nid, '["clearing:cash",20000]', '["clearing:cash",20500]')
    report = replay(demo, orders=None)
    checks = {d.check for d in report.differences}
    assert {"posting_sets_balance", "trial_balance"} <= checks
    (unbalanced,) = [d for d in report.differences if d.check == "posting_sets_balance"]
    assert unbalanced.events[0].notification_id == nid and "off by 500" in unbalanced.message


def test_a_snapshot_that_disagrees_with_the_events_is_a_wallet_difference(ledger: Ledger, database_url: str) -> None:
    world = build_world(ledger)
    ledger.wallets.take_snapshot(world.wallet_id)
    sql(database_url, "UPDATE wallets_snapshots SET state = convert_to(replace(convert_from(state, 'UTF8'), "
                      "'-10000', '-99999'), 'UTF8')")
    report = replay(database_url)
    assert [d.check for d in report.differences] == ["wallets_equal_live"]
    assert "its snapshot at version 2" in report.differences[0].message
    assert report.checks["wallets_equal_live"]["checked"] == 1
    # loading the wallet through the Application (from that snapshot) shows the same difference
    loaded = replay(database_url, live="load")
    assert [d.check for d in loaded.differences] == ["wallets_equal_live"]
    assert "but the Wallets Application has" in loaded.differences[0].message


def test_snapshots_taken_by_the_application_agree_with_the_replay(ledger: Ledger, database_url: str) -> None:
    world = build_world(ledger)
    for i in range(120):  # the Wallets Application snapshots every 100 events
        ledger.top_up(world.wallet_id, key=f"c{i}", amount=1, provider="cash", payment_ref="c")
    report = replay(database_url)
    assert report.ok, report.as_text()
    assert report.checks["wallets_equal_live"]["checked"] == 1


def test_a_hold_left_open_by_a_closed_session_is_reported(ledger: Ledger, database_url: str) -> None:
    world = build_world(ledger)
    trade_no = ledger.request_start(pile_no=world.pile_no, gun_no=1, wallet_id=world.wallet_id, hold_fen=30_00,
                                    at=T0, author="driver-1")
    # fail the session without running the wallet policy, as a crash between the two commits would
    ledger.sessions.update(ledger.session(trade_no).id, type(ledger.session(trade_no)), "session",
                           lambda s: s.fail(at=T0, reason="test", author="ops"))
    report = replay(database_url)
    assert [d.check for d in report.differences] == ["holds_closed"]
    assert trade_no in report.differences[0].message and "failed" in report.differences[0].message
    # an open session's hold is fine
    ledger.release(world.wallet_id, key=f"release:{trade_no}", hold_id=trade_no)
    second = ledger.request_start(pile_no=world.pile_no, gun_no=2, wallet_id=world.wallet_id, hold_fen=10_00,
                                  at=T0, author="driver-1")
    assert replay(database_url).ok, second


def test_a_session_billed_differently_from_what_its_wallet_paid_is_reported(ledger: Ledger,
                                                                             database_url: str) -> None:
    world = build_world(ledger)
    trade_no = ledger.request_start(pile_no=world.pile_no, gun_no=1, wallet_id=world.wallet_id, hold_fen=30_00,
                                    at=T0, author="driver-1")
    ledger.mark_charging(trade_no, at=T0)
    session_id = ledger.session(trade_no).id
    ledger.sessions.update(session_id, type(ledger.session(trade_no)), "session",
                           lambda s: s.settle(record((0, 20000, 0, 0), T0), T0 + timedelta(minutes=31)))
    ledger.capture(world.wallet_id, key=f"capture:{trade_no}", hold_id=trade_no,
                   electricity=150, service=100)  # the bill is 200 + 100
    report = replay(database_url)
    assert [d.check for d in report.differences] == ["sessions_match_wallets"]
    assert "electricity 200 + service 100 fen; its wallet took 150 + 100" in report.differences[0].message


def test_a_pending_refund_is_reported_once_past_its_grace(ledger: Ledger, database_url: str) -> None:
    world = build_world(ledger)
    ledger.request_refund(world.wallet_id, key="r1", refund_id="r1", amount=100, provider="wechat")
    assert replay(database_url).ok  # in flight
    audit = Audit(refund_grace=timedelta(0))
    with psycopg.connect(database_url) as conn:
        for table in event_tables(conn):
            audit.replay(table.application, read_events(conn, table.table))
    report = audit.report()
    assert [d.check for d in report.differences] == ["refunds_closed"]
    assert report.differences[0].events[0].event == "Wallet.RefundRequested"


def payment_rows(tenant: UUID, wallet: UUID, provider: str, out_trade_no: str, amount: int,
                 paid: int | None, nid: int) -> list[tuple]:
    """Stored events of a PaymentOrder as the Payments Application writes them (the agreed contract)."""
    oid = uuid4()
    stamp = {"_type_": "datetime_iso", "_data_": "2026-11-22T01:00:00+00:00"}

    def uid(u: UUID) -> dict[str, str]:
        return {"_type_": "uuid_hex", "_data_": u.hex}

    rows = [(oid, 1, "domain.payment:PaymentOrder.Created", json.dumps({
        "timestamp": stamp, "originator_topic": "domain.payment:PaymentOrder", "tenant_id": uid(tenant),
        "wallet_id": uid(wallet), "driver_id": "d", "provider": provider, "channel": "mp", "amount_fen": amount,
        "out_trade_no": out_trade_no, "at": stamp}).encode(), nid)]
    if paid is not None:
        rows.append((oid, 2, "domain.payment:PaymentOrder.Paid", json.dumps({
            "timestamp": stamp, "transaction_id": f"42000{nid}", "amount_fen": paid, "notified_at": stamp,
            "notification_digest": "x"}).encode(), nid + 1))
    return rows


def test_every_gateway_top_up_needs_a_paid_payment_of_the_same_amount(ledger: Ledger, database_url: str) -> None:
    world = build_world(ledger, top_up=0)
    top = lambda key, amount, provider, ref: ledger.top_up(  # noqa: E731
                                                           world.wallet_id, key=key, amount=amount, provider=provider, payment_ref=ref)
    top("topup:A1", 100_00, "wechat", "A1")  # matches its payment
    top("topup:A2", 50_00, "alipay", "A2")  # paid 40 yuan, credited 50
    top("topup:A3", 20_00, "wechat", "A3")  # no payment at all
    top("cash:1", 5_00, "cash", "till-1")  # not through a gateway: no notification needed
    payments = (payment_rows(world.tenant_id, world.wallet_id, "wechat", "A1", 100_00, 100_00, 1)
                + payment_rows(world.tenant_id, world.wallet_id, "alipay", "A2", 40_00, 40_00, 3)
                + payment_rows(world.tenant_id, world.wallet_id, "wechat", "A4", 10_00, 10_00, 5)  # never credited
                + payment_rows(world.tenant_id, world.wallet_id, "wechat", "A5", 10_00, None, 7))  # never paid
    audit = Audit()
    with psycopg.connect(database_url) as conn:
        for table in event_tables(conn):
            audit.replay(table.application, read_events(conn, table.table))
    audit.replay("Payments", payments)
    report = audit.report()
    found = sorted(d.message for d in report.differences)
    assert [d.check for d in report.differences] == ["topups_match_payments"] * 3
    assert any("A2" in m and "amount_fen 5000 vs 4000" in m for m in found)
    assert any("payment A4 was paid" in m for m in found)
    assert any("topup:A3" in m and "no verified payment notification" in m for m in found)
    assert report.checks["topups_match_payments"] == {"status": "differences", "checked": 4, "differences": 3}


def test_tenant_and_period_filters(ledger: Ledger, database_url: str) -> None:
    first = build_world(ledger)
    second = build_world(ledger, pile_no="32010600019300", driver="driver-2", top_up=7_00)
    report = replay(database_url, tenant=second.tenant_id)
    assert report.ok, report.as_text()
    assert report.counts["wallets"] == 1 and report.accounts == {"available": -700, "clearing:wechat": 700}
    assert report.counts["events"]["Registry"] == 4  # its tenant, station, pile and the pile's tariff
    cut = datetime.now(timezone.utc)
    ledger.top_up(first.wallet_id, key="later", amount=1, provider="cash", payment_ref="c")
    before = replay(database_url, period_to=cut, live="load")
    assert before.ok, before.as_text()  # compared with the live wallet at the version replayed
    assert before.checks["wallets_equal_live"]["checked"] == 2
    assert before.accounts["available"] == -10700
    during = replay(database_url, period_from=cut)
    assert during.period["movements"] == {"available": [0, 1], "clearing:cash": [1, 0]}


def test_progress_is_reported_on_a_long_replay(demo: str) -> None:
    seen: list[int] = []
    audit = Audit(progress=seen.append, progress_every=20)
    with psycopg.connect(demo) as conn:
        for table in event_tables(conn):
            audit.replay(table.application, read_events(conn, table.table))
    assert seen and seen[-1] <= 98 and seen == sorted(seen)
