"""``chargeledger peers add|outbound|list|station|outbox|disputes|pull``: a tenant's T/CEC peer platforms
(docs/interconnect.md).

``add`` creates a peer (or changes its settings, keeping its secrets unless ``--new-secrets``) and, for
new secrets or with ``--show-inbound``, prints the four secrets we issued it, to hand to its engineers. ``outbound``
reads from stdin the four the peer issued us (a JSON object with OperatorSecret, DataSecret,
DataSecretIV, SigSecret: secrets never go on a command line, where ``ps`` shows them). ``station`` sets
what T/CEC's StationInfo asks of a station beyond the registry (and enqueues the station's new entry for
the tenant's regulator peers, in the same transaction); ``outbox`` shows each peer's link
health (pushes pending, retrying, delivered, given up, the last delivery, the lag, the last call
answered) and ``--rows`` its pushes; ``disputes`` the orders peers disputed; ``pull`` fetches an
infrastructure peer's catalogue now (its stations, statuses and prices, for our drivers). Needs
``CHARGELEDGER_INTERCONNECT_KEYS`` (the keys that seal them at rest). Every operation runs on the
``--tenant``'s shard (``CHARGELEDGER_SHARDS``, docs/shards.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from uuid import UUID

from adapters.cli.servers import with_database
from adapters.cli.shards import tenant_database
from adapters.interconnect.outbox import stations
from adapters.interconnect.store.directory import Store
from adapters.interconnect.store.peers import KEYS_SETTING
from adapters.interconnect.store.profiles import StationProfile
from adapters.interconnect.store.schema import create_schema
from adapters.interconnect.tcec.dialect import Dialect
from adapters.interconnect.tcec.interfaces import Role
from adapters.interconnect.tcec.peer import Credentials
from adapters.payments.config import SecretBox
from adapters.postgres.peer_links import peers_with_health
from domain.clock import utcnow
from domain.errors import DomainError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    operations = parser.add_subparsers(dest="operation", required=True,
                                       metavar="{add,outbound,list,station,outbox,disputes,pull}")
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
    add.add_argument("--status-interval", type=int, default=60,
                     help="seconds between the charge status pushes of its sessions (0: none; default 60)")
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
    station = operations.add_parser("station", help="a station's T/CEC details (area code, service telephone ...)")
    station.add_argument("station_id", type=UUID)
    station.add_argument("--tenant", type=UUID, required=True)
    station.add_argument("--area-code", required=True, help="6 digits, GB/T 2260 (e.g. 310115)")
    station.add_argument("--service-tel", default="")
    station.add_argument("--station-type", type=int, default=1, help="T/CEC StationType (1 public, 50 private ...)")
    station.add_argument("--construction", type=int, default=255, help="T/CEC Construction (255 other)")
    station.add_argument("--park-nums", type=int, default=0)
    station.set_defaults(operate=_station)
    outbox = operations.add_parser("outbox", help="each peer's pushes: pending, delivered, given up, the lag")
    outbox.add_argument("--tenant", type=UUID, required=True)
    outbox.add_argument("--rows", metavar="OPERATOR_ID", help="list this peer's pushes")
    outbox.set_defaults(operate=_outbox)
    disputes = operations.add_parser("disputes", help="the orders the tenant's peers disputed")
    disputes.add_argument("--tenant", type=UUID, required=True)
    disputes.set_defaults(operate=_disputes)
    pull = operations.add_parser("pull", help="pull an infrastructure peer's stations, statuses and prices now")
    pull.add_argument("operator_id")
    pull.add_argument("--tenant", type=UUID, required=True)
    pull.set_defaults(operate=_pull)


def sealing_box() -> SecretBox | None:
    """The box the peers' secrets are sealed with (``CHARGELEDGER_INTERCONNECT_KEYS``); None, said on
    stderr, when the setting is missing: every command on peers needs it."""
    keys = os.environ.get(KEYS_SETTING, "")
    if not keys:
        print(f"set {KEYS_SETTING} (kid=base64 of 32 random bytes): it seals the peers' secrets", file=sys.stderr)
        return None
    return SecretBox.from_setting(keys)


@with_database
def run(args: argparse.Namespace) -> int:
    from psycopg_pool import ConnectionPool

    box = sealing_box()
    if box is None:
        return 2
    _, database_url = tenant_database(args.tenant, args.database_url)  # the tenant's shard (docs/shards.md)
    with ConnectionPool(database_url, min_size=1, max_size=1, open=True) as pool:
        create_schema(pool)
        try:
            return int(args.operate(args, Store(pool, box)))
        except (DomainError, ValueError, KeyError, LookupError) as error:
            print(getattr(error, "message", None) or error, file=sys.stderr)
            return 2


def _add(args: argparse.Namespace, store: Store) -> int:
    peers = store.peers
    new = not any(p.operator_id == args.operator_id for p in peers.of_tenant(args.tenant))
    peer = peers.configure(args.tenant, args.operator_id, our_operator_id=args.our_operator_id,
                           base_url=args.base_url, role=args.role, dialect=args.dialect, name=args.name,
                           token_lifetime=args.token_lifetime, enabled=not args.disabled,
                           status_interval=args.status_interval,
                           inbound=Credentials.generate() if args.new_secrets else None)
    print(f"{'created' if new else 'changed'} peer {peer.operator_id} ({peer.role.value}, {peer.dialect.value}) "
          f"of tenant {peer.tenant_id}")
    if new or args.show_inbound or args.new_secrets:
        print("secrets we issued it (give them to the peer once; they stay sealed here):")
        print(json.dumps({"OperatorID": peer.operator_id, **peer.inbound.as_dict()}, indent=2))
    return 0


def _outbound(args: argparse.Namespace, store: Store) -> int:
    try:
        value = json.loads(sys.stdin.read())
    except json.JSONDecodeError:
        raise ValueError("stdin is not JSON: give the peer's secrets as a JSON object") from None
    peer = store.peers.set_outbound(args.tenant, args.operator_id, Credentials.from_dict(value))
    print(f"stored the secrets {peer.operator_id} issued us; its token will be fetched on the first call")
    return 0


def _list(args: argparse.Namespace, store: Store) -> int:
    for peer in store.peers.of_tenant(args.tenant):
        print(f"{peer.operator_id}  {peer.role.value:14} {peer.dialect.value:8} "
              f"{'enabled' if peer.enabled else 'disabled':8} outbound={'set' if peer.outbound else 'missing':7} "
              f"{peer.base_url}  {peer.name}")
    return 0


def _station(args: argparse.Namespace, store: Store) -> int:
    now = utcnow()
    store.profiles.set(args.tenant, args.station_id, StationProfile(args.area_code, args.service_tel, args.station_type,
                                                                   args.construction, args.park_nums), now,
                       alongside=lambda cursor: stations.profile_changed(cursor, args.station_id, now))
    print(f"station {args.station_id}: area {args.area_code}, type {args.station_type}, construction "
          f"{args.construction}, {args.park_nums} parking spaces")
    return 0


def _outbox(args: argparse.Namespace, store: Store) -> int:
    if args.rows:
        peer = store.peers.get(args.tenant, args.rows)
        for row in store.outbox.rows(peer.peer_id):
            print(f"{row['id']:>8} {row['state']:10} {row['attempts']:>3} {row['interface']:34} {row['key']}  "
                  f"{row['answer'] or row['last_error'] or ''}")
        return 0
    with store.pool.connection() as conn:
        peers_health = peers_with_health(conn, args.tenant, utcnow())  # the operator API's query too
    for peer in peers_health:
        h = peer["health"]
        print(f"{peer['operator_id']}  pending={h['pending']} delivered={h['delivered']} failed={h['failed']} "
              f"retrying={h['retrying']} lag={h['lag_s']}s last_delivered={h['last_delivered']} "
              f"last_inbound={h['last_inbound_at']} last_error={h['last_error'] or '-'}")
    return 0


def _disputes(args: argparse.Namespace, store: Store) -> int:
    names = {p.peer_id: p.operator_id for p in store.peers.of_tenant(args.tenant)}
    for d in store.outbox.disputes(list(names)):
        print(f"{names[d['peer_id']]}  {d['source']:24} {d['start_charge_seq']}  reason {d['reason']}  "
              f"power {d['total_power']}  money {d['total_money']}  {d['recorded_at']:%Y-%m-%d %H:%M:%S}")
    return 0


def _pull(args: argparse.Namespace, store: Store) -> int:
    """0: complete without an error; 1: partly fetched (what arrived is kept; the errors say what did not)."""
    from adapters.interconnect.client import http_client
    from adapters.interconnect.customer.catalogue import pull, pullable

    peer = store.peers.get(args.tenant, args.operator_id)
    why_not = pullable(peer)
    if why_not is not None:
        raise ValueError(why_not)
    with http_client() as http:
        report = pull(store, peer, http)
    print(report.summary())
    return 0 if report.complete and not report.errors else 1
