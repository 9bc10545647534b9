"""Settled sessions/s and events/s on 1 and 2 tenant shards (docs/shards.md, docs/performance.md).

A first version of issue 15's cluster bench: the ledger's commands in process, no gateway. Each shard
is a database of its own on the bench's Postgres server and is driven by a process of its own (so
two shards use both cores): a tenant with a station, its piles, a tariff and a wallet per pile, then
``--sessions`` sessions per shard, each started (hold and session in one transaction), acknowledged,
charging, ``--readings`` meter readings, settled (session, then the wallet's capture), by
``--workers`` threads per process, one pile each. Every process starts at one barrier; a run's time
is the slowest shard's. The figure to quote is the ratio of the 2-shard throughput to the 1-shard.
Both shards share one Postgres server here (one machine, 2 shared cores), so the ratio shows what
sharding the ledger buys before the database server itself is the limit.

    python bench/cluster.py                 # 150 sessions per shard, 2 workers each, best of 2 runs
    python bench/cluster.py --sessions 600 --workers 4 --runs 3   # the full size
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.postgres.env import eventsourcing_env  # noqa: E402
from adapters.servers.postgres_server import create_database  # noqa: E402
from adapters.servers.resolve import resolve_servers  # noqa: E402
from domain.ledger import Ledger  # noqa: E402
from domain.session import SettlementRecord  # noqa: E402

PRICES = {t: {"electricity": 100000, "service": 50000} for t in ("sharp", "peak", "flat", "valley")}
T0 = datetime(2026, 11, 22, 2, 0, tzinfo=timezone.utc)


def events_in(ledger: Ledger) -> int:
    return sum(app.recorder.max_notification_id() or 0 for app in ledger.applications)


def shard_worker(shard: int, url: str, sessions: int, workers: int, readings: int, barrier: Any, out: Any) -> None:
    """One shard's process: set up its tenant, wait at the barrier, drive ``sessions`` to settlement."""
    ledger = Ledger(eventsourcing_env(url, pool_size=workers + 2, max_overflow=workers))
    try:
        tenant = ledger.create_tenant(f"bench tenant {shard}", "bench")
        station = ledger.create_station(tenant, "bench", "1 Road", 31.2, 121.5, "bench")
        tariff = ledger.create_tariff(tenant, "bench", PRICES, [2] * 48, "bench")
        ledger.assign_tariff(tariff, "bench", station_id=station)
        piles = []
        for w in range(workers):
            pile_no = f"{32010600010000 + shard * 1000 + w:014d}"
            ledger.register_pile(station, pile_no, "DC", 1, "bench")
            wallet = ledger.open_wallet(tenant, f"driver-{w}", "bench")
            ledger.top_up(wallet, key=f"t{w}", amount=10**9, provider="wechat", payment_ref=f"b{w}")
            piles.append((pile_no, wallet))
        before = events_in(ledger)
        share = [sessions // workers + (1 if i < sessions % workers else 0) for i in range(workers)]

        def drive(pile_no: str, wallet: Any, count: int) -> None:
            for _ in range(count):
                trade = ledger.request_start(pile_no=pile_no, gun_no=1, wallet_id=wallet, hold_fen=50_00, at=T0,
                                             author="bench")
                ledger.acknowledge_start(trade, at=T0, ok=True)
                ledger.mark_charging(trade, at=T0)
                for minute in range(1, readings + 1):
                    ledger.record_reading(trade, at=T0 + timedelta(minutes=minute), energy=minute * 1000)
                energy = readings * 1000
                ledger.settle(trade, SettlementRecord(
                    tier_energy=(0, 0, energy, 0), pile_tier_amounts=(0, 0, energy * 15, 0),
                    pile_total_amount=energy * 15, pile_total_energy=energy, meter_start=0, meter_end=energy,
                    started_at=T0, ended_at=T0 + timedelta(minutes=readings + 1), stop_reason=0x40),
                    T0 + timedelta(minutes=readings + 2))

        threads = [threading.Thread(target=drive, args=(*piles[i], share[i])) for i in range(workers)]
        barrier.wait()
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        out.put((shard, sessions, events_in(ledger) - before, elapsed))
    finally:
        ledger.close()


def run(server_url: str, shards: int, args: argparse.Namespace) -> tuple[float, float]:
    """(settled sessions/s, events/s) of one run on ``shards`` shards, each its own database and process."""
    ctx = mp.get_context("spawn")
    urls = [create_database(server_url, f"bench_cluster_{shards}_{i}") for i in range(shards)]
    barrier, out = ctx.Barrier(shards), ctx.Queue()
    procs = [ctx.Process(target=shard_worker, args=(i, url, args.sessions, args.workers, args.readings, barrier, out))
             for i, url in enumerate(urls)]
    for p in procs:
        p.start()
    results = [out.get(timeout=3600) for _ in procs]
    for p in procs:
        p.join()
    slowest = max(r[3] for r in results)
    return sum(r[1] for r in results) / slowest, sum(r[2] for r in results) / slowest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=150, help="sessions per shard (default 150)")
    parser.add_argument("--workers", type=int, default=2, help="threads per shard process, one pile each")
    parser.add_argument("--readings", type=int, default=5, help="meter readings per session")
    parser.add_argument("--runs", type=int, default=2, help="runs per shard count; the best is kept")
    args = parser.parse_args()
    server_url, _, in_use = resolve_servers(ROOT / "var" / "bench-cluster")
    try:
        best: dict[int, tuple[float, float]] = {}
        for shards in (1, 2):
            for _ in range(args.runs):
                sessions_s, events_s = run(server_url, shards, args)
                print(f"  {shards} shard(s): {sessions_s:,.1f} settled sessions/s, {events_s:,.0f} events/s", flush=True)
                if sessions_s > best.get(shards, (0.0, 0.0))[0]:
                    best[shards] = (sessions_s, events_s)
        for shards, (sessions_s, events_s) in sorted(best.items()):
            print(f"{shards} shard(s), best of {args.runs}: {sessions_s:,.1f} settled sessions/s, {events_s:,.0f} events/s")
        print(f"2-shard / 1-shard: {best[2][0] / best[1][0]:.2f} (sessions/s), "
              f"{best[2][1] / best[1][1]:.2f} (events/s); {args.sessions} sessions per shard, "
              f"{args.workers} workers per shard, {args.readings} readings per session")
    finally:
        for server in reversed(in_use):
            server.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
