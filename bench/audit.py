"""Audit replay rate on a large ledger, beside a raw scan of the same stored events in the same run.

The ledger is made by the real domain code, quickly: a few piles, a tariff and ``--wallets``
wallets are created through the Ledger as usual; then ``--sessions`` sessions run in memory on the
real aggregates (hold, open, acknowledge, charging, 20 readings, stop, settle, capture: 26 events
each, every one through the domain's own commands and the settlement policy), are encoded by the
Applications' own mappers, and are written with COPY, notification ids in order. Snapshots are not
written: the live wallets load from their events.

Then, alternating for ``--rounds``:

* **raw scan**: psycopg, a server-side binary cursor per event table, ``ORDER BY notification_id``,
  the same five columns, every row fetched and its state touched, nothing decoded;
* **replay**: ``adapters.audit.replay.replay`` reading the same rows the same way, decoding and
  applying every event, re-pricing every session, and then the checks, the live wallets included.

Last, the hash chain: the first seal of the whole ledger and a verify.

    python bench/audit.py [--sessions 38500] [--wallets 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.audit.chain import seal  # noqa: E402
from adapters.audit.replay import replay  # noqa: E402
from adapters.audit.store import event_tables  # noqa: E402
from adapters.audit.verify import verify  # noqa: E402
from adapters.postgres.env import eventsourcing_env  # noqa: E402
from adapters.servers.postgres_server import create_database  # noqa: E402
from adapters.servers.resolve import resolve_servers  # noqa: E402
from domain.ledger import Ledger  # noqa: E402
from domain.session import ChargingSession, SettlementRecord, make_trade_no  # noqa: E402
from domain.settlement import wallet_commands  # noqa: E402

PRICES = {"sharp": {"electricity": 120000, "service": 80000}, "peak": {"electricity": 100000, "service": 80000},
          "flat": {"electricity": 70000, "service": 60000}, "valley": {"electricity": 35000, "service": 40000}}
SLOTS = [3] * 16 + [2] * 4 + [1] * 6 + [0] * 4 + [2] * 6 + [1] * 8 + [2] * 2 + [3] * 2
T0 = datetime(2026, 11, 1, 0, 0, tzinfo=timezone.utc)
READINGS = 20
PILES = 100


def build(database_url: str, sessions: int, wallets: int) -> int:
    """A ledger of ``sessions`` realistic sessions; returns the number of stored events."""
    ledger = Ledger(eventsourcing_env(database_url))
    try:
        tenant = ledger.create_tenant("bench", "bench")
        station = ledger.create_station(tenant, "bench", "-", 31.0, 121.0, "bench")
        piles = [f"{20_000_000_000_000 + i}" for i in range(PILES)]
        for pile_no in piles:
            ledger.register_pile(station, pile_no, "DC", 2, "bench")
        tariff_id = ledger.create_tariff(tenant, "bench", PRICES, SLOTS, "bench")
        ledger.assign_tariff(tariff_id, "bench", station_id=station)
        wallet_ids = [ledger.open_wallet(tenant, f"driver-{i}", "bench") for i in range(wallets)]
        for wallet_id in wallet_ids:
            ledger.top_up(wallet_id, key=f"cash:{wallet_id}", amount=10**9, provider="cash",
                          payment_ref="bench")
        station_agg = ledger.registry.station(station)
        tariff = ledger.tariffs.tariff(tariff_id)
        in_memory = {w: ledger.wallet(w) for w in wallet_ids}
        rows: dict[str, list[tuple]] = {"sessions_events": [], "wallets_events": []}
        next_id = {t: (app.recorder.max_notification_id() or 0) + 1
                   for t, app in (("sessions_events", ledger.sessions), ("wallets_events", ledger.wallets))}

        def stored(table: str, app: object, aggregate: object) -> None:
            for event in aggregate.collect_events():  # type: ignore[attr-defined]
                s = app.mapper.to_stored_event(event)  # type: ignore[attr-defined]
                rows[table].append((s.originator_id, s.originator_version, s.topic, s.state, next_id[table]))
                next_id[table] += 1

        def wallet_do(wallet_id: uuid.UUID, command: str, **kwargs: object) -> None:
            getattr(in_memory[wallet_id], command)(**kwargs)
            stored("wallets_events", ledger.wallets, in_memory[wallet_id])

        started = time.perf_counter()
        gc.disable()  # millions of long-lived rows: the cyclic collector would only slow the build down
        for i in range(sessions):
            at = T0 + timedelta(seconds=37 * i)
            pile_no, gun = piles[i % PILES], 1 + (i // PILES) % 2
            wallet_id = wallet_ids[i % wallets]
            trade_no = make_trade_no(pile_no, gun, at + timedelta(hours=8), i)
            wallet_do(wallet_id, "hold", key=f"hold:{trade_no}", hold_id=trade_no, amount=100_00)
            s = ChargingSession.open(trade_no=trade_no, tenant_id=tenant, station_id=station, pile_no=pile_no,
                                     gun_no=gun, wallet_id=wallet_id, hold_fen=100_00, tariff_id=tariff.id,
                                     tariff_version=tariff.tariff_version, schedule=tariff.schedule,
                                     timezone=station_agg.timezone, origin="app", at=at, author="driver")
            s.acknowledge_start(at=at + timedelta(seconds=2), ok=True)
            s.mark_charging(at=at + timedelta(seconds=15))
            for r in range(1, READINGS + 1):
                s.record_reading(at=at + timedelta(minutes=3 * r), energy=r * 1500 + i % 7, power=600, soc=40 + r)
            s.request_stop(at=at + timedelta(minutes=61), reason="driver", author="driver")
            energy = list(s.tier_energy)
            record = SettlementRecord(tier_energy=tuple(energy), pile_tier_amounts=(0, 0, 0, 0),  # type: ignore[arg-type]
                                       pile_total_amount=0, pile_total_energy=sum(energy), meter_start=0,
                                       meter_end=sum(energy), started_at=at, ended_at=at + timedelta(minutes=61),
                                       stop_reason=0x40)
            s.settle(record, at + timedelta(minutes=62))
            pending = list(s._pending_events)
            stored("sessions_events", ledger.sessions, s)
            for event in pending:
                for command, kwargs in wallet_commands(s, type(event).__name__, event):
                    wallet_do(wallet_id, command, **kwargs)
        gc.enable()
        made = time.perf_counter() - started
        total = 0
        with psycopg.connect(database_url) as conn:
            for table, table_rows in rows.items():
                with conn.cursor().copy(f"COPY {table} (originator_id, originator_version, topic, state, "
                                        "notification_id) FROM STDIN") as copy:
                    for row in table_rows:
                        copy.write_row(row)
                conn.execute(f"SELECT setval('{table}_notification_id_seq', %s)", [next_id[table] - 1])
                total += len(table_rows)
            conn.commit()
    finally:
        ledger.close()
    print(f"built {sessions} sessions on {wallets} wallets: {total} session and wallet events made by the domain "
          f"in {made:.1f} s, written with COPY", flush=True)
    return total


def raw_scan(database_url: str) -> tuple[int, float]:
    """Every stored event, fetched and touched, nothing decoded: (rows, seconds)."""
    started = time.perf_counter()
    n = size = 0
    with psycopg.connect(database_url) as conn:
        for table in event_tables(conn):
            with conn.transaction(), conn.cursor(name="raw", binary=True) as cur:
                cur.itersize = 20_000
                cur.execute(f"SELECT originator_id, originator_version, topic, state, notification_id FROM "  # noqa: S608
                            f"{table.table} ORDER BY notification_id")
                while rows := cur.fetchmany(20_000):
                    for row in rows:
                        size += len(row[3])
                    n += len(rows)
    return n, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=38_500, help="26 events each (38,500: ~1,000,000)")
    parser.add_argument("--wallets", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reuse", action="store_true", help="measure the ledger a previous run left (no build)")
    args = parser.parse_args()
    server_url, _nats, started = resolve_servers(Path("var/bench").resolve())
    try:
        if args.reuse:
            url = server_url.rsplit("/", 1)[0] + "/bench_audit"
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("DROP TABLE IF EXISTS audit_chain, audit_seals, audit_ledger")
        else:
            url = create_database(server_url, "bench_audit")
            build(url, args.sessions, args.wallets)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
        raws, replays = [], []
        for round_no in range(1, args.rounds + 1):
            n, seconds = raw_scan(url)
            raws.append(n / seconds)
            t = time.perf_counter()
            report = replay(url)
            replay_seconds = time.perf_counter() - t
            events = report.counts["total_events"]
            assert events == n and report.ok, report.as_text()
            replays.append(events / replay_seconds)
            print(f"round {round_no}: raw scan {n / seconds:9.0f} rows/s ({seconds:.1f} s) | replay {events} events "
                  f"in {replay_seconds:.1f} s = {events / replay_seconds:8.0f} events/s, no differences | "
                  f"ratio {replays[-1] / raws[-1]:.2f}", flush=True)
        t = time.perf_counter()
        loaded = replay(url, live="load")
        load_seconds = time.perf_counter() - t
        assert loaded.ok, loaded.as_text()
        t = time.perf_counter()
        seal(url)
        seal_seconds = time.perf_counter() - t
        t = time.perf_counter()
        chain = verify(url)
        verify_seconds = time.perf_counter() - t
        assert chain.ok, chain.as_text()
        ratios = [r / s for r, s in zip(replays, raws, strict=True)]
        print(f"\n{n} events, median of {args.rounds} rounds, {os.cpu_count()} cores, raw scan and replay interleaved:")
        print(f"  raw scan  {statistics.median(raws):9.0f} rows/s (psycopg, binary server-side cursor, same rows, "
              "same order)")
        print(f"  replay    {statistics.median(replays):9.0f} events/s  (target >= 20000); the whole replay "
              f"{n / statistics.median(replays):.0f} s (target < 120 s)")
        print(f"  ratio     {statistics.median(ratios):9.2f}  (target >= 0.3)")
        print(f"  replay --load-wallets (every wallet also loaded through the Wallets Application): "
              f"{load_seconds:.1f} s")
        print(f"  hash chain: first seal of all {n} events {seal_seconds:.1f} s ({n / seal_seconds:.0f} events/s), "
              f"verify {verify_seconds:.1f} s ({n / verify_seconds:.0f} events/s)")
    finally:
        for server in reversed(started):
            server.release()


if __name__ == "__main__":
    main()
