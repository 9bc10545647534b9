"""``chargeledger tcec-outbox``: the T/CEC pushes to peers, from the ledger's logs through the outbox
(docs/interconnect.md, "The outbox"), and every ``--pull-interval`` the catalogue of each infrastructure peer. Needs ``CHARGELEDGER_INTERCONNECT_KEYS`` (the peers' secrets)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from datetime import timedelta

from adapters.cli import observability
from adapters.cli.servers import with_database
from adapters.cli.shards import add_shard_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between two steps (default 1)")
    parser.add_argument("--retry-first", type=float, default=30.0,
                        help="seconds before a failed push is sent again; doubled per failure (default 30)")
    parser.add_argument("--retry-longest", type=float, default=3600.0,
                        help="the longest pause between two attempts, seconds (default 3600)")
    parser.add_argument("--attempts", type=int, default=48, help="attempts before a push is given up (default 48)")
    parser.add_argument("--pull-interval", type=float, default=600.0,
                        help="seconds between two pulls of each infrastructure peer's catalogue (default 600; 0: none)")
    observability.add_arguments(parser)
    add_shard_argument(parser)


@with_database
def run(args: argparse.Namespace) -> int:
    from psycopg_pool import ConnectionPool

    from adapters.interconnect.outbox.role import OutboxRole
    from adapters.interconnect.outbox.sender import RetryPolicy
    from adapters.cli.peers import sealing_box
    from adapters.interconnect.store.directory import Store
    from adapters.interconnect.store.schema import create_schema
    from adapters.postgres.env import eventsourcing_env
    from adapters.servers.resolve import redacted
    from domain.ledger import Ledger

    box = sealing_box()
    if box is None:
        return 2
    if (args.interval <= 0 or args.retry_first <= 0 or args.retry_longest < args.retry_first or args.attempts < 1
            or args.pull_interval < 0):
        print("--interval and --retry-first are > 0, --retry-longest >= --retry-first, --attempts >= 1, "
              "--pull-interval >= 0", file=sys.stderr)
        return 2
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    policy = RetryPolicy(timedelta(seconds=args.retry_first), timedelta(seconds=args.retry_longest), args.attempts)
    ledger = Ledger(eventsourcing_env(args.database_url))
    with ConnectionPool(args.database_url, min_size=1, max_size=4, open=True) as pool:
        create_schema(pool)
        pull_every = timedelta(seconds=args.pull_interval) if args.pull_interval else None
        role = OutboxRole(ledger, args.database_url, Store(pool, box), policy=policy, pull_every=pull_every)
        print(f"T/CEC outbox every {args.interval:g} s (Postgres {redacted(args.database_url)})", flush=True)
        try:
            with observability.serving(args, "tcec-outbox", database_url=args.database_url,
                                       collectors=observability.outbox_collectors(args.database_url,
                                                                                  ledger.applications)):
                role.run_forever(stopping, args.interval)
        except KeyboardInterrupt:
            pass
        finally:
            role.close()
            ledger.close()
    return 0
