"""``chargeledger shards list|place``, and ``--shard NAME``: which shard a follower role runs on.

Every follower role (``relay``, ``projections``, ``watchdog``, ``tcec-outbox``, ``audit``) follows one
database (``gateway`` serves every shard unless ``--shard`` limits it: adapters/cli/gateway.py). On a
sharded deployment (``CHARGELEDGER_SHARDS``) each runs once per shard, as a process of its own given
``--shard NAME`` (docs/shards.md says why one process per shard rather than one worker per shard in one
process). Without ``CHARGELEDGER_SHARDS``
there is one shard, ``main``, at ``DATABASE_URL``, and ``--shard`` may be left out.
"""

from __future__ import annotations

import argparse
import os
from uuid import UUID

from adapters.postgres.shards import MAIN, ShardConfigError, ShardDirectory, ShardMap
from domain.errors import NotFound


def add_shard_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shard", default=os.environ.get("CHARGELEDGER_SHARD"),
                        help="the shard to run on (a name in CHARGELEDGER_SHARDS; default CHARGELEDGER_SHARD; "
                             "required when more than one shard is configured)")


def shard_database(args: argparse.Namespace, database_url: str) -> tuple[str, str]:
    """(shard name, its database URL) for a role given ``--shard`` (``database_url``: the one the role
    resolved, embedded or ``DATABASE_URL``, which is shard ``main`` when no shards are configured).
    Refused with a clear message when the shard is unknown or, with several shards, not named."""
    shard = getattr(args, "shard", None)
    if not os.environ.get("CHARGELEDGER_SHARDS", "").strip():
        if shard not in (None, MAIN):
            raise SystemExit(f"--shard {shard}: CHARGELEDGER_SHARDS is not set (the one shard is {MAIN})")
        return MAIN, database_url
    try:
        shards = ShardMap.from_env(os.environ)
    except ShardConfigError as error:
        raise SystemExit(str(error)) from None
    if shard is None:
        if not shards.single:
            raise SystemExit(f"name the shard this process runs on: --shard {{{','.join(shards.names)}}}")
        shard = shards.names[0]
    if shard not in shards.urls:
        raise SystemExit(f"--shard {shard}: the shards are {', '.join(shards.names)}")
    return shard, shards.urls[shard]


def tenant_database(tenant_id: UUID, database_url: str) -> tuple[str, str]:
    """(shard name, its database URL) of a tenant's shard, for a command given ``--tenant``
    (``chargeledger peers``): the one database without ``CHARGELEDGER_SHARDS``; refused with a clear
    message for a tenant placed on no shard."""
    if not os.environ.get("CHARGELEDGER_SHARDS", "").strip():
        return MAIN, database_url
    try:
        shards = ShardMap.from_env(os.environ)
        return (name := ShardDirectory(shards).shard_of_tenant(tenant_id)), shards.url(name)
    except ShardConfigError as error:
        raise SystemExit(str(error)) from None
    except NotFound:
        raise SystemExit(f"tenant {tenant_id} is on no shard (chargeledger shards list; "
                         "chargeledger shards place TENANT --shard NAME)") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="shards_command", required=True)
    sub.add_parser("list", help="the shards, and the tenants and piles placed on each")
    place = sub.add_parser("place", help="record where an existing tenant lives (it never moves)")
    place.add_argument("tenant", type=UUID)
    place.add_argument("--shard", required=True, help="the shard the tenant's events are on")


def run(args: argparse.Namespace) -> int:
    """The shard map (``CHARGELEDGER_SHARDS``) and its directory on the first shard."""
    try:
        shards = ShardMap.from_env(os.environ)
    except ShardConfigError as error:
        raise SystemExit(str(error)) from None
    directory = ShardDirectory(shards)
    if args.shards_command == "list":
        load = directory.load()
        for i, name in enumerate(shards.names):
            print(f"{name:12} tenants {load[f'{name}.tenants']:>6}  piles {load[f'{name}.piles']:>8}"
                  + ("  (directory)" if i == 0 and not shards.single else ""))
        return 0
    from adapters.postgres.env import eventsourcing_env
    from domain.ledger import Ledger

    ledger = Ledger(eventsourcing_env(shards.url(args.shard), pool_size=1, max_overflow=1))
    try:
        ledger.registry.tenant(args.tenant)  # NotFound unless its events are on that shard
    finally:
        ledger.close()
    directory.place(args.tenant, args.shard, "chargeledger shards place")
    print(f"tenant {args.tenant} is on shard {args.shard}")
    return 0
