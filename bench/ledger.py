"""Ledger throughput on Postgres, beside a raw psycopg baseline measured in the same run.

A session here = start (hold, open, charging), 20 meter readings, settle, wallet capture: 25 events.
Sessions run the way a gateway sees them: ``--concurrent`` piles charge at once, a start's hold and
open commit together (one transaction, ``Ledger.request_start``), each other command of a start or
a settlement is its own transaction, and the realtime readings of all charging piles in one tick
commit together (``Ledger.record_readings``, the pile link's batch). Each start's time is printed
too. The baseline writes
rows of the same kinds and sizes into a table like the event tables, in exactly the same
transactions (same count, same rows per transaction), and nothing else: no reads, no aggregates,
no table lock, no NOTIFY. The counts are checked, not assumed: rows written by one transaction
share its ``xmin``, so each round prints the transactions the ledger and the baseline really made.

Ledger waves and baseline waves alternate, so both see the same load on a shared machine; the
ratio is the figure to quote, absolute numbers move with whatever else the machine is doing. Two
baselines: the one the issue's target was set against (a ``with conn.transaction()`` block per
transaction: BEGIN, INSERT, COMMIT, three round trips) and a one-round-trip client of the same
writes, printed beside it so the ratio is not read as more than it is. The client CPU per session
(this process: Python and psycopg) shows where the ledger's time goes when the server is idle.

    python bench/ledger.py [--sessions 500] [--concurrent 50] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.postgres.env import eventsourcing_env  # noqa: E402
from adapters.servers.postgres_server import create_database  # noqa: E402
from adapters.servers.resolve import resolve_servers  # noqa: E402
from domain.ledger import Ledger  # noqa: E402
from domain.session import ChargingSession, SettlementRecord  # noqa: E402

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
    ledger.top_up(wallet, key="t", amount=10**9, provider="wechat", payment_ref="b")
    return pile_nos, wallet


def wave(ledger: Ledger, pile_nos: list[str], wallet: uuid.UUID, start_ms: list[float]) -> None:
    """One session on every pile at once: start each, 20 ticks of readings, settle each.

    The time of each start (``request_start``: hold and open) is appended to ``start_ms``."""
    trades = []
    for pile_no in pile_nos:
        started = time.perf_counter()
        trade_no = ledger.request_start(pile_no=pile_no, gun_no=1, wallet_id=wallet, hold_fen=100_00, at=T0,
                                        author="bench")
        start_ms.append((time.perf_counter() - started) * 1000)
        ledger.mark_charging(trade_no, at=T0)
        trades.append(trade_no)
    for i in range(1, READINGS + 1):
        outcomes = ledger.record_readings([
            {"trade_no": t, "at": T0 + timedelta(seconds=15 * i), "energy": i * 100, "power": 600, "soc": 50}
            for t in trades
        ])
        assert not any(outcomes), outcomes
    energy = READINGS * 100
    record = SettlementRecord(tier_energy=(0, 0, energy, 0), pile_tier_amounts=(0, 0, energy * 15, 0),
                               pile_total_amount=energy * 15, pile_total_energy=energy, meter_start=0,
                               meter_end=energy, started_at=T0, ended_at=T0 + timedelta(minutes=5), stop_reason=0x40)
    for trade_no in trades:
        assert ledger.settle(trade_no, record, T0 + timedelta(minutes=6)).state == "finished"


@dataclass
class Round:
    sessions: int
    ledger_seconds: float
    ledger_events: int
    ledger_transactions: int
    snapshot_writes: int
    baseline_seconds: float
    baseline_rows: int
    baseline_transactions: int
    one_trip_seconds: float
    ledger_cpu: float  # seconds of this process's CPU (client side: Python, psycopg)
    baseline_cpu: float
    start_ms: list[float]  # each request_start (hold and open), wall clock

    @property
    def ledger_eps(self) -> float:
        return self.ledger_events / self.ledger_seconds

    @property
    def baseline_rps(self) -> float:
        return self.baseline_rows / self.baseline_seconds

    @property
    def one_trip_rps(self) -> float:
        return self.baseline_rows / self.one_trip_seconds

    @property
    def ratio(self) -> float:
        return self.ledger_eps / self.baseline_rps


EVENT_TABLES = ("registry_events", "tariffs_events", "sessions_events", "wallets_events")
SNAPSHOT_TABLES = ("sessions_snapshots", "wallets_snapshots")


def marks(conn: psycopg.Connection) -> dict[str, int]:
    """Where each events table ends now (its highest notification id)."""
    query = "SELECT coalesce(max(notification_id), 0) FROM {}"
    return {table: conn.execute(query.format(table)).fetchone()[0] for table in EVENT_TABLES}  # type: ignore[index]


def written_since(conn: psycopg.Connection, table: str, where: str = "TRUE") -> tuple[int, int]:
    """(rows, transactions) written: rows inserted by one transaction share its ``xmin``. ``table``
    may be a subquery of several tables' ``xmin``, so a transaction that wrote two counts once."""
    query = f"SELECT count(*), count(DISTINCT xmin::text) FROM {table} AS written WHERE {where}"
    rows, transactions = conn.execute(query).fetchone()  # type: ignore[misc]
    return rows, transactions


def sample_rows(conn: psycopg.Connection) -> dict[str, tuple[str, bytes]]:
    """The topic and stored bytes of a real event of each kind: the baseline writes the same rows."""
    rows = conn.execute(
        "SELECT DISTINCT ON (topic) topic, state FROM"
        " (SELECT topic, state, notification_id FROM sessions_events"
        "  UNION ALL SELECT topic, state, notification_id FROM wallets_events) AS e"
        " ORDER BY topic, notification_id DESC"
    ).fetchall()
    return {topic.rsplit(".", 1)[-1]: (topic, bytes(state)) for topic, state in rows}


class Baseline:
    """Raw psycopg writing rows of the same kinds and sizes in the same transactions as a wave.

    Two clients of the same writes: ``idiomatic`` is what the issue's target was set against, each
    transaction a ``with conn.transaction()`` block (psycopg sends BEGIN, the INSERT, COMMIT: three
    round trips); ``one_trip`` sends each transaction as one statement on an autocommit connection
    (one round trip), the least any client can do. Neither reads, locks or notifies.
    """

    COLUMNS = ("(originator_id uuid NOT NULL, originator_version bigint NOT NULL, topic text, state bytea,"
               " notification_id bigserial, PRIMARY KEY (originator_id, originator_version))")

    def __init__(self, database_url: str) -> None:
        self.conn = psycopg.connect(database_url)
        self.fast = psycopg.connect(database_url, autocommit=True)
        for table in ("baseline_events", "baseline_one_trip"):
            self.conn.execute(f"CREATE TABLE IF NOT EXISTS {table} {self.COLUMNS}")
            self.conn.execute(f"CREATE UNIQUE INDEX IF NOT EXISTS {table}_nid ON {table} (notification_id)")
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()
        self.fast.close()

    def idiomatic(self, concurrent: int, rows: dict[str, tuple[str, bytes]]) -> float:
        conn = self.conn
        insert = ("INSERT INTO baseline_events (originator_id, originator_version, topic, state)"
                  " VALUES (%s, %s, %s, %s)")

        def one(originator: uuid.UUID, version: int, kind: str) -> None:
            with conn.transaction():
                conn.execute(insert, (originator, version, *rows[kind]), prepare=True)

        ids = [(uuid.uuid4(), uuid.uuid4()) for _ in range(concurrent)]
        started = time.perf_counter()
        for session_id, wallet_id in ids:  # hold and open (one transaction), charging
            with conn.transaction():
                conn.execute(insert, (wallet_id, 1, *rows["HoldPlaced"]), prepare=True)
                conn.execute(insert, (session_id, 1, *rows["Opened"]), prepare=True)
            one(session_id, 2, "Charging")
        for i in range(READINGS):  # one transaction per tick, a row per charging session
            with conn.transaction():
                with conn.cursor() as cur:
                    cur.executemany(insert, [(sid, 3 + i, *rows["MeterRead"]) for sid, _ in ids])
        for session_id, wallet_id in ids:  # settle, capture
            one(session_id, 3 + READINGS, "Settled")
            one(wallet_id, 2, "Captured")
        return time.perf_counter() - started

    def one_trip(self, concurrent: int, rows: dict[str, tuple[str, bytes]]) -> float:
        conn = self.fast
        insert = ("INSERT INTO baseline_one_trip (originator_id, originator_version, topic, state)"
                  " VALUES (%s, %s, %s, %s)")
        insert_many = ("INSERT INTO baseline_one_trip (originator_id, originator_version, topic, state)"
                       " SELECT * FROM unnest(%s::uuid[], %s::bigint[], %s::text[], %s::bytea[])")

        def one(originator: uuid.UUID, version: int, kind: str) -> None:
            conn.execute(insert, (originator, version, *rows[kind]), prepare=True)

        ids = [(uuid.uuid4(), uuid.uuid4()) for _ in range(concurrent)]
        started = time.perf_counter()
        def together(*written: tuple[uuid.UUID, int, str]) -> None:
            conn.cursor(binary=True).execute(insert_many, (
                [i for i, _, _ in written], [v for _, v, _ in written], [rows[k][0] for _, _, k in written],
                [rows[k][1] for _, _, k in written]), prepare=True)

        for session_id, wallet_id in ids:
            together((wallet_id, 1, "HoldPlaced"), (session_id, 1, "Opened"))
            one(session_id, 2, "Charging")
        for i in range(READINGS):
            sids = [sid for sid, _ in ids]
            topic, state = rows["MeterRead"]
            conn.cursor(binary=True).execute(insert_many, (sids, [3 + i] * len(sids), [topic] * len(sids),
                                                           [state] * len(sids)), prepare=True)
        for session_id, wallet_id in ids:
            one(session_id, 3 + READINGS, "Settled")
            one(wallet_id, 2, "Captured")
        return time.perf_counter() - started


def run_round(database_url: str, sessions: int, concurrent: int) -> Round:
    """Ledger waves and baseline waves interleaved, so both see the same load on a shared machine."""
    ledger = Ledger(eventsourcing_env(database_url))
    baseline = Baseline(database_url)
    try:
        pile_nos, wallet = setup(ledger, concurrent)
        with psycopg.connect(database_url, autocommit=True) as conn:
            before = marks(conn)
            snapshots_before = sum(written_since(conn, t)[1] for t in SNAPSHOT_TABLES)
            ledger_seconds = baseline_seconds = one_trip_seconds = ledger_cpu = baseline_cpu = 0.0
            rows: dict[str, tuple[str, bytes]] | None = None
            start_ms: list[float] = []
            for _ in range(sessions // concurrent):
                started, cpu = time.perf_counter(), time.process_time()
                wave(ledger, pile_nos, wallet, start_ms)
                ledger_seconds += time.perf_counter() - started
                ledger_cpu += time.process_time() - cpu
                rows = rows or sample_rows(conn)
                cpu = time.process_time()
                baseline_seconds += baseline.idiomatic(concurrent, rows)
                baseline_cpu += time.process_time() - cpu
                one_trip_seconds += baseline.one_trip(concurrent, rows)
            events, transactions = written_since(conn, "(" + " UNION ALL ".join(  # a start writes two tables
                f"(SELECT xmin FROM {table} WHERE notification_id > {before[table]})" for table in EVENT_TABLES) + ")")
            snapshot_writes = sum(written_since(conn, t)[1] for t in SNAPSHOT_TABLES) - snapshots_before
            b_rows, b_transactions = written_since(conn, "baseline_events")
            one_rows, one_transactions = written_since(conn, "baseline_one_trip")
            assert (one_rows, one_transactions) == (b_rows, b_transactions), "the two baselines differ"
        return Round(sessions, ledger_seconds, events, transactions, snapshot_writes, baseline_seconds, b_rows,
                     b_transactions, one_trip_seconds, ledger_cpu, baseline_cpu, start_ms)
    finally:
        baseline.close()
        ledger.close()


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
    # servers of its own: other benchmarks stop the servers they started in var/bench when they finish
    server_url, _nats, started = resolve_servers(Path("var/bench-ledger").resolve())
    try:
        rounds: list[Round] = []
        for round_no in range(1, args.rounds + 1):
            r = run_round(create_database(server_url, f"bench_ledger_{round_no}"), args.sessions, args.concurrent)
            rounds.append(r)
            print(f"round {round_no}: ledger {r.sessions / r.ledger_seconds:6.1f} sessions/s"
                  f" {r.ledger_eps:6.0f} events/s"
                  f" ({r.ledger_events} events in {r.ledger_transactions} transactions, +{r.snapshot_writes} snapshot"
                  f" writes) | baseline {r.baseline_rps:6.0f} rows/s ({r.baseline_rows} rows in"
                  f" {r.baseline_transactions} transactions), ratio {r.ratio:.2f}"
                  f" | one-trip baseline {r.one_trip_rps:6.0f} rows/s, ratio {r.ledger_eps / r.one_trip_rps:.2f}"
                  f" | start p50 {statistics.median(r.start_ms):.2f} ms",
                  flush=True)
        with_snap, replayed = snapshot_load_ms(create_database(server_url, "bench_ledger_load"))

        def median(f: Callable[[Round], float]) -> float:
            return statistics.median(f(r) for r in rounds)

        print(f"\nmedian of {args.rounds} rounds, {args.sessions} sessions each ({args.concurrent} at once),"
              f" 1 writer thread, {os.cpu_count()} cores, ledger and baseline waves interleaved:")
        print(f"  ledger    {median(lambda r: r.sessions / r.ledger_seconds):8.1f} settled sessions/s"
              f"  {median(lambda r: r.ledger_eps):8.0f} events/s  (target >= 2000)")
        print(f"  baseline  {median(lambda r: r.baseline_rps):8.0f} rows/s (raw psycopg, same rows, same transactions)")
        print(f"  ratio     {median(lambda r: r.ratio):8.2f}  (target >= 0.5)")
        print(f"  one-trip baseline {median(lambda r: r.one_trip_rps):8.0f} rows/s (each transaction one round trip),"
              f" ratio {median(lambda r: r.ledger_eps / r.one_trip_rps):.2f}")
        print(f"  client CPU per session: ledger {median(lambda r: r.ledger_cpu / r.sessions * 1000):.2f} ms,"
              f" baseline {median(lambda r: r.baseline_cpu / r.sessions * 1000):.2f} ms (Python and psycopg;"
              f" the server's CPU not included)")
        all_starts = sorted(ms for r in rounds for ms in r.start_ms)
        print(f"  start (request_start: hold and open): p50 {statistics.median(all_starts):.2f} ms,"
              f" p99 {all_starts[int(0.99 * (len(all_starts) - 1))]:.2f} ms,"
              f" mean {statistics.fmean(all_starts):.2f} ms (n = {len(all_starts)})")
        print(f"  500-event session load: {with_snap:.2f} ms with snapshots, {replayed:.2f} ms replaying all"
              f" events (median of 50; target < 10 ms)")
    finally:
        for server in started:
            server.release()


if __name__ == "__main__":
    main()
