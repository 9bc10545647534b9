"""The relay's publish rate: a backlog of ``--events`` ledger events (one charging session's meter
readings, 500 to a transaction, plus the world's few), then a relay started on it, timed until its
position reaches the head of every notification log. Reported in events/s, best of ``--runs``.

Each run measures, on one NATS server (R1) and on a 3-node cluster (the stream R3), the relay as it was
(one acknowledgement awaited per event: ``RELAY_WINDOW=1``, batches of 500) and as it is (a window of
``--window`` pending acknowledgements, batches of 1000), and prints the ratio after/before of each.

    python bench/relay.py [--events 5000] [--runs 1] [--window 500] [--nodes 1,3]

The servers are started under ``var/bench-relay`` (the cluster's nodes under ``var/bench-relay/nats-cluster``);
docs/performance.md gives the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.servers.nats_cluster import EmbeddedNatsCluster  # noqa: E402
from adapters.servers.nats_users import RELAY  # noqa: E402
from adapters.postgres.env import eventsourcing_env  # noqa: E402
from adapters.followers.relay.publisher import Relay  # noqa: E402
from adapters.servers.postgres_server import create_database  # noqa: E402
from adapters.servers.resolve import nats_url_for, resolve_servers  # noqa: E402
from domain.ledger import Ledger  # noqa: E402

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=timezone.utc)
PRICES = {tier: {"electricity": 70000, "service": 40000} for tier in ("sharp", "peak", "flat", "valley")}


def backlog(ledger: Ledger, readings: int) -> None:
    tenant = ledger.create_tenant("Bench Operator", "bench")
    station = ledger.create_station(tenant, "Bench Station", "1 Bench Road", 31.2, 121.5, "bench")
    ledger.register_pile(station, "97000000000001", "DC", 2, "bench")
    tariff = ledger.create_tariff(tenant, "flat", PRICES, [2] * 48, "bench")
    ledger.assign_tariff(tariff, "bench", station_id=station)
    wallet = ledger.open_wallet(tenant, "bench-driver", "bench")
    ledger.top_up(wallet, key="topup:bench", amount=100_00, provider="cash", payment_ref="bench")
    trade_no = ledger.request_start(pile_no="97000000000001", gun_no=1, wallet_id=wallet, hold_fen=5_00, at=T0,
                                    author="bench")
    ledger.acknowledge_start(trade_no, at=T0, ok=True)
    ledger.mark_charging(trade_no, at=T0)
    for first in range(0, readings, 500):
        ledger.record_readings([{"trade_no": trade_no, "at": T0 + timedelta(seconds=i + 1), "energy": i + 1}
                                for i in range(first, min(readings, first + 500))])


def relay_backlog(server_url: str, relay_url: str, events: int, **relay_options: int) -> tuple[int, float]:
    """(events published, seconds) for one relay catching up a fresh backlog."""
    database_url = create_database(server_url, "bench_relay")  # a new ledger id: the stream's old messages are not its
    env = eventsourcing_env(database_url)
    ledger = Ledger(env)
    try:
        backlog(ledger, events)
        relay = Relay(ledger.applications, env, relay_url, **relay_options)
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_until_complete, args=(relay.run(),), daemon=True)
        started = time.perf_counter()
        thread.start()
        while not relay.caught_up():
            time.sleep(0.01)
        elapsed = time.perf_counter() - started
        loop.call_soon_threadsafe(relay.stop)
        thread.join(timeout=30)
        relay.tracking.datastore.close()
        return relay.published, elapsed
    finally:
        ledger.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--window", type=int, default=500)
    parser.add_argument("--nodes", default="1,3", help="NATS deployments to measure: 1 (a server), 3 (a cluster)")
    args = parser.parse_args()
    server_url, admin_url, in_use = resolve_servers(ROOT / "var" / "bench-relay")
    deployments = {"1 node (R1)": nats_url_for(RELAY, admin_url, in_use)}
    cluster = None
    try:
        if "3" in args.nodes.split(","):
            cluster = EmbeddedNatsCluster(ROOT / "var" / "bench-relay" / "nats-cluster", 3).start()
            deployments["3 nodes (R3)"] = cluster.url_for(RELAY)
        if "1" not in args.nodes.split(","):
            del deployments["1 node (R1)"]
        ways = {"before (one ack at a time)": {"window": 1, "batch_size": 500},
                f"after (window {args.window})": {"window": args.window, "batch_size": 1000}}
        best: dict[tuple[str, str], float] = {}
        for deployment, url in deployments.items():
            for way, options in ways.items():
                for _ in range(args.runs):
                    published, seconds = relay_backlog(server_url, url, args.events, **options)
                    rate = published / seconds
                    best[deployment, way] = max(best.get((deployment, way), 0.0), rate)
                    print(f"  {deployment}, {way}: {published} events in {seconds:.2f} s: {rate:,.0f} events/s",
                          flush=True)
        print(f"relay catch-up, {args.events} events, best of {args.runs}:")
        for deployment in deployments:
            before, after = (best[deployment, way] for way in ways)
            print(f"  {deployment}: before {before:,.0f} events/s, after {after:,.0f} events/s, "
                  f"after/before {after / before:.2f}")
    finally:
        if cluster is not None:
            cluster.stop()
        for server in reversed(in_use):
            server.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
