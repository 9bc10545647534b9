"""``chargeledger servers``, and the servers every other command runs against.

A command takes its database and NATS from ``DATABASE_URL`` / ``NATS_URL``; for whichever is unset
it starts the project's own Postgres and NATS under ``CHARGELEDGER_VAR`` (default ./var), or adopts
them if another process (``chargeledger servers``) already serves them (adapters/servers/resolve.py).
"""

from __future__ import annotations

import argparse
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from adapters.cli.shards import shard_database
from adapters.servers.nats_cluster import EmbeddedNatsCluster
from adapters.servers.resolve import nats_url_for, release, resolve_servers
from adapters.servers.nats_users import ADMIN, READER, ROLES


def var_dir() -> Path:
    path = Path(os.environ.get("CHARGELEDGER_VAR", "var")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def servers(*roles: str) -> Iterator[tuple[str, ...]]:
    """(database server URL, a NATS URL per role), with the embedded servers for whichever is not
    configured: started here, or adopted if another process (``chargeledger servers``) serves them.
    Only the servers this process started are stopped at the end. Each role's URL carries its own
    NATS user (adapters.servers.nats_users); the default is the admin's."""
    database_url, nats_url, in_use = resolve_servers(var_dir())
    try:
        yield database_url, *(nats_url_for(role, nats_url, in_use) for role in roles or (ADMIN,))
    finally:
        release(in_use)


def with_database(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A command's ``run(args)`` that needs ``args.database_url``: give it ours (embedded or configured),
    or its shard's when the command takes ``--shard`` (adapters/cli/shards.py)."""
    def command(args: argparse.Namespace) -> int:
        with servers(READER) as (database_url, nats_url):
            args.database_url, args.nats_url = database_url, nats_url
            if hasattr(args, "shard"):
                args.shard, args.database_url = shard_database(args, database_url)
            return int(run(args))
    return command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nats-cluster", type=int, default=0, metavar="N",
                        help="a JetStream cluster of N nodes (at least 2) under $CHARGELEDGER_VAR/nats-cluster "
                             "instead of the single NATS server; each role's NATS_URL names every node")


def run(args: argparse.Namespace) -> int:
    cluster = None
    if args.nats_cluster:
        cluster = EmbeddedNatsCluster(var_dir() / "nats-cluster", args.nats_cluster).start()
        os.environ["NATS_URL"] = cluster.url  # so the single server is not started
    try:
        return serve(cluster)
    finally:
        if cluster is not None:
            cluster.release()


def serve(cluster: EmbeddedNatsCluster | None) -> int:
    with servers(*ROLES) as (database_url, *role_urls):
        if cluster is not None:
            role_urls = [cluster.url_for(role) for role in ROLES]
        print(f"DATABASE_URL={database_url}", flush=True)
        for role, url in zip(ROLES, role_urls):  # each process gets the NATS user of its own role
            print(f"NATS_URL={url}  # {role}", flush=True)
        print("(Ctrl-C stops them)", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0
