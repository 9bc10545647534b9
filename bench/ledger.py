"""Ledger throughput on Postgres, beside a raw psycopg baseline measured in the same run.

A session here = start (hold, open, charging), 20 meter readings, settle, wallet capture: 25 events.
Sessions run the way a gateway sees them: ``--concurrent`` piles charge at once, each command of a
start or a settlement is its own transaction, and the realtime readings of all charging piles in
one tick commit together (``Ledger.record_readings``, the pile link's batch). The baseline writes
rows of the same shape and size into a table like the event tables, in exactly the same
transactions (same count, same rows per transaction), and nothing else: no reads, no aggregates,
no table lock, no NOTIFY. The ratio is the figure to quote; absolute numbers move with whatever
else the machine is doing.

    python bench/ledger.py [--sessions 500] [--concurrent 50] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.postgres import eventsourcing_env  # noqa: E402
from adapters.servers import create_database, resolve_servers  # noqa: E402
from domain.ledger import Ledger  # noqa: E402
from domain.session import ChargingSession, TransactionRecord  # noqa: E402

PRICES = {t: {"electricity": 100000, "service": 50000} for t in ("sharp", "peak", "flat", "valley")}
T0 = datetime(2026, 11, 22, 2, 0, tzinfo=timezone.utc)
READINGS = 20


def setup(ledger: Ledger, piles: int) -> tuple[list[str], uuid.UUID]:
    tenant = ledger.create_tenant("bench", "bench")
    station = ledger.create_station(tenant, "bench", "-", 31.0, 121.0, "bench")
    pile_nos = [f"{10_000_000_000_000 + i}" for i in range(piles)]
    for pile_no in pile_nos:
        ledger.register_pile(station, pile_no, "DC", 2, "bench")
    tariff = ledger.create_tariff(tenant, "bench", PRICES, [2] * 48, "bench")
    ledger.assign_tariff(tariff, "bench", station_id=station)
    wallet = ledger.open_wallet(tenant, "bench-driver", "bench")
    ledger.wallet_command(wallet, "top_up", key="t", amount=10**9, provider="wechat", payment_ref="b")
    return pile_nos, wallet


def wave(ledger: Ledger, pile_nos: list[str], wallet: uuid.UUID) -> None:
    """One session on every pile at once: start each, 20 ticks of readings, settle each."""
    trades = []
    for pile_no in pile_nos:
        trade_no = ledger.request_start(pile_no=pile_no, gun_no=1, wallet_id=wallet, hold_fen=100_00, at=T0,
                                        author="bench")
        ledger.session_command(trade_no, "mark_charging", at=T0)
        trades.append(trade_no)
    for i in range(1, READINGS + 1):
        outcomes = ledger.record_readings([
            {"trade_no": t, "at": T0 + timedelta(seconds=15 * i), "energy": i * 100, "power": 600, "soc": 50}
            for t in trades
        ])
        assert not any(outcomes), outcomes
    energy = READINGS * 100
    record = TransactionRecord(tier_energy=(0, 0, energy, 0), pile_tier_amounts=(0, 0, energy * 15, 0),
                               pile_total_amount=energy * 15, pile_total_energy=energy, meter_start=0,
                               meter_end=energy, started_at=T0, ended_at=T0 + timedelta(minutes=5), stop_reason=0x40)
    for trade_no in trades:
        assert ledger.settle(trade_no, record, T0 + timedelta(minutes=6)).state == "finished"


def run_ledger(database_url: str, sessions: int, concurrent: int) -> tuple[float, int, int]:
    """Returns (seconds, events written, transactions)."""
    ledger = Ledger(eventsourcing_env(database_url))
    try:
        pile_nos, wallet = setup(ledger, concurrent)
        before = sum(app.recorder.max_notification_id() or 0 for app in ledger.applications)
        started = time.perf_counter()
        for _ in range(sessions // concurrent):
            wave(ledger, pile_nos, wallet)
        elapsed = time.perf_counter() - started
        events = sum(app.recorder.max_notification_id() or 0 for app in ledger.applications) - before
        waves = sessions // concurrent
        return elapsed, events, waves * (5 * concurrent + READINGS)
    finally:
        ledger.close()


def sample_rows(database_url: str) -> dict[str, bytes]:
    """The stored bytes of one real session's events by kind, to make the baseline's rows the same size."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT DISTINCT ON (topic) topic, state FROM"
            " (SELECT topic, state, notification_id FROM sessions_events"
            "  UNION ALL SELECT topic, state, notification_id FROM wallets_events) AS e"
            " ORDER BY topic, notification_id DESC"
        ).fetchall()
    return {topic.rsplit(".", 1)[-1]: bytes(state) for topic, state in rows}


def run_baseline(database_url: str, sessions: int, concurrent: int, rows: dict[str, bytes]) -> tuple[float, int]:
    insert = ("INSERT INTO baseline_events (originator_id, originator_version, topic, state)"
              " VALUES (%s, %s, %s, %s)")
    with psycopg.connect(database_url) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS baseline_events (originator_id uuid NOT NULL, originator_version"
                     " bigint NOT NULL, topic text, state bytea, notification_id bigserial,"
                     " PRIMARY KEY (originator_id, originator_version))")
        conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS baseline_nid ON baseline_events (notification_id)")
        conn.commit()

        def one(originator: uuid.UUID, version: int, kind: str) -> None:
            with conn.transaction():
                conn.execute(insert, (originator, version, kind, rows[kind]), prepare=True)

        written = 0
        started = time.perf_counter()
        for _ in range(sessions // concurrent):
            ids = [(uuid.uuid4(), uuid.uuid4()) for _ in range(concurrent)]
            for session_id, wallet_id in ids:  # hold, open, charging
                one(wallet_id, 1, "HoldPlaced")
                one(session_id, 1, "Opened")
                one(session_id, 2, "Charging")
            for i in range(READINGS):  # one transaction per tick, a row per charging session
                with conn.transaction():
                    with conn.cursor() as cur:
                        cur.executemany(insert, [(sid, 3 + i, "MeterRead", rows["MeterRead"]) for sid, _ in ids])
            for session_id, wallet_id in ids:  # settle, capture
                one(session_id, 3 + READINGS, "Settled")
                one(wallet_id, 2, "Captured")
            written += concurrent * (5 + READINGS)
        return time.perf_counter() - started, written


def snapshot_load_ms(database_url: str, loads: int = 50) -> tuple[float, float]:
    """Median load time of a 500-event session, with snapshots and without (events replayed)."""
    ledger = Ledger(eventsourcing_env(database_url))
    try:
        pile_nos, wallet = setup(ledger, 1)
        trade_no = ledger.request_start(pile_no=pile_nos[0], gun_no=2, wallet_id=wallet, hold_fen=1, at=T0,
                                        author="bench")
        session = ledger.session(trade_no)
        session.mark_charging(at=T0)
        ledger.sessions.save(session)
        while session.version < 500:
            session.record_reading(at=T0 + timedelta(seconds=session.version), energy=session.version)
            ledger.sessions.save(session)
        session_id = ChargingSession.create_id(trade_no)

        def median_ms(load: object) -> float:
            times = []
            for _ in range(loads):
                started = time.perf_counter()
                load()  # type: ignore[operator]
                times.append((time.perf_counter() - started) * 1000)
            return statistics.median(times)

        # asking for a version bypasses the in-memory cache: the latest snapshot and the events after it
        with_snapshot = median_ms(lambda: ledger.sessions.repository.get(session_id, version=session.version))
        replayed = median_ms(lambda: _replay(ledger, session_id))
        return with_snapshot, replayed
    finally:
        ledger.close()


def _replay(ledger: Ledger, session_id: uuid.UUID) -> object:
    """Load by replaying every event, as the repository would without a snapshot."""
    aggregate = None
    for event in ledger.sessions.events.get(session_id):
        aggregate = event.mutate(aggregate)
    return aggregate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--concurrent", type=int, default=50, help="piles charging at once")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    server_url, _nats, started = resolve_servers(Path("var/bench").resolve())
    try:
        ratios, ledger_eps, base_eps, sessions_per_s = [], [], [], []
        for round_no in range(1, args.rounds + 1):
            db = create_database(server_url, f"bench_ledger_{round_no}")
            seconds, events, transactions = run_ledger(db, args.sessions, args.concurrent)
            b_seconds, b_rows = run_baseline(db, args.sessions, args.concurrent, sample_rows(db))
            ledger_eps.append(events / seconds)
            base_eps.append(b_rows / b_seconds)
            sessions_per_s.append(args.sessions / seconds)
            ratios.append(ledger_eps[-1] / base_eps[-1])
            print(f"round {round_no}: ledger {args.sessions / seconds:7.1f} sessions/s {events / seconds:8.0f} events/s"
                  f" ({events} events, {transactions} transactions) | baseline {b_rows / b_seconds:8.0f} rows/s"
                  f" | ratio {ratios[-1]:.2f}", flush=True)
        with_snap, replayed = snapshot_load_ms(create_database(server_url, "bench_ledger_load"))
        print(f"\nmedian of {args.rounds} rounds, {args.sessions} sessions each ({args.concurrent} at once),"
              f" 1 writer thread, {os.cpu_count()} cores:")
        print(f"  ledger    {statistics.median(sessions_per_s):8.1f} settled sessions/s"
              f"  {statistics.median(ledger_eps):8.0f} events/s")
        print(f"  baseline  {statistics.median(base_eps):8.0f} rows/s (raw psycopg, same rows, same transactions)")
        print(f"  ratio     {statistics.median(ratios):8.2f}  (target >= 0.5)")
        print(f"  500-event session load: {with_snap:.2f} ms with snapshots, {replayed:.2f} ms replaying all"
              f" events (median of 50; target < 10 ms)")
    finally:
        for server in started:
            server.stop()


if __name__ == "__main__":
    main()
