"""T/CEC 102 throughput, each call beside the same call without the crypto, measured in the same run.

Two platforms on the project's Postgres (or DATABASE_URL), each on its own database, in one process:
A, the infrastructure operator, with 50 stations of one pile and two guns each (the views caught up);
B, a customer platform. No HTTP: a call goes from the client (TcecClient) to the other side's Door through
an httpx transport that hands the body to ``Door.answer``, so what is measured is the protocol and the
handler, not a web server.

1. ``query_station_status`` for 50 stations, B calling A: (a) through the door (B encrypts and signs;
   A checks the envelope, the Sig, the token, the time and the replay fingerprint (one insert), decrypts,
   validates, runs the handler, encrypts and signs the answer; B checks and decrypts it), (b) A's
   handler called directly with the decoded request (the two view queries and the answer objects).
2. ``notification_stationStatus``, A pushing to B: (a) through B's door, (b) B's handler called directly
   with the decoded object (one insert of what arrived), and (c) as the outbox sends them: rows enqueued,
   then taken, sent through the door and recorded by ``Sender.sweep``.
3. The crypto alone, for the 50-station answer: AES-128-CBC and HMAC-MD5 of request and answer, both ways.

    python bench/interconnect.py [--calls 300] [--pushes 1000]
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg_pool import ConnectionPool

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.interconnect.client import TcecClient  # noqa: E402
from adapters.interconnect.handlers import handlers  # noqa: E402
from adapters.interconnect.mapping import connector_code, station_code  # noqa: E402
from adapters.interconnect.outbox.sender import Sender  # noqa: E402
from adapters.interconnect.service import Door, Services  # noqa: E402
from adapters.interconnect.store.directory import Store  # noqa: E402
from adapters.interconnect.store.outbox import Push  # noqa: E402
from adapters.interconnect.store.schema import create_schema  # noqa: E402
from adapters.interconnect.tcec import wire  # noqa: E402
from adapters.interconnect.tcec.interfaces import INTERFACES, Role  # noqa: E402
from adapters.interconnect.tcec.models.status import (ConnectorStatusInfo, StationStatusNotification,  # noqa: E402
                                                      StationStatusRequest)
from adapters.interconnect.tcec.routing import Call  # noqa: E402
from adapters.payments.config import SecretBox  # noqa: E402
from adapters.postgres.env import eventsourcing_env  # noqa: E402
from adapters.servers.postgres_server import create_database  # noqa: E402
from adapters.servers.resolve import resolve_servers  # noqa: E402
from domain.ledger import Ledger  # noqa: E402
from projections.runner import Projections  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
A_ID, B_ID = "APLATFORM", "BPLATFORM"
PRICES = {t: {"electricity": 70000, "service": 40000} for t in ("sharp", "peak", "flat", "valley")}


def door_transport(door: Door) -> httpx.MockTransport:
    """httpx to a Door without HTTP: the body and the Bearer header, as the route would hand them over."""
    def handle(request: httpx.Request) -> httpx.Response:
        interface = request.url.path.rsplit("/", 1)[-1]
        answer = door.answer(interface, request.content, request.headers.get("authorization"))
        return httpx.Response(200, content=wire.dumps(answer.body()).encode())
    return httpx.MockTransport(handle)


def rate(label: str, n: int, run: Callable[[int], Any]) -> float:
    started = time.perf_counter()
    for i in range(n):
        run(i)
    seconds = time.perf_counter() - started
    print(f"  {label:58} {n / seconds:9.1f}/s   {seconds / n * 1000:7.2f} ms each", flush=True)
    return n / seconds


def world(url: str, stations: int) -> tuple[Ledger, uuid.UUID, list[uuid.UUID]]:
    ledger = Ledger(eventsourcing_env(url))
    tenant = ledger.create_tenant("Bench Operator", "bench")
    tariff = ledger.create_tariff(tenant, "flat", PRICES, [2] * 48, "bench")
    ids = []
    for i in range(stations):
        station = ledger.create_station(tenant, f"Station {i}", f"{i} Bench Road", 31.2, 121.4, "bench")
        ledger.assign_tariff(tariff, "bench", station_id=station)
        pile_no = f"77{i:012d}"
        ledger.register_pile(station, pile_no, "DC", 2, "bench")
        ledger.pile_connected(pile_no, datetime.now(timezone.utc), "bench", 0x10, "V1")
        ledger.report_gun(pile_no, 1, "idle", True, {}, datetime.now(timezone.utc))
        ids.append(station)
    with Projections(ledger.applications, eventsourcing_env(url)) as views:
        views.catch_up()
    return ledger, tenant, ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--pushes", type=int, default=1000)
    args = parser.parse_args()
    server_url, _nats, started = resolve_servers(ROOT / "var" / "bench-interconnect")
    names = [f"bench_tcec_{side}_{uuid.uuid4().hex[:6]}" for side in "ab"]
    try:
        a_url, b_url = (create_database(server_url, name) for name in names)
        a_ledger, tenant, stations = world(a_url, 50)
        with ConnectionPool(a_url, min_size=1, max_size=4) as a_pool, \
                ConnectionPool(b_url, min_size=1, max_size=4) as b_pool:
            for pool in (a_pool, b_pool):
                create_schema(pool)
            a = Store(a_pool, SecretBox.from_setting(SecretBox.generate_setting("a1")))
            b = Store(b_pool, SecretBox.from_setting(SecretBox.generate_setting("b1")))
            a_door, b_door = Door(Services(a, a_ledger), handlers), Door(Services(b), handlers)
            b_on_a = a.peers.configure(tenant, B_ID, our_operator_id=A_ID, base_url="http://a/evcs/v1",
                                       role=Role.CUSTOMER)
            a_on_b = b.peers.configure(uuid.uuid4(), A_ID, our_operator_id=B_ID, base_url="http://b/evcs/v1",
                                       role=Role.INFRASTRUCTURE, outbound=b_on_a.inbound)
            b_on_a = a.peers.set_outbound(tenant, B_ID, a_on_b.inbound)
            to_a = httpx.Client(transport=door_transport(a_door))
            to_b = httpx.Client(transport=door_transport(b_door))
            measure(a, b, a_door, b_door, b_on_a, a_on_b, to_a, to_b, stations, args)
        a_ledger.close()
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            for name in names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        for server in reversed(started):
            server.release()


def measure(a: Store, b: Store, a_door: Door, b_door: Door, b_on_a: Any, a_on_b: Any, to_a: httpx.Client,
            to_b: httpx.Client, stations: list[uuid.UUID], args: argparse.Namespace) -> None:
    now = datetime.now(timezone.utc)
    request = StationStatusRequest(StationIDs=[station_code(s) for s in stations])
    b_client = TcecClient(a_on_b, b.held, to_a)
    answer = b_client.call("query_station_status", request)
    assert answer.Total == 50 and sum(len(s.ConnectorStatusInfos) for s in answer.StationStatusInfos) == 100
    status = INTERFACES["query_station_status"]
    direct = Call(b_on_a, request, status, now, a_door.services)
    print("query_station_status, 50 stations (100 connectors), B -> A:")
    crypto = rate("through the door (envelope, Sig, token, replay, AES)", args.calls,
                  lambda i: b_client.call("query_station_status", request))
    plain = rate("the handler with the decoded request", args.calls,
                 lambda i: handlers.handler("query_station_status")(direct))
    print(f"  ratio: the door's call takes {plain / crypto:.2f}x the handler's time")

    push_iface = INTERFACES["notification_stationStatus"]
    a_client = TcecClient(b_on_a, a.held, to_b)

    def notification(i: int) -> StationStatusNotification:
        return StationStatusNotification(ConnectorStatusInfo=ConnectorStatusInfo(
            ConnectorID=connector_code(f"77{i % 50:012d}", 1 + i % 2), Status=1 + i % 3))

    a_client.call(push_iface, notification(0))
    print("notification_stationStatus, A -> B:")
    pushed = rate("through B's door (envelope, Sig, token, replay, AES)", args.pushes,
                  lambda i: a_client.call(push_iface, notification(i)))
    received = rate("B's handler with the decoded object", args.pushes,
                    lambda i: handlers.handler("notification_stationStatus")(
                        Call(a_on_b, notification(i), push_iface, now, b_door.services)))
    print(f"  ratio: the door's push takes {received / pushed:.2f}x the handler's time")
    with a.pool.connection() as conn, conn.cursor() as cursor:
        for i in range(args.pushes):
            a.outbox.add(cursor, b_on_a.peer_id, Push(push_iface.name, f"bench:{i}", notification(i)), now)
    sender = Sender(a, http_for=lambda peer: to_b)
    started = time.perf_counter()
    answered = sender.sweep(datetime.now(timezone.utc))
    seconds = time.perf_counter() - started
    assert answered == args.pushes
    print(f"  {'through the outbox (take, send through the door, record)':58} {answered / seconds:9.1f}/s   "
          f"{seconds / answered * 1000:7.2f} ms each")

    keys = b_on_a.inbound.keys
    body = wire.dumps(request.to_wire()).encode()
    reply = wire.dumps(answer.to_wire()).encode()
    print(f"the crypto alone (request {len(body)} B, answer {len(reply)} B):")

    def round_trip(i: int) -> None:
        data = keys.encrypt(body)
        keys.request_sig(A_ID, data, "20260101120000", "0001")
        keys.decrypt(data)
        out = keys.encrypt(reply)
        keys.verify_response(0, "", out, keys.response_sig(0, "", out))
        keys.decrypt(out)
    rate("AES + HMAC-MD5 of a 50-station request and answer, both ends", args.calls * 10, round_trip)


if __name__ == "__main__":
    main()
