"""Charging sessions through the service layer on real Postgres."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from domain.errors import InvalidTransition, PileUnavailable
from domain.ledger import Ledger
from domain.pricing import price
from domain.session import START_TIMEOUT, ChargingSession
from tests.factories import build_world, record

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=timezone.utc)  # 10:00 in Shanghai: peak


def start(ledger: Ledger, world, hold: int = 50_00, at: datetime = T0) -> str:
    trade_no = ledger.request_start(pile_no=world.pile_no, gun_no=1, wallet_id=world.wallet_id, hold_fen=hold,
                                    at=at, author="driver-1")
    ledger.acknowledge_start(trade_no, at=at + timedelta(seconds=2), ok=True)
    ledger.mark_charging(trade_no, at=at + timedelta(seconds=10))
    return trade_no


def test_full_session_prices_with_the_platform_tariff_and_captures(ledger: Ledger) -> None:
    world = build_world(ledger)
    trade_no = start(ledger, world)
    assert trade_no.startswith(world.pile_no + "01" + "261122100000")
    for minute in range(1, 21):
        ledger.record_reading(trade_no, at=T0 + timedelta(minutes=minute), energy=minute * 1500)
    ledger.request_stop(trade_no, at=T0 + timedelta(minutes=21), reason="driver", author="driver-1")
    session = ledger.settle(trade_no, record((0, 30000, 0, 0), T0, pile_total_amount=45001), T0 + timedelta(minutes=22))

    assert session.state == "finished"
    assert session.bill == price((0, 30000, 0, 0), session.schedule).as_dict()
    assert (session.bill["electricity_fen"], session.bill["service_fen"]) == (300, 150)  # 3 kWh at 1.00 + 0.50
    assert session.pile_difference == 1  # the pile said 4.5001 yuan: kept, not hidden
    assert session.tier_energy == [0, 30000, 0, 0]
    wallet = ledger.wallet(world.wallet_id)
    assert (wallet.available, wallet.held) == (100_00 - 450, 0)
    assert wallet.balances["revenue:electricity"] == -300 and wallet.balances["revenue:service"] == -150


def test_the_same_record_three_times_changes_nothing(ledger: Ledger) -> None:
    world = build_world(ledger)
    trade_no = start(ledger, world)
    rec = record((0, 20000, 0, 0), T0)
    ledger.settle(trade_no, rec, T0 + timedelta(minutes=30))
    version = ledger.session(trade_no).version
    wallet_version = ledger.wallet(world.wallet_id).version
    for _ in range(2):
        ledger.settle(trade_no, rec, T0 + timedelta(minutes=31))
    assert ledger.session(trade_no).version == version
    assert ledger.wallet(world.wallet_id).version == wallet_version


def test_a_different_record_for_a_settled_session_is_refused(ledger: Ledger) -> None:
    world = build_world(ledger)
    trade_no = start(ledger, world)
    ledger.settle(trade_no, record((0, 20000, 0, 0), T0), T0 + timedelta(minutes=30))
    with pytest.raises(InvalidTransition):
        ledger.settle(trade_no, record((0, 20001, 0, 0), T0), T0 + timedelta(minutes=31))


def test_offline_start_record_creates_and_settles_the_session(ledger: Ledger) -> None:
    world = build_world(ledger)
    trade_no = world.pile_no + "02" + "261122093000" + "0001"
    session = ledger.settle(trade_no, record((0, 0, 10000, 5000), T0), T0 + timedelta(hours=1),
                            wallet_id=world.wallet_id)
    assert (session.state, session.origin, session.gun_no) == ("finished", "offline", 2)
    assert session.bill["total_fen"] == 110 + 25  # 1 kWh flat at 1.10, 0.5 kWh valley at 0.50
    assert ledger.wallet(world.wallet_id).available == 100_00 - 135


def test_bill_above_the_hold_captures_the_hold_and_charges_the_rest(ledger: Ledger) -> None:
    world = build_world(ledger, top_up=10_00)
    trade_no = start(ledger, world, hold=5_00)
    ledger.settle(trade_no, record((0, 40000, 0, 0), T0), T0 + timedelta(minutes=40))  # 6.00 yuan
    wallet = ledger.wallet(world.wallet_id)
    assert (wallet.available, wallet.held, wallet.arrears) == (4_00, 0, 0)


def test_bill_above_everything_leaves_arrears_repaid_by_the_next_top_up(ledger: Ledger) -> None:
    world = build_world(ledger, top_up=3_00)
    trade_no = start(ledger, world, hold=3_00)
    ledger.settle(trade_no, record((0, 40000, 0, 0), T0), T0 + timedelta(minutes=40))
    wallet = ledger.wallet(world.wallet_id)
    assert (wallet.available, wallet.arrears) == (0, 3_00)
    ledger.top_up(world.wallet_id, key="t2", amount=10_00, provider="alipay", payment_ref="a2")
    wallet = ledger.wallet(world.wallet_id)
    assert (wallet.available, wallet.arrears) == (7_00, 0)


def test_start_deadline_fails_the_session_and_releases_the_hold(ledger: Ledger) -> None:
    world = build_world(ledger)
    trade_no = ledger.request_start(pile_no=world.pile_no, gun_no=1, wallet_id=world.wallet_id, hold_fen=30_00,
                                    at=T0, author="driver-1")
    assert ledger.session(trade_no).deadline == T0 + START_TIMEOUT
    ledger.expire_session(trade_no, now=T0 + timedelta(seconds=89))
    assert ledger.session(trade_no).state == "requested"
    ledger.expire_session(trade_no, now=T0 + timedelta(seconds=90))
    session = ledger.session(trade_no)
    assert (session.state, session.reason) == ("failed", "start deadline passed: no charging report within 90 s")
    assert ledger.wallet(world.wallet_id).available == 100_00


def test_late_record_after_a_failed_start_is_priced_not_dropped(ledger: Ledger) -> None:
    world = build_world(ledger)
    trade_no = ledger.request_start(pile_no=world.pile_no, gun_no=1, wallet_id=world.wallet_id, hold_fen=30_00,
                                    at=T0, author="driver-1")
    ledger.expire_session(trade_no, now=T0 + timedelta(minutes=2))
    session = ledger.settle(trade_no, record((0, 10000, 0, 0), T0), T0 + timedelta(minutes=20))
    assert (session.state, session.bill["total_fen"]) == ("finished", 150)
    assert ledger.wallet(world.wallet_id).available == 100_00 - 150


def test_force_close_prices_measured_energy_and_a_late_record_reprices(ledger: Ledger) -> None:
    world = build_world(ledger)
    trade_no = start(ledger, world)
    for minute, energy in ((5, 5000), (10, 10000)):
        ledger.record_reading(trade_no, at=T0 + timedelta(minutes=minute), energy=energy)
    ledger.force_close(trade_no, at=T0 + timedelta(hours=3), reason="pile unreachable",
                       author="ops@operator")
    session = ledger.session(trade_no)
    assert (session.state, session.bill["total_fen"]) == ("abandoned", 150)
    assert ledger.wallet(world.wallet_id).available == 100_00 - 150
    # the pile comes back and uploads what it really measured: 1.2 kWh
    session = ledger.settle(trade_no, record((0, 12000, 0, 0), T0), T0 + timedelta(hours=4))
    assert (session.state, session.bill["total_fen"]) == ("finished", 180)
    assert ledger.wallet(world.wallet_id).available == 100_00 - 180


def test_record_overdue_abandons_with_measured_energy(ledger: Ledger) -> None:
    world = build_world(ledger)
    trade_no = start(ledger, world)
    ledger.record_reading(trade_no, at=T0 + timedelta(minutes=5), energy=20000)
    ledger.request_stop(trade_no, at=T0 + timedelta(minutes=6), reason="driver", author="d")
    ledger.expire_session(trade_no, now=T0 + timedelta(minutes=17))
    session = ledger.session(trade_no)
    assert (session.state, session.reason, session.bill["total_fen"]) == ("abandoned", "transaction record overdue",
                                                                          300)


def test_meter_going_backwards_is_flagged_and_adds_nothing(ledger: Ledger) -> None:
    world = build_world(ledger)
    trade_no = start(ledger, world)
    for minute, energy in ((1, 1000), (2, 400), (3, 1500)):
        ledger.record_reading(trade_no, at=T0 + timedelta(minutes=minute), energy=energy)
    session = ledger.session(trade_no)
    assert (session.meter_energy, session.anomalies, session.readings) == (1500, 1, 3)


def test_disabled_pile_and_unknown_gun_are_refused_without_a_hold(ledger: Ledger) -> None:
    world = build_world(ledger)
    with pytest.raises(PileUnavailable):
        ledger.request_start(pile_no=world.pile_no, gun_no=3, wallet_id=world.wallet_id, hold_fen=10_00,
                             at=T0, author="d")
    ledger.set_pile_enabled(world.pile_no, False, "ops", reason="maintenance")
    with pytest.raises(PileUnavailable):
        ledger.request_start(pile_no=world.pile_no, gun_no=1, wallet_id=world.wallet_id, hold_fen=10_00,
                             at=T0, author="d")
    assert ledger.wallet(world.wallet_id).held == 0


def test_session_keeps_the_tariff_version_it_started_with(ledger: Ledger) -> None:
    world = build_world(ledger)
    trade_no = start(ledger, world)
    from tests.factories import PRICES, SLOTS

    dearer = {t: {"electricity": p["electricity"] * 2, "service": p["service"]} for t, p in PRICES.items()}
    assert ledger.revise_tariff(world.tariff_id, dearer, SLOTS, "ops") == 2
    session = ledger.settle(trade_no, record((0, 10000, 0, 0), T0), T0 + timedelta(minutes=30))
    assert session.tariff["version"] == 1 and session.bill["total_fen"] == 150
    assert ledger.tariffs.tariff(world.tariff_id).schedule_at(1) == session.schedule


def test_a_long_session_loads_from_a_snapshot(ledger: Ledger) -> None:
    world = build_world(ledger)
    trade_no = start(ledger, world)
    session = ledger.session(trade_no)
    for minute in range(1, 498):
        session.record_reading(at=T0 + timedelta(seconds=15 * minute), energy=minute * 10)
        ledger.sessions.save(session)
    assert session.version == 500
    session_id = ChargingSession.create_id(trade_no)
    snapshots = list(ledger.sessions.snapshots.get(session_id, desc=True, limit=1))
    assert snapshots and snapshots[0].originator_version == 500
    started = time.perf_counter()
    assert ledger.session(trade_no).version == 500
    # informative only (timing is benchmarked in bench/ledger.py, never asserted here)
    print(f"500-event session loaded in {(time.perf_counter() - started) * 1000:.2f} ms")


def test_readings_of_many_sessions_commit_together_and_bad_items_are_refused_alone(ledger: Ledger) -> None:
    world = build_world(ledger)
    a, b = start(ledger, world), start(ledger, world)
    ledger.settle(b, record((0, 100, 0, 0), T0), T0 + timedelta(minutes=1))  # b is finished: refuses readings
    outcomes = ledger.record_readings([
        {"trade_no": a, "at": T0 + timedelta(minutes=2), "energy": 500, "soc": 40},
        {"trade_no": b, "at": T0 + timedelta(minutes=2), "energy": 500},
        {"trade_no": a, "at": T0 + timedelta(minutes=3), "energy": 900, "soc": 42},
    ])
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], InvalidTransition)
    session = ledger.session(a)
    assert (session.readings, session.meter_energy, session.last_reading["soc"]) == (2, 900, 42)


def test_a_stale_cached_session_is_reloaded_when_another_process_wrote(ledger: Ledger, database_url: str) -> None:
    from adapters.postgres.env import eventsourcing_env

    world = build_world(ledger)
    trade_no = start(ledger, world)
    other = Ledger(eventsourcing_env(database_url))  # another gateway or API process
    try:
        other.record_reading(trade_no, at=T0 + timedelta(minutes=1), energy=300)
        # our cache still has the session without that reading: the batch conflicts and is retried item by item
        assert ledger.record_readings([{"trade_no": trade_no, "at": T0 + timedelta(minutes=2), "energy": 700}]) == [None]
        other.request_stop(trade_no, at=T0 + timedelta(minutes=3), reason="api", author="ops")
        ledger.settle(trade_no, record((0, 700, 0, 0), T0), T0 + timedelta(minutes=4))
    finally:
        other.close()
    session = Ledger.session(ledger, trade_no)
    assert (session.state, session.readings, session.meter_energy, session.reason) == ("finished", 2, 700, "api")


def test_a_start_whose_session_cannot_open_releases_only_its_own_hold(ledger: Ledger, monkeypatch) -> None:
    from domain.errors import ConcurrencyExhausted

    world = build_world(ledger)
    first = start(ledger, world, hold=20_00)
    # every sequence number the next start draws collides with the first session's trade serial
    monkeypatch.setattr(ledger.serials, "randrange", lambda n: int(first[-4:]))
    with pytest.raises(ConcurrencyExhausted):
        ledger.request_start(pile_no=world.pile_no, gun_no=1, wallet_id=world.wallet_id, hold_fen=20_00,
                             at=T0, author="driver-1")
    wallet = ledger.wallet(world.wallet_id)
    assert wallet.holds == {first: 20_00}  # the first session's hold is untouched


def test_a_start_the_pile_refuses_fails_the_session_and_releases_the_hold(ledger: Ledger) -> None:
    world = build_world(ledger, top_up=100_00)
    trade_no = ledger.request_start(pile_no=world.pile_no, gun_no=1, wallet_id=world.wallet_id, hold_fen=80_00,
                                    at=T0, author="driver-1")
    assert ledger.wallet(world.wallet_id).held == 80_00
    session = ledger.acknowledge_start(trade_no, at=T0, ok=False, reason="gun not plugged")
    assert (session.state, session.reason) == ("failed", "gun not plugged")
    wallet = ledger.wallet(world.wallet_id)
    assert (wallet.available, wallet.held) == (100_00, 0)


def test_a_trade_serial_already_taken_in_the_same_second_draws_another(ledger: Ledger, monkeypatch) -> None:
    world = build_world(ledger, top_up=100_00)
    other = ledger.open_wallet(world.tenant_id, "driver-2", "driver-2")
    ledger.top_up(other, key="topup:2", amount=100_00, provider="cash", payment_ref="r2")
    draws = iter([7, 7, 7, 8])  # the same sequence for the first three tries, then another
    monkeypatch.setattr(ledger.serials, "randrange", lambda n: next(draws))
    first = ledger.request_start(pile_no=world.pile_no, gun_no=1, wallet_id=world.wallet_id, hold_fen=30_00,
                                 at=T0, author="driver-1")
    same_wallet = ledger.request_start(pile_no=world.pile_no, gun_no=1, wallet_id=world.wallet_id, hold_fen=30_00,
                                       at=T0, author="driver-1")  # hold key taken: drawn again
    assert first.endswith("0007") and same_wallet.endswith("0008") and first[:-4] == same_wallet[:-4]
    draws = iter([7, 9])
    monkeypatch.setattr(ledger.serials, "randrange", lambda n: next(draws))
    other_wallet = ledger.request_start(pile_no=world.pile_no, gun_no=1, wallet_id=other, hold_fen=20_00, at=T0,
                                        author="driver-2")  # the session's key refuses 0007: its hold goes back
    assert other_wallet.endswith("0009")
    assert (ledger.wallet(world.wallet_id).held, ledger.wallet(other).held) == (60_00, 20_00)
    assert ledger.wallet(other).available == 80_00
    assert ledger.session(first).wallet_id == world.wallet_id
