"""Issue 11, finding 6: a session whose pile went offline while charging gets a deadline.

Domain rules on the aggregate in memory (no store): the pile link records the pile offline
(``PileOffline``, carrying the deadline), the pile showing the session again lifts it
(``PileOnline``), the deadline abandons the session priced from the last reading, and a record that
comes later re-prices it. The end-to-end test over the gateway is in ``tests/e2e/test_owed.py``.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from domain.pricing import price
from domain.session import OFFLINE_TIMEOUT, RECORD_TIMEOUT, ChargingSession
from domain.tariff import TariffSchedule
from tests.factories import PILE_NO, PRICES, SLOTS, record

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=timezone.utc)  # 10:00 in Shanghai: peak


def charging_session(energy: int = 12_000) -> ChargingSession:
    """A session charging since T0, with one reading of ``energy`` at T0 + 5 min."""
    session = ChargingSession.open(
        trade_no=f"{PILE_NO}01261122100000{1234:04d}", tenant_id=uuid.uuid4(), station_id=uuid.uuid4(),
        pile_no=PILE_NO, gun_no=1, wallet_id=uuid.uuid4(), hold_fen=50_00, tariff_id=uuid.uuid4(),
        tariff_version=1, schedule=TariffSchedule.build(PRICES, SLOTS), timezone="Asia/Shanghai", origin="app",
        at=T0, author="driver-1")
    session.acknowledge_start(T0, ok=True)
    session.mark_charging(T0)
    session.record_reading(at=T0 + timedelta(minutes=5), energy=energy)
    return session


def names(session: ChargingSession) -> list[str]:
    return [type(e).__name__ for e in session.collect_events()]


def test_a_charging_session_has_no_deadline_until_its_pile_goes_offline() -> None:
    session = charging_session()
    assert session.deadline is None
    assert not session.expire(T0 + timedelta(days=30))  # before: charging for ever
    offline_at = T0 + timedelta(minutes=6)
    session.pile_offline(offline_at)
    assert session.deadline == offline_at + OFFLINE_TIMEOUT
    assert names(session)[-1] == "PileOffline"
    session.pile_offline(offline_at + timedelta(minutes=1))  # reported again: nothing new
    assert session.collect_events() == [] and session.deadline == offline_at + OFFLINE_TIMEOUT


def test_an_offline_session_past_its_deadline_is_abandoned_priced_from_the_last_reading() -> None:
    session = charging_session(energy=12_000)
    offline_at = T0 + timedelta(minutes=6)
    session.pile_offline(offline_at)
    assert not session.expire(offline_at + OFFLINE_TIMEOUT - timedelta(seconds=1))
    assert session.expire(offline_at + OFFLINE_TIMEOUT)
    assert session.state == "abandoned" and "offline" in session.reason
    assert session.bill == price((0, 12_000, 0, 0), session.schedule).as_dict()
    session.settle(record((0, 15_000, 0, 0), T0), offline_at + timedelta(hours=1))  # the record comes later
    assert session.state == "finished"
    assert names(session)[-1] == "Resettled"


def test_the_pile_reporting_the_session_again_lifts_the_deadline() -> None:
    for back in ("mark_charging", "record_reading"):
        session = charging_session()
        offline_at = T0 + timedelta(minutes=6)
        session.pile_offline(offline_at)
        at = offline_at + timedelta(minutes=3)
        if back == "mark_charging":
            session.mark_charging(at)
        else:
            session.record_reading(at=at, energy=13_000)
        assert session.deadline is None and session.offline_since is None, back
        assert "PileOnline" in names(session)
        assert not session.expire(offline_at + OFFLINE_TIMEOUT * 10)
        assert session.state == "charging"


def test_a_reading_after_the_reported_disconnect_means_the_pile_is_already_back() -> None:
    """The offline report is written behind; a reconnect's reading may be stored first."""
    session = charging_session()
    session.record_reading(at=T0 + timedelta(minutes=8), energy=13_000)
    session.pile_offline(T0 + timedelta(minutes=7))
    assert session.deadline is None and "PileOffline" not in names(session)


def test_a_stop_asked_for_while_the_pile_is_offline_waits_for_the_pile_then_for_its_record() -> None:
    session = charging_session()
    offline_at = T0 + timedelta(minutes=6)
    session.pile_offline(offline_at)
    stop_at = offline_at + timedelta(minutes=1)
    session.request_stop(stop_at, "driver", "driver-1")
    assert session.state == "stopping"
    assert session.deadline == offline_at + OFFLINE_TIMEOUT  # later than the record deadline: the pile is away
    back = offline_at + timedelta(minutes=20)
    session.mark_charging(back)  # the pile logged in and reports it charging: the stop goes out again
    assert session.deadline == back + RECORD_TIMEOUT
    assert session.expire(back + RECORD_TIMEOUT)
    assert session.state == "abandoned" and session.reason == "transaction record overdue"


def test_a_stopping_session_whose_pile_goes_offline_keeps_the_later_deadline() -> None:
    session = charging_session()
    stop_at = T0 + timedelta(minutes=6)
    session.request_stop(stop_at, "driver", "driver-1")
    session.pile_offline(stop_at + timedelta(seconds=5))
    assert session.deadline == stop_at + timedelta(seconds=5) + OFFLINE_TIMEOUT
    session.settle(record((0, 12_000, 0, 0), T0), stop_at + timedelta(minutes=2))
    assert session.state == "finished" and session.deadline is None


def test_sessions_not_charging_are_not_given_an_offline_deadline() -> None:
    session = charging_session()
    requested = ChargingSession.open(
        trade_no=f"{PILE_NO}02261122100000{1:04d}", tenant_id=uuid.uuid4(), station_id=uuid.uuid4(),
        pile_no=PILE_NO, gun_no=2, wallet_id=None, hold_fen=0, tariff_id=uuid.uuid4(), tariff_version=1,
        schedule=TariffSchedule.build(PRICES, SLOTS), timezone="Asia/Shanghai", origin="app", at=T0,
        author="driver-1")
    requested.pile_offline(T0 + timedelta(seconds=5))  # the start deadline still rules
    assert requested.deadline == T0 + timedelta(seconds=90)
    session.settle(record((0, 12_000, 0, 0), T0), T0 + timedelta(minutes=9))
    session.collect_events()
    session.pile_offline(T0 + timedelta(minutes=10))
    assert session.collect_events() == []
