"""The watchdog's wallet follow-ups: a session that closed without its wallet commands (the settling
process crashed between the two commits) gets them, once; one that got them gets nothing more."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest

from adapters.postgres.env import eventsourcing_env
from domain.ledger import Ledger
from domain.session import ChargingSession
from adapters.followers.watchdog import FOLLOWUP_GRACE, Watchdog
from tests.factories import World, build_world, record

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=timezone.utc)
ROOT = Path(__file__).resolve().parents[2]


def charging(ledger: Ledger, world: World, hold: int = 50_00) -> str:
    trade_no = ledger.request_start(pile_no=world.pile_no, gun_no=1, wallet_id=world.wallet_id, hold_fen=hold,
                                    at=T0, author="driver-1")
    ledger.mark_charging(trade_no, at=T0)
    return trade_no


def settle_session_only(ledger: Ledger, trade_no: str, at: datetime) -> ChargingSession:
    """What a crash right after the session's commit leaves: the session settled, the wallet untouched."""
    _, session, _ = ledger.sessions.update_recorded(ChargingSession.create_id(trade_no), ChargingSession, "session",
                                                    lambda s: s.settle(record((0, 0, 20_000, 0), T0), at))
    return session


def wallet_events(ledger: Ledger, world: World) -> int:
    return len(list(ledger.wallets.events.get(world.wallet_id)))


def test_a_settlement_whose_wallet_commit_was_lost_is_captured_once_after_the_grace(ledger: Ledger,
                                                                                   database_url: str) -> None:
    world = build_world(ledger, top_up=100_00)
    trade_no = charging(ledger, world)
    closed_at = T0 + timedelta(minutes=31)
    session = settle_session_only(ledger, trade_no, closed_at)
    bill = session.bill["electricity_fen"] + session.bill["service_fen"]  # type: ignore[index]
    assert bill > 0 and ledger.wallet(world.wallet_id).held == 50_00
    watchdog = Watchdog(ledger, database_url)

    watchdog.sweep(closed_at + FOLLOWUP_GRACE / 2)  # within the grace the settling process still has time
    assert ledger.wallet(world.wallet_id).held == 50_00

    assert watchdog.follow_up(closed_at + FOLLOWUP_GRACE) == [f"capture:{trade_no}"]
    wallet = ledger.wallet(world.wallet_id)
    assert (wallet.available, wallet.held) == (100_00 - bill, 0)

    other = Ledger(eventsourcing_env(database_url))  # another gateway, its own caches, sweeping later
    try:
        before = wallet_events(ledger, world)
        watchdog.catch_up()
        assert Watchdog(other, database_url).follow_up(closed_at + timedelta(days=1)) == []
        assert watchdog.follow_up(closed_at + timedelta(days=1)) == []
        assert wallet_events(ledger, world) == before
    finally:
        other.close()


def test_a_session_settled_normally_needs_no_follow_up_write(ledger: Ledger, database_url: str) -> None:
    world = build_world(ledger, top_up=100_00)
    settled = charging(ledger, world)
    ledger.settle(settled, record((0, 0, 20_000, 0), T0), T0 + timedelta(minutes=31))
    refused = ledger.request_start(pile_no=world.pile_no, gun_no=2, wallet_id=world.wallet_id, hold_fen=10_00,
                                   at=T0, author="driver-1")
    ledger.acknowledge_start(refused, at=T0, ok=False, reason="gun not plugged")
    before = wallet_events(ledger, world)
    watchdog = Watchdog(ledger, database_url)
    watchdog.catch_up()
    with psycopg.connect(database_url) as conn:
        keys = {r[0] for r in conn.execute("SELECT key FROM wallet_followups").fetchall()}
    assert keys == {f"capture:{settled}", f"release:{refused}"}
    assert watchdog.follow_up(T0 + timedelta(days=1)) == []
    assert wallet_events(ledger, world) == before
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM wallet_followups").fetchone() == (0,)


def test_a_follow_up_the_wallet_refuses_stays_and_is_retried_later(ledger: Ledger, database_url: str,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    world = build_world(ledger, top_up=10_00)
    watchdog = Watchdog(ledger, database_url)
    with psycopg.connect(database_url) as conn:  # a capture of a hold the wallet never had
        conn.execute("INSERT INTO wallet_followups (key, trade_no, wallet_id, command, arguments, due) "
                     "VALUES ('capture:x', 'x', %s, 'capture', %s, %s)",
                     (world.wallet_id, json.dumps({"key": "capture:x", "hold_id": "x", "electricity": 1_00,
                                                   "service": 0}), T0))
    assert watchdog.follow_up(T0) == []
    assert "refused" in caplog.text
    with psycopg.connect(database_url) as conn:
        attempts, due, error = conn.execute("SELECT attempts, due, last_error FROM wallet_followups").fetchone()
    assert attempts == 1 and due > T0 and error
    assert watchdog.follow_up(T0) == []  # not due again yet: no second attempt
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT attempts FROM wallet_followups").fetchone() == (1,)
        conn.execute("UPDATE wallet_followups SET attempts = 60")  # a month of refusals: the pause stays bounded
    assert watchdog.follow_up(T0 + timedelta(days=1)) == []
    with psycopg.connect(database_url) as conn:
        attempts, due = conn.execute("SELECT attempts, due FROM wallet_followups").fetchone()
    assert attempts == 61 and due <= T0 + timedelta(days=2)
    assert ledger.wallet(world.wallet_id).available == 10_00


def test_a_row_that_fails_does_not_hold_back_the_rows_behind_it(ledger: Ledger, database_url: str) -> None:
    world = build_world(ledger, top_up=100_00)
    trade_no = charging(ledger, world)
    settle_session_only(ledger, trade_no, T0)
    watchdog = Watchdog(ledger, database_url)
    watchdog.catch_up()
    with psycopg.connect(database_url) as conn:  # due first, and its arguments fit no wallet command
        conn.execute("INSERT INTO wallet_followups (key, trade_no, wallet_id, command, arguments, due) "
                     "VALUES ('odd:x', 'x', %s, 'capture', %s, %s)",
                     (world.wallet_id, json.dumps({"key": "odd:x", "no_such_argument": 1}), T0 - timedelta(days=1)))
    assert watchdog.follow_up(T0 + FOLLOWUP_GRACE) == [f"capture:{trade_no}"]
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT key, attempts FROM wallet_followups").fetchall() == [("odd:x", 1)]
    assert ledger.wallet(world.wallet_id).held == 0


# ---- issue 11, finding 7: the watchdog as a role of its own, safe to run twice -------------------------------
def requested_sessions(ledger: Ledger, world: World, count: int, at: datetime) -> list[str]:
    """``count`` app starts of 1 yuan each that no pile ever answers."""
    return [ledger.request_start(pile_no=world.pile_no, gun_no=1 + i % 2, wallet_id=world.wallet_id, hold_fen=1_00,
                                 at=at, author="driver-1") for i in range(count)]


def closing_events(ledger: Ledger) -> tuple[Counter[str], int]:
    """(Failed events per trade serial, Released events in the wallets)."""
    from adapters.followers.log_follower import iter_events

    failed = Counter(ledger.sessions.get(e.originator_id, ChargingSession, "session").trade_no
                     for e in iter_events(ledger.sessions) if type(e).__name__ == "Failed")
    released = sum(1 for e in iter_events(ledger.wallets) if type(e).__name__ == "Released")
    return failed, released


def test_two_watchdogs_sweeping_at_once_close_each_session_and_release_each_hold_once(ledger: Ledger,
                                                                                      database_url: str) -> None:
    world = build_world(ledger, top_up=100_00)
    trades = requested_sessions(ledger, world, 12, T0)
    ledgers = [Ledger(eventsourcing_env(database_url)) for _ in range(2)]  # two processes, their own caches
    try:
        watchdogs = [Watchdog(other, database_url) for other in ledgers]
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def sweep(watchdog: Watchdog) -> None:
            try:
                for round_ in range(3):
                    barrier.wait(timeout=30)
                    watchdog.sweep(T0 + timedelta(minutes=2 + round_))
            except BaseException as error:  # noqa: BLE001 - reported below
                errors.append(error)

        threads = [threading.Thread(target=sweep, args=(w,)) for w in watchdogs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not errors and not any(t.is_alive() for t in threads)
        assert sum(w.stats["sessions_expired"] for w in watchdogs) == len(trades)
    finally:
        for other in ledgers:
            other.close()
    failed, released = closing_events(ledger)
    assert failed == Counter({t: 1 for t in trades}) and released == len(trades)
    wallet = ledger.wallet(world.wallet_id)
    assert (wallet.available, wallet.held) == (100_00, 0)


def test_chargeledger_watchdog_runs_on_its_own_twice_at_once_and_stops_on_sigterm(
        ledger: Ledger, database_url: str, nats_role_urls: dict[str, str]) -> None:
    """No gateway runs: two `chargeledger watchdog` processes fail the starts no pile answered,
    each once, and exit cleanly when told to stop."""
    world = build_world(ledger, top_up=100_00)
    trades = requested_sessions(ledger, world, 6, datetime.now(timezone.utc) - timedelta(minutes=5))
    env = {**os.environ, "DATABASE_URL": database_url, "NATS_URL": nats_role_urls["reader"],
           "PYTHONPATH": str(ROOT), "LOG_LEVEL": "WARNING"}
    logs = [tempfile.TemporaryFile("w+") for _ in range(2)]  # files, not pipes: read while they run
    processes = [subprocess.Popen([sys.executable, "-m", "app", "watchdog", "--interval", "0.2"], cwd=ROOT, env=env,
                                  stdout=log, stderr=subprocess.STDOUT, text=True) for log in logs]

    def said(log: Any) -> str:
        log.seek(0)
        return log.read()

    try:
        deadline = time.monotonic() + 60
        # both sweeping (a slow machine may start the second after the first closed every session)
        while sum(closing_events(ledger)[0].values()) < len(trades) or not all(
                "watchdog sweeping" in said(log) for log in logs):
            assert time.monotonic() < deadline, "the watchdog processes did not close the sessions"
            assert all(p.poll() is None for p in processes), [said(log) for log in logs]
            time.sleep(0.2)
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(timeout=30)
        outputs = [said(log) for log in logs]
        for log in logs:
            log.close()
    assert [p.returncode for p in processes] == [0, 0], outputs
    failed, released = closing_events(ledger)
    assert failed == Counter({t: 1 for t in trades}) and released == len(trades)
    assert ledger.wallet(world.wallet_id).held == 0
