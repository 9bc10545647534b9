"""``chargeledger relay``, and a relay in a thread beside another role (the gateway, the demo)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from adapters.cli import observability
from adapters.cli.servers import servers
from adapters.cli.shards import add_shard_argument, shard_database
from adapters.followers.relay.publisher import Relay, keep_running
from adapters.postgres.env import eventsourcing_env
from adapters.postgres.shards import MAIN
from adapters.servers.resolve import redacted
from adapters.servers.nats_users import RELAY
from adapters.servers.outage import when_up
from domain.ledger import Ledger

log = logging.getLogger("chargeledger")


@contextmanager
def running_relay(ledger: Ledger, database_url: str, nats_url: str, shard: str = MAIN) -> Iterator[Relay]:
    """A relay in a thread of its own beside the caller (a gateway, the demo): the leader if it takes
    the lock, else a standby; it retries every failure, and should its loop ever end unasked, the
    thread logs it and starts it again (adapters.followers.relay.publisher.keep_running)."""
    relay = Relay(ledger.applications, eventsourcing_env(database_url), nats_url, shard=shard)
    thread = threading.Thread(target=keep_running, args=(relay,), name="relay", daemon=True)
    thread.start()
    try:
        yield relay
    finally:
        relay.stop()
        thread.join(timeout=10)
        relay.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``chargeledger relay [--shard NAME]``: one relay per shard (its subjects qualified unless ``main``), and the
    metrics' arguments."""
    add_shard_argument(parser)
    observability.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """The relay: publishes while it holds the leader's lock, a standby otherwise (any number may run)."""
    with servers(RELAY) as (database_url, nats_url):
        shard, database_url = shard_database(args, database_url)

        def start() -> tuple[Ledger, Relay]:
            ledger = Ledger(eventsourcing_env(database_url))
            try:
                return ledger, Relay(ledger.applications, eventsourcing_env(database_url), nats_url, shard=shard)
            except BaseException:
                ledger.close()
                raise

        try:
            ledger, relay = when_up("relay: database", log, start)  # type: ignore[misc]
        except KeyboardInterrupt:
            return 0
        print(f"relay for ledger {relay.ledger_id} (shard {shard}, Postgres {redacted(database_url)}, NATS {redacted(nats_url)}): "
              "publishes while it holds the leader's lock, standby otherwise", flush=True)
        try:
            with observability.serving(args, "relay", database_url=database_url, nats_url=nats_url,
                                       state=lambda: {"leader": relay.is_leader},
                                       collectors=observability.relay_collectors(relay)):
                asyncio.run(relay.run())
        except KeyboardInterrupt:
            pass
        finally:
            relay.close()
            ledger.close()
    return 0
