"""The relay's publish rate: a backlog of ``--events`` ledger events (one charging session's meter
readings, 500 to a transaction, plus the world's few), then a relay started on it, timed until its
position reaches the head of every notification log. Reported in events/s, best of ``--runs``.

Each run measures, on one NATS server (R1) and on a 3-node cluster (the stream R3), the relay as it was
(one acknowledgement awaited per event: ``RELAY_WINDOW=1``, batches of 500) and as it is (a window of
``--window`` events, batches of 1000), and prints the ratio after/before of each.

``--shards 2``: two shard databases (``s1``, ``s2``) on the one stream, as in a sharded deployment. ``s2``'s
relay starts first on a backlog three times as long and is publishing throughout; ``s1``'s relay is timed
on its backlog meanwhile. Reported: ``s1``'s events/s, and ``s2``'s while ``s1`` ran. "Before" is a
window of 1, what a tenant shard's relay had while shards sharing the stream had to publish one at a time.

    python bench/relay.py [--events 5000] [--runs 1] [--window 500] [--nodes 1,3] [--shards 1|2]

The servers are started under ``var/bench-relay`` (the cluster's nodes under ``var/bench-relay/nats-cluster``);
docs/performance.md gives the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def running(relay: Relay) -> Iterator[Relay]:
    """``relay`` running in a thread of its own (an event loop each, as one process per shard would)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(relay.run(),), daemon=True)
    thread.start()
    try:
        yield relay
    finally:
        loop.call_soon_threadsafe(relay.stop)
        thread.join(timeout=30)
        relay.tracking.datastore.close()


def ledger_with_backlog(server_url: str, name: str, events: int) -> tuple[Ledger, dict[str, str]]:
    database_url = create_database(server_url, name)  # a new ledger id: the stream's old messages are not its
    env = eventsourcing_env(database_url)
    ledger = Ledger(env)
    backlog(ledger, events)
    return ledger, env


def caught_up_after(relay: Relay) -> float:
    started = time.perf_counter()
    while not relay.caught_up():
        time.sleep(0.01)
    return time.perf_counter() - started


def relay_backlog(server_url: str, relay_url: str, events: int, **relay_options: int) -> tuple[int, float]:
    """(events published, seconds) for one relay catching up a fresh backlog."""
    ledger, env = ledger_with_backlog(server_url, "bench_relay", events)
    try:
        with running(Relay(ledger.applications, env, relay_url, **relay_options)) as relay:
            elapsed = caught_up_after(relay)
        return relay.published, elapsed
    finally:
        ledger.close()


def relay_beside_another_shard(server_url: str, relay_url: str, events: int,
                               **relay_options: int) -> tuple[int, float, float, bool]:
    """(events ``s1``'s relay published, its seconds, ``s2``'s events/s meanwhile, whether ``s2`` was still
    publishing when ``s1`` caught up) for ``s1``'s relay on a fresh backlog while ``s2``'s relay publishes
    a backlog three times as long into the same stream."""
    other_ledger, other_env = ledger_with_backlog(server_url, "bench_relay_s2", 3 * events)
    ledger, env = ledger_with_backlog(server_url, "bench_relay_s1", events)
    try:
        with running(Relay(other_ledger.applications, other_env, relay_url, shard="s2", **relay_options)) as other:
            while other.published == 0:
                time.sleep(0.01)
            with running(Relay(ledger.applications, env, relay_url, shard="s1", **relay_options)) as relay:
                other_before = other.published
                elapsed = caught_up_after(relay)
                other_rate = (other.published - other_before) / elapsed
                busy = not other.caught_up()
        return relay.published, elapsed, other_rate, busy
    finally:
        ledger.close()
        other_ledger.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--window", type=int, default=500)
    parser.add_argument("--nodes", default="1,3", help="NATS deployments to measure: 1 (a server), 3 (a cluster)")
    parser.add_argument("--shards", type=int, choices=(1, 2), default=1,
                        help="2: time shard s1's relay while shard s2's relay publishes into the same stream")
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
                    beside = ""
                    if args.shards == 2:
                        published, seconds, other_rate, busy = relay_beside_another_shard(
                            server_url, url, args.events, **options)
                        beside = (f" (s2 meanwhile {other_rate:,.0f} events/s"
                                  f"{'' if busy else ', but s2 caught up before s1 did'})")
                    else:
                        published, seconds = relay_backlog(server_url, url, args.events, **options)
                    rate = published / seconds
                    best[deployment, way] = max(best.get((deployment, way), 0.0), rate)
                    print(f"  {deployment}, {way}: {published} events in {seconds:.2f} s: {rate:,.0f} events/s"
                          f"{beside}", flush=True)
        which = "shard s1's relay while shard s2's publishes" if args.shards == 2 else "relay"
        print(f"{which}: catch-up of {args.events} events, best of {args.runs}:")
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
