"""Our driver's charge on a peer's pile (domain/roaming.py): the aggregate's states, the wallet's payable
commands, the money of each use case, and the auditor's view of it. In memory: no server.

The charge's use cases on the in-memory Ledger (start, settle, fail, resent notifications) are the
integration module's, run again here by ``tests/unit/test_ledger_in_memory.py``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import get_topic

from domain import changes
from domain.audit import Audit
from domain.errors import CaptureExceedsHold, IdempotencyConflict, InvalidAmount, InvalidText, InvalidTransition
from domain.ledger import Ledger
from domain.roaming import RoamingCharge, order_strings, wallet_commands
from domain.session import ChargingSession
from domain.wallet import Wallet, payable
from tests.factories import build_world
from tests.unit.roaming_audit import audit_report

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
TENANT = uuid.UUID(int=1)
SEQ = "BPLATFORM000000000000000001"
END = dict(start_time=T0, end_time=T0 + timedelta(hours=1), stop_reason=0)


def charge(hold_fen: int = 30_00) -> RoamingCharge:
    return RoamingCharge.request(tenant_id=TENANT, peer="APLATFORM", start_charge_seq=SEQ, connector_id="320106000192",
                                 station_id="S1", wallet_id=uuid.UUID(int=3), driver_id="d", hold_fen=hold_fen, at=T0,
                                 author="driver:d")


def test_every_roaming_event_has_its_change_and_the_audit_replays_it() -> None:
    events = {n for n, v in vars(RoamingCharge).items() if isinstance(v, type) and issubclass(v, Aggregate.Event)}
    assert set(changes.ROAMING) == events - {"Event", "Created"}
    assert {f"RoamingCharge.{n}" for n in changes.ROAMING} <= set(Audit._handlers)
    assert {"Wallet.CapturedToPayable", "Wallet.ChargedToPayable"} <= set(Audit._handlers)


def test_the_id_is_the_tenant_peer_and_seq_and_bad_input_makes_nothing() -> None:
    c = charge()
    assert c.id == RoamingCharge.create_id(TENANT, "APLATFORM", SEQ)
    assert c.id != RoamingCharge.create_id(TENANT, "OTHERPEER", SEQ)
    assert (c.state, c.hold_id, c.bill, c.disputes, c.start_time) == ("requested", f"roam:{SEQ}", None, [], None)
    for bad in ({"peer": "APLAT"}, {"peer": "APLATFORM:x"}, {"start_charge_seq": "1" * 26},
                {"start_charge_seq": "B" * 26 + "-"}, {"at": datetime(2026, 1, 1)}, {"connector_id": ""}):
        with pytest.raises((InvalidTransition, InvalidText)):
            RoamingCharge.request(**{**dict(tenant_id=TENANT, peer="APLATFORM", start_charge_seq=SEQ, connector_id="c",
                                            station_id="", wallet_id=uuid.UUID(int=3), driver_id="d", hold_fen=1,
                                            at=T0, author="a"), **bad})
    for hold in (0, -1, True, 1.5):
        with pytest.raises(InvalidAmount):
            charge(hold)


def test_the_states_and_what_a_resent_notification_changes() -> None:
    c = charge()
    c.accept(T0)
    c.accept(T0)  # resent: nothing
    c.mark_charging(T0, start_time=T0)
    c.mark_charging(T0, start_time=T0 + timedelta(seconds=9))  # resent start result: nothing
    c.accept(T0)  # a late answer to the start: nothing
    c.request_stop(T0, "driver:d")
    c.request_stop(T0, "driver:d")
    with pytest.raises(InvalidTransition):
        c.fail(T0, "too late: it charged")
    assert c.settle(T0, 100_000, 30_00, 5_00, **END) is True
    assert c.settle(T0, 100_000, 30_00, 5_00, **END) is False  # the same order again
    names = [type(e).__name__ for e in c.collect_events()]
    assert names == ["Requested", "Accepted", "Charging", "StopRequested", "Settled"]
    assert c.state == "settled" and c.start_time == T0
    assert c.bill == {"energy": 100_000, "electricity_fen": 30_00, "service_fen": 5_00, "total_fen": 35_00, **END}
    c.request_stop(T0, "driver:d")  # a stop on a settled charge: nothing to stop
    assert c.collect_events() == []


def test_a_differing_order_after_settled_is_disputed_once_and_changes_nothing_else() -> None:
    c = charge()
    c.settle(T0, 100_000, 30_00, 5_00, **END)  # the order may come without a start result
    bill = c.bill
    c.settle(T0, 100_000, 30_00, 6_00, **END)
    c.settle(T0, 100_000, 30_00, 6_00, **END)  # the same differing order resent: recorded once
    c.settle(T0, 100_001, 30_00, 5_00, **END)
    c.dispute(T0, 4, {"TotalMoney": "1.00", "TotalElecMoney": "0.50", "TotalSeviceMoney": "0.60", "TotalPower": "1"})
    assert [d["reason"] for d in c.disputes] == [2, 3, 4]
    assert c.disputes[0]["order"] == order_strings(100_000, 30_00, 6_00) == {
        "TotalPower": "10.0000", "TotalElecMoney": "30.00", "TotalSeviceMoney": "6.00", "TotalMoney": "36.00"}
    assert (c.state, c.bill) == ("settled", bill)
    with pytest.raises(InvalidTransition):
        c.dispute(T0, 1, {})
    with pytest.raises(InvalidAmount):
        c.settle(T0, -1, 0, 0, **END)


def test_fail_only_before_charging_and_a_late_order_for_a_failed_charge_is_billed_beyond_the_hold() -> None:
    c = charge()
    c.request_stop(T0, "driver:d")  # stopped before the peer confirmed anything
    c.fail(T0, "start never confirmed")
    c.fail(T0, "resent")
    for late in (lambda: c.accept(T0), lambda: c.mark_charging(T0, T0)):
        with pytest.raises(InvalidTransition):
            late()
    events = c.collect_events()
    assert [type(e).__name__ for e in events] == ["Requested", "StopRequested", "Failed"]
    assert wallet_commands(c, "Failed", events[-1]) == [("release", {"key": f"release:roam:{SEQ}",
                                                                     "hold_id": f"roam:{SEQ}"})]
    c.settle(T0, 10_000, 5_00, 1_00, **END)  # it charged after all: the peer bills us
    (settled,) = c.collect_events()
    assert (settled.from_hold, settled.captured_fen, settled.charged_fen) == (False, 0, 6_00)
    assert wallet_commands(c, "Settled", settled) == [
        ("charge_to_payable", {"key": f"charge:roam:{SEQ}", "amount": 6_00, "peer": "APLATFORM",
                               "reference": f"roam:{SEQ}"})]


@pytest.mark.parametrize(("bill", "captured", "charged"), [(35_00, 30_00, 5_00), (12_00, 12_00, 0), (0, 0, 0)])
def test_a_bill_is_paid_from_the_hold_up_to_its_amount_and_the_rest_beyond_it(bill: int, captured: int,
                                                                               charged: int) -> None:
    c = charge(30_00)
    c.settle(T0, 1, bill - bill // 3, bill // 3, **END)
    settled = c.collect_events()[-1]
    assert (settled.captured_fen, settled.charged_fen, settled.from_hold) == (captured, charged, True)
    names = [name for name, _ in wallet_commands(c, "Settled", settled)]
    assert names == ["capture_to_payable"] + (["charge_to_payable"] if charged else [])


@pytest.mark.parametrize(("hold", "bill", "taken"), [(30_00, 35_00, True), (30_00, 35_01, False),
                                                    (100_00, 110_00, True), (100_00, 110_01, False),
                                                    (2_00, 7_00, True), (2_00, 9_999_99, False)])
def test_a_first_bill_far_above_the_hold_is_disputed_and_the_hold_kept(hold: int, bill: int, taken: bool) -> None:
    """A peer's pile stopped at the hold runs on a little (5 yuan, or a tenth of a larger hold): billed beyond
    the hold. Further above, the peer did not stop or bills what was not charged: disputed (money), nothing
    settled, the charge open with its hold for a corrected order, which then settles it. A charge we had
    failed is bounded the same way."""
    for failed in (False, True):
        c = charge(hold)
        c.accept(T0)
        if failed:
            c = charge(hold)
            c.fail(T0, "start never confirmed")
        c.collect_events()
        state = c.state
        assert c.settle(T0, 10_000, bill, 0, **END) is taken
        events = c.collect_events()
        if taken:
            assert [type(e).__name__ for e in events] == ["Settled"]
            continue
        assert [type(e).__name__ for e in events] == ["OrderDisputed"]
        assert (c.state, c.bill, c.disputes[0]["reason"]) == (state, None, 2)
        assert wallet_commands(c, "OrderDisputed", events[0]) == []  # the hold stays
        assert c.settle(T0, 10_000, bill, 0, **END) is False and not c.collect_events()  # the same again: once
        assert c.settle(T0, 10_000, hold, 0, **END) is True  # corrected: settled
        assert c.bill["total_fen"] == hold


def test_the_payable_commands_post_to_the_peer_and_give_the_rest_back_arrears_first() -> None:
    w = Wallet(tenant_id=TENANT, driver_id="d", author="t")
    w.top_up("t", 50_00, "wechat", "p")
    w.hold("h", "roam:x", 40_00)
    w.charge("c", 12_00, 0, "offline")  # an offline bill elsewhere: 10 covered, 2 owed
    assert (w.available, w.arrears) == (0, 2_00)
    w.capture_to_payable("cap", hold_id="roam:x", amount=30_00, peer="APLATFORM")
    assert (w.held, w.arrears, w.available, w.balances[payable("APLATFORM")]) == (0, 0, 8_00, -30_00)
    w.charge_to_payable("chg", amount=11_00, peer="APLATFORM", reference="roam:x")  # 8 covered, 3 owed
    assert (w.available, w.arrears, w.balances[payable("APLATFORM")]) == (0, 3_00, -41_00)
    w.charge_to_payable("chg", amount=11_00, peer="APLATFORM", reference="roam:x")  # the same key: nothing
    assert w.balances[payable("APLATFORM")] == -41_00
    assert (w.balances["revenue:electricity"], w.balances.get("revenue:service", 0)) == (-12_00, 0)  # the offline bill
    with pytest.raises(IdempotencyConflict):
        w.charge_to_payable("chg", amount=12_00, peer="APLATFORM", reference="roam:x")
    for bad in (lambda: w.charge_to_payable("b1", amount=1, peer="revenue:x", reference=""),
                lambda: w.charge_to_payable("b2", amount=0, peer="APLATFORM", reference=""),
                lambda: w.capture_to_payable("b3", hold_id="roam:x", amount=1, peer="APLATFORM")):
        with pytest.raises(Exception) as refused:
            bad()
        assert refused.type.__name__ in ("InvalidAmount", "UnknownHold")
    w.top_up("t2", 10_00, "wechat", "p2")
    w.hold("h3", "roam:z", 5_00)
    with pytest.raises(CaptureExceedsHold):
        w.capture_to_payable("b4", hold_id="roam:z", amount=5_01, peer="APLATFORM")


def test_a_roaming_charge_is_not_revenue_and_what_the_auditor_reports_of_it() -> None:
    report, _ = audit_report(settle=(30_00, 5_00))
    assert report.ok, report.as_text()
    assert report.accounts["payable:APLATFORM"] == -35_00
    assert "revenue:electricity" not in report.accounts
    assert report.checks["roaming_match_wallets"] == {"status": "ok", "checked": 1, "differences": 0}
    assert report.checks["sessions_match_wallets"]["status"] == "ok"
    assert report.counts["roaming_by_state"] == {"settled": 1} and report.counts["roaming_billed_fen"] == 35_00


def test_the_auditor_finds_a_roaming_hold_left_open_and_a_payable_without_its_charge() -> None:
    report, _ = audit_report(fail_without_wallet=True)
    assert [d.check for d in report.differences] == ["holds_closed"]
    assert "roaming charge is failed" in report.differences[0].message
    report, _ = audit_report(stray_payable=True)
    assert [d.check for d in report.differences] == ["roaming_match_wallets"]
    assert "which no roaming charge of that wallet has" in report.differences[0].message
    report, _ = audit_report(settle=(30_00, 5_00), settle_without_wallet=True)
    assert {d.check for d in report.differences} == {"roaming_match_wallets", "holds_closed"}


def test_in_memory_a_start_whose_charge_is_refused_writes_no_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hold and the charge are one write on the in-memory stores too: a charge refused (here once,
    as a conflict would) leaves no hold behind, and the start run again writes both once."""
    ledger, refused = Ledger({"PERSISTENCE_MODULE": "eventsourcing.popo"}), []
    world = build_world(ledger)
    check = type(ledger.sessions.recorder)._assert_uniqueness

    def refuse_once(recorder: Any, stored: Any) -> None:
        if recorder is ledger.sessions.recorder and not refused:
            refused.append(True)
            raise IntegrityError("the charge's id was taken meanwhile")
        check(recorder, stored)

    monkeypatch.setattr(type(ledger.sessions.recorder), "_assert_uniqueness", refuse_once)
    charge = ledger.start_roaming(tenant_id=world.tenant_id, wallet_id=world.wallet_id, peer="APLATFORM",
                                  connector_id="c1", station_id="", start_charge_seq=SEQ, hold_fen=30_00, at=T0,
                                  author="driver:driver-1")
    assert refused and charge.version == 1
    names = [type(e).__name__ for e in ledger.wallets.events.get(world.wallet_id)]
    assert names == ["Opened", "ToppedUp", "HoldPlaced"]


def test_the_sessions_log_followers_that_filter_by_topic_never_read_roaming_events() -> None:
    from adapters.followers.open_sessions import CHANGES, session_topics
    from adapters.followers.watchdog import CLOSING
    from adapters.interconnect.outbox.sessions import TOPICS
    from pile_link.commands import COMMAND_SUBJECTS

    roaming = get_topic(RoamingCharge)
    for topics in (session_topics(list(CHANGES)), session_topics(CLOSING), TOPICS):
        assert topics and all(t.startswith(f"{get_topic(ChargingSession)}.") for t in topics)
        assert not any(t.startswith(roaming) for t in topics)
    assert not any("RoamingCharge" in subject for subject in COMMAND_SUBJECTS)


def test_the_fault_simulators_followers_that_decode_every_event_pass_over_roaming_events() -> None:
    from simulation.invariants import Auditor
    from simulation.platform import catch_up
    from simulation.world import DRIVERS, World

    world = World(seed=1)
    ledger = world.setup
    wallet_id = Wallet.create_id(world.tenant_id, DRIVERS[0])
    ledger.top_up(wallet_id, key="t", amount=100_00, provider="cash", payment_ref="c")
    for n, close in ((1, "fail"), (2, "settle")):
        charge = ledger.start_roaming(tenant_id=world.tenant_id, wallet_id=wallet_id, peer="APLATFORM",
                                      connector_id="c1", station_id="", start_charge_seq=f"{SEQ[:-1]}{n}",
                                      hold_fen=10_00, at=T0, author="driver")
        if close == "fail":
            ledger.roaming_failed(charge.id, at=T0, reason="refused")
        else:
            ledger.settle_roaming(charge.id, at=T0, energy=1, electricity_fen=1_00, service_fen=0, **END)
    catch_up(world, world.ledger("watchdog"))
    assert (world.store.open_sessions, world.store.followups, world.store.orphan_checks) == ({}, {}, {})
    auditor = Auditor(world)
    auditor.follow()
    assert auditor.sessions == {} and auditor.books.balanced
