"""Settled sessions/s and events/s on 1 and 2 tenant shards, in process and through 1 and 2 gateways (issue 15).

Two figures in one run, each on 1 and 2 shards, every shard a database of its own on the bench's one
Postgres server (docs/shards.md, docs/performance.md, "bench/cluster.py: shards and gateways"):

* **ledger only** (``--part ledger``): the ledger's commands in process, no gateway. Each shard is
  driven by a process of its own (so two shards use both cores): a tenant with a station, its piles,
  a tariff and a wallet per pile, then ``--sessions`` sessions per shard, each started (hold and
  session in one transaction), acknowledged, charging, ``--readings`` meter readings, settled
  (session, then the wallet's capture), by ``--workers`` threads per process, one pile each.
* **through the gateways** (``--part gateways``, bench/cluster_gateways.py): the deployment's own
  processes (a relay per shard, 1 or 2 ``chargeledger serve --role gateway``) and, per shard, a
  process of drivers and scripted YKC piles on TCP (bench/cluster_fleet.py): each session started
  through the ledger, sent to its pile through NATS by the gateway holding it (0x34), charged (0x33,
  realtime frames) and settled by the pile's transaction record (0x3B, confirmed 0x40 once committed).
  ``--gateway-sessions`` per shard over ``--piles`` piles per shard.

Every process of a run starts at one barrier; a run's time is the slowest shard's. The figures to
quote are the ratios of the same run: 2-shard / 1-shard, and 2-gateway / 1-gateway. Everything shares
one machine here (2 cores, one Postgres server), so the ratios say what is bought before the shared
cores and the one database server are the limit.

    python bench/cluster.py                 # the default size: about 3 minutes
    python bench/cluster.py --part gateways --gateway-sessions 40 --piles 4       # a quick look
    python bench/cluster.py --sessions 600 --workers 4 --runs 3 \
        --gateway-sessions 600 --piles 16 --gateway-runs 3                      # the full size
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.postgres.env import eventsourcing_env  # noqa: E402
from adapters.servers.postgres_server import EmbeddedPostgres, create_database  # noqa: E402
from adapters.servers.resolve import release, resolve_servers  # noqa: E402
from bench.cluster_fleet import PRICES, events_in  # noqa: E402
from bench.cluster_gateways import MAX_CONNECTIONS, Deployment, Figures, measure, place_shards  # noqa: E402
from domain.ledger import Ledger  # noqa: E402
from domain.session import SettlementRecord  # noqa: E402

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=timezone.utc)


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
    """(settled sessions/s, events/s) of one in-process run on ``shards`` shards, each its own database and process."""
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


def ledger_part(server_url: str, args: argparse.Namespace) -> None:
    """The ledger-only figure: the commands in process, 1 then 2 shards, the best of ``--runs`` each."""
    print(f"ledger only (commands in process, no gateway): {args.sessions} sessions per shard, "
          f"{args.workers} workers per shard, {args.readings} readings per session", flush=True)
    best: dict[int, tuple[float, float]] = {}
    for shards in (1, 2):
        for _ in range(args.runs):
            sessions_s, events_s = run(server_url, shards, args)
            print(f"  {shards} shard(s): {sessions_s:,.1f} settled sessions/s, {events_s:,.0f} events/s", flush=True)
            if sessions_s > best.get(shards, (0.0, 0.0))[0]:
                best[shards] = (sessions_s, events_s)
    for shards, (sessions_s, events_s) in sorted(best.items()):
        print(f"{shards} shard(s), best of {args.runs}: {sessions_s:,.1f} settled sessions/s, {events_s:,.0f} events/s")
    print(f"2-shard / 1-shard: {best[2][0] / best[1][0]:.2f} (sessions/s), {best[2][1] / best[1][1]:.2f} (events/s)",
          flush=True)


def gateway_part(server_url: str, nats_url: str, servers: list[Any], args: argparse.Namespace) -> None:
    """Shards 1 and 2, each through 1 and 2 gateway processes, the best of ``--gateway-runs`` each."""
    print(f"through the gateways (relay, NATS, 0x34, 0x3B, 0x40): {args.gateway_sessions} sessions per shard, "
          f"{args.piles} piles per shard, {args.readings} readings per session", flush=True)
    best: dict[tuple[int, int], Figures] = {}
    for shards in (1, 2):
        deployment = Deployment(place_shards(server_url, shards, args.piles), nats_url, servers,
                                ROOT / "var" / "bench-cluster" / "logs")
        try:
            deployment.start_relays()
            for _ in range(args.gateway_runs):  # 1, 2, 1, 2 gateways: a drift in the machine's load hits both
                for gateways in (1, 2):
                    figures = measure(deployment, gateways, args.gateway_sessions, args.readings)
                    print(f"  {shards} shard(s), {gateways} gateway(s): {figures.sessions_s:,.1f} settled sessions/s, "
                          f"{figures.events_s:,.0f} events/s; CPU ms per session: "
                          + ", ".join(f"{role} {figures.cpu_ms_per_session(role):.1f}" for role in figures.cpu
                                      if role != "machine")
                          + f"; {figures.cores_busy:.2f} of {os.cpu_count()} cores busy", flush=True)
                    if (shards, gateways) not in best or figures.sessions_s > best[shards, gateways].sessions_s:
                        best[shards, gateways] = figures
        finally:
            deployment.close()
    for (shards, gateways), figures in sorted(best.items()):
        print(f"{shards} shard(s), {gateways} gateway(s), best of {args.gateway_runs}: "
              f"{figures.sessions_s:,.1f} settled sessions/s, {figures.events_s:,.0f} events/s")
    for gateways in (1, 2):
        print(f"2-shard / 1-shard, {gateways} gateway(s): {ratio(best[2, gateways], best[1, gateways])}")
    for shards in (1, 2):
        print(f"2-gateway / 1-gateway, {shards} shard(s): {ratio(best[shards, 2], best[shards, 1])}")


def ratio(a: Figures, b: Figures) -> str:
    return f"{a.sessions_s / b.sessions_s:.2f} (sessions/s), {a.events_s / b.events_s:.2f} (events/s)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("all", "ledger", "gateways"), default="all",
                        help="the ledger-only figure, the one through the gateways, or both (default)")
    parser.add_argument("--sessions", type=int, default=150, help="in process: sessions per shard (default 150)")
    parser.add_argument("--workers", type=int, default=2, help="in process: threads per shard process, one pile each")
    parser.add_argument("--readings", type=int, default=5, help="meter readings per session")
    parser.add_argument("--runs", type=int, default=2, help="in process: runs per shard count; the best is kept")
    parser.add_argument("--gateway-sessions", type=int, default=200,
                        help="through the gateways: sessions per shard (default 200)")
    parser.add_argument("--piles", type=int, default=8, help="through the gateways: piles per shard (default 8)")
    parser.add_argument("--gateway-runs", type=int, default=2,
                        help="through the gateways: runs per shard and gateway count; the best is kept (default 2)")
    args = parser.parse_args()
    server_url, nats_url, in_use = servers(ROOT / "var" / "bench-cluster")
    print(f"{os.cpu_count()} cores; load average {load()} at the start", flush=True)
    try:
        if args.part in ("all", "ledger"):
            ledger_part(server_url, args)
        if args.part in ("all", "gateways"):
            gateway_part(server_url, nats_url, in_use, args)
    finally:
        release(in_use)
    print(f"load average {load()} at the end")
    return 0


def servers(var: Path) -> tuple[str, str, list[Any]]:
    """The bench's Postgres and NATS: ``DATABASE_URL`` / ``NATS_URL``, else the embedded ones under
    ``var``, the Postgres started with room for the gateway part's processes (MAX_CONNECTIONS; set as
    ``DATABASE_URL`` for the rest of the run, so :func:`resolve_servers` leaves it alone)."""
    started: list[Any] = []
    if not os.environ.get("DATABASE_URL"):
        started.append(EmbeddedPostgres(var / "postgres", max_connections=MAX_CONNECTIONS).start())
        os.environ["DATABASE_URL"] = started[-1].url
    try:
        server_url, nats_url, others = resolve_servers(var)
    except BaseException:
        release(started)
        raise
    return server_url, nats_url, started + others


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    sys.exit(main())
