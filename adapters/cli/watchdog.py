"""``chargeledger watchdog``: session deadlines and wallet follow-ups on their own."""

from __future__ import annotations

import argparse
import threading

from adapters.cli import observability
from adapters.cli.servers import servers
from adapters.cli.shards import add_shard_argument, shard_database
from adapters.postgres.env import eventsourcing_env
from adapters.servers.resolve import redacted
from adapters.servers.nats_users import READER
from domain.ledger import Ledger


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between sweeps")
    observability.add_arguments(parser)
    add_shard_argument(parser)


def run(args: argparse.Namespace) -> int:
    """The watchdog on its own: session deadlines and wallet follow-ups, until Ctrl-C or SIGTERM."""
    import signal

    from adapters.followers.watchdog import run_role

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    with servers(READER) as (database_url, _):
        shard, database_url = shard_database(args, database_url)
        print(f"watchdog sweeping every {args.interval:g} s (shard {shard}, Postgres {redacted(database_url)})",
              flush=True)
        try:
            with observability.serving(args, "watchdog", database_url=database_url,
                                       collectors=observability.watchdog_collectors(database_url)):
                run_role(lambda: Ledger(eventsourcing_env(database_url)), database_url, stopping, args.interval)
        except KeyboardInterrupt:
            pass
    return 0
