"""``chargeledger gateway``: the YKC pile gateway on TCP.

On a sharded deployment (``CHARGELEDGER_SHARDS``) one gateway serves the piles of every shard
(:class:`pile_link.shards.ShardedGateway`: a login routes by its pile number); ``--shard NAME`` limits
it to one shard's piles. Without shards configured it is the one gateway of shard ``main``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from contextlib import ExitStack, nullcontext
from typing import Any

from adapters.cli import observability
from adapters.cli.relay import running_relay
from adapters.cli.servers import servers
from adapters.cli.shards import add_shard_argument, shard_database
from adapters.postgres.env import eventsourcing_env
from adapters.postgres.shards import ShardConfigError, ShardDirectory, ShardMap
from adapters.servers.resolve import redacted
from adapters.servers.nats_users import GATEWAY, RELAY
from domain.ledger import Ledger


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=os.environ.get("YKC_HOST", "0.0.0.0"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("YKC_PORT", "8767")))
    parser.add_argument("--no-relay", dest="relay", action="store_false",
                        help="run no relay in this process (run `chargeledger relay` instead); by default one "
                             "runs, publishing only while it holds the leader's lock")
    parser.add_argument("--no-watchdog", action="store_true",
                        help="leave deadlines and wallet follow-ups to `chargeledger watchdog` processes")
    observability.add_arguments(parser)
    add_shard_argument(parser)  # limits it to one shard's piles; by default it serves every shard (docs/shards.md)


def every_shard(args: argparse.Namespace) -> ShardMap | None:
    """The shard map when this gateway serves every shard (several configured, ``--shard`` not given)."""
    if getattr(args, "shard", None) is not None or not os.environ.get("CHARGELEDGER_SHARDS", "").strip():
        return None
    try:
        shards = ShardMap.from_env(os.environ)
    except ShardConfigError as error:
        raise SystemExit(str(error)) from None
    return None if shards.single else shards


def run(args: argparse.Namespace) -> int:
    """The YKC gateway, by default with a relay beside it (a standby while another relay leads) so
    commands reach piles through NATS even where no ``chargeledger relay`` runs; ``--no-relay``
    leaves the relay to other processes."""
    with servers(GATEWAY, RELAY) as (database_url, nats_url, relay_url):
        if (shards := every_shard(args)) is not None:
            return run_sharded(args, shards, nats_url, relay_url)
        shard, database_url = shard_database(args, database_url)
        ledger = Ledger(eventsourcing_env(database_url))
        try:
            with running_relay(ledger, database_url, relay_url, shard) if args.relay else nullcontext() as relay:
                print(f"YKC gateway on {args.host}:{args.port} (Postgres {redacted(database_url)}, "
                      f"NATS {redacted(nats_url)}), {'with a relay' if args.relay else 'no relay (--no-relay)'}",
                      flush=True)
                asyncio.run(serve(args, ledger, database_url, nats_url, relay))
        except KeyboardInterrupt:
            pass
        finally:
            ledger.close()
    return 0


async def serve(args: argparse.Namespace, ledger: Ledger, database_url: str, nats_url: str, relay: Any) -> None:
    """The gateway until cancelled, with its metrics (and its relay's) on ``--metrics-port``."""
    from pile_link.runtime import tuned
    from pile_link.gateway import Gateway

    gateway = Gateway(ledger, database_url=database_url, nats_url=nats_url, host=args.host, port=args.port,
                      watchdog=not args.no_watchdog)
    collectors = observability.gateway_collectors(gateway)
    if relay is not None:
        collectors += observability.relay_collectors(relay)

    def state() -> dict[str, Any]:
        return {"gateway_id": gateway.gateway_id, "piles": len(gateway.links),
                **({"relay": "leader" if relay.is_leader else "standby"} if relay is not None else {})}

    await gateway.start()
    full_collections = asyncio.create_task(tuned(gateway), name="runtime")
    try:
        with observability.serving(args, "gateway", database_url=database_url, nats_url=nats_url, state=state,
                                   collectors=collectors):
            await asyncio.Event().wait()
    finally:
        full_collections.cancel()
        await gateway.stop()


def run_sharded(args: argparse.Namespace, shards: ShardMap, nats_url: str, relay_url: str) -> int:
    """One gateway for every shard: a Ledger per shard and, unless ``--no-relay``, a relay per shard beside it."""
    ledgers = {name: Ledger(eventsourcing_env(url)) for name, url in shards.urls.items()}
    try:
        with ExitStack() as relays:
            if args.relay:
                for name, ledger in ledgers.items():
                    relays.enter_context(running_relay(ledger, shards.urls[name], relay_url, name))
            print(f"YKC gateway on {args.host}:{args.port} for shards {', '.join(shards.names)} (NATS "
                  f"{redacted(nats_url)}), {'with a relay per shard' if args.relay else 'no relay (--no-relay)'}",
                  flush=True)
            asyncio.run(serve_sharded(args, ledgers, shards, nats_url))
    except KeyboardInterrupt:
        pass
    finally:
        for ledger in ledgers.values():
            ledger.close()
    return 0


async def serve_sharded(args: argparse.Namespace, ledgers: dict[str, Ledger], shards: ShardMap,
                        nats_url: str) -> None:
    from adapters.metrics import figures
    from adapters.metrics.figures import Live
    from pile_link.runtime import tuned
    from pile_link.shards import ShardedGateway

    gateway = ShardedGateway(ledgers, shards.urls, ShardDirectory(shards), nats_url=nats_url, host=args.host,
                             port=args.port, watchdog=not args.no_watchdog)
    collectors = [Live(lambda: figures.gateway(len(gateway.links), len(gateway.connections), dict(gateway.stats),
                                               gateway.queue_depths()))]

    def state() -> dict[str, Any]:
        return {"gateway_id": gateway.gateway_id, "piles": len(gateway.links), "shards": list(gateway.engines)}

    await gateway.start()
    full_collections = asyncio.create_task(tuned(gateway), name="runtime")
    try:
        with observability.serving(args, "gateway", database_url=shards.directory_url, nats_url=nats_url,
                                   state=state, collectors=collectors):
            await asyncio.Event().wait()
    finally:
        full_collections.cancel()
        await gateway.stop()
