"""``chargeledger peers add|outbound|list``: a tenant's T/CEC peer platforms (docs/interconnect.md).

``add`` creates a peer (or changes its settings, keeping its secrets unless ``--new-secrets``) and, for
new secrets or with ``--show-inbound``, prints the four secrets we issued it, to hand to its engineers. ``outbound``
reads from stdin the four the peer issued us (a JSON object with OperatorSecret, DataSecret,
DataSecretIV, SigSecret: secrets never go on a command line, where ``ps`` shows them).
Needs ``CHARGELEDGER_INTERCONNECT_KEYS`` (the keys that seal them at rest).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from uuid import UUID

from adapters.cli.servers import with_database
from adapters.interconnect.store.peers import KEYS_SETTING, Peers
from adapters.interconnect.store.schema import create_schema
from adapters.interconnect.tcec.dialect import Dialect
from adapters.interconnect.tcec.interfaces import Role
from adapters.interconnect.tcec.peer import Credentials
from adapters.payments.config import SecretBox
from domain.errors import DomainError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    operations = parser.add_subparsers(dest="operation", required=True, metavar="{add,outbound,list}")
    add = operations.add_parser("add", help="create or change a peer; prints the secrets we issued it when new")
    add.add_argument("operator_id", help="the peer's OperatorID (9 letters or digits)")
    add.add_argument("--tenant", type=UUID, required=True)
    add.add_argument("--our-operator-id", required=True, help="our OperatorID, as this peer knows us")
    add.add_argument("--base-url", required=True, help="the peer's base URL, e.g. https://evcs.example.com/evcs/v1")
    add.add_argument("--role", choices=[r.value for r in Role], required=True)
    add.add_argument("--dialect", choices=[d.value for d in Dialect], default=Dialect.TCEC2016.value,
                     help="the field spelling we send it (default: the 2016 standard's)")
    add.add_argument("--name", default="")
    add.add_argument("--token-lifetime", type=int, default=7200, help="seconds, for the tokens we issue it")
    add.add_argument("--disabled", action="store_true", help="configured, but its calls are refused")
    add.add_argument("--show-inbound", action="store_true", help="print the secrets we issued it again")
    add.add_argument("--new-secrets", action="store_true",
                     help="issue it four new secrets (a rotation, or a leak): its tokens stop working at once")
    add.set_defaults(operate=_add)
    outbound = operations.add_parser("outbound", help="store the secrets the peer issued us (JSON on stdin)")
    outbound.add_argument("operator_id")
    outbound.add_argument("--tenant", type=UUID, required=True)
    outbound.set_defaults(operate=_outbound)
    listing = operations.add_parser("list", help="a tenant's peers (no secrets)")
    listing.add_argument("--tenant", type=UUID, required=True)
    listing.set_defaults(operate=_list)


@with_database
def run(args: argparse.Namespace) -> int:
    from psycopg_pool import ConnectionPool

    keys = os.environ.get(KEYS_SETTING, "")
    if not keys:
        print(f"set {KEYS_SETTING} (kid=base64 of 32 random bytes): it seals the peers' secrets", file=sys.stderr)
        return 2
    with ConnectionPool(args.database_url, min_size=1, max_size=1, open=True) as pool:
        create_schema(pool)
        try:
            return int(args.operate(args, Peers(pool, SecretBox.from_setting(keys))))
        except (DomainError, ValueError, KeyError, LookupError) as error:
            print(getattr(error, "message", None) or error, file=sys.stderr)
            return 2


def _add(args: argparse.Namespace, peers: Peers) -> int:
    new = not any(p.operator_id == args.operator_id for p in peers.of_tenant(args.tenant))
    peer = peers.configure(args.tenant, args.operator_id, our_operator_id=args.our_operator_id,
                           base_url=args.base_url, role=args.role, dialect=args.dialect, name=args.name,
                           token_lifetime=args.token_lifetime, enabled=not args.disabled,
                           inbound=Credentials.generate() if args.new_secrets else None)
    print(f"{'created' if new else 'changed'} peer {peer.operator_id} ({peer.role.value}, {peer.dialect.value}) "
          f"of tenant {peer.tenant_id}")
    if new or args.show_inbound or args.new_secrets:
        print("secrets we issued it (give them to the peer once; they stay sealed here):")
        print(json.dumps({"OperatorID": peer.operator_id, **peer.inbound.as_dict()}, indent=2))
    return 0


def _outbound(args: argparse.Namespace, peers: Peers) -> int:
    try:
        value = json.loads(sys.stdin.read())
    except json.JSONDecodeError:
        raise ValueError("stdin is not JSON: give the peer's secrets as a JSON object") from None
    peer = peers.set_outbound(args.tenant, args.operator_id, Credentials.from_dict(value))
    print(f"stored the secrets {peer.operator_id} issued us; its token will be fetched on the first call")
    return 0


def _list(args: argparse.Namespace, peers: Peers) -> int:
    for peer in peers.of_tenant(args.tenant):
        print(f"{peer.operator_id}  {peer.role.value:14} {peer.dialect.value:8} "
              f"{'enabled' if peer.enabled else 'disabled':8} outbound={'set' if peer.outbound else 'missing':7} "
              f"{peer.base_url}  {peer.name}")
    return 0
