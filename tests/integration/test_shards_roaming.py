"""Our drivers on a peer's piles over two tenant shards (docs/shards.md, docs/interconnect.md "Shards").

B, a customer platform on two shards (tenant 1 on ``s1``, tenant 2 on ``s2``, one API app over both with
the driver API and the T/CEC door); A, an infrastructure operator on its own database (the roaming
harness's A, serving the production handlers). Tenant 2 links A and pulls A's catalogue into ``s2``;
tenant 1 links the same OperatorID on ``s1`` with secrets of its own, so every push A sends B is offered
to two shards and only its signature says which. A driver of tenant 2 lists A's stations, starts on A's
pile, watches, stops; A's outbox pushes the start result and the order to B's door, and the order settles
the charge on ``s2``: the driver's wallet there pays exactly A's bill, owed on ``payable:APLATFORM`` in
``s2``'s books, and ``s1`` holds nothing of it. A start whose answer was lost is finished by ``s2``'s own
``tcec-outbox`` (one process per shard), never by ``s1``'s. A driver of a tenant on no shard is 404.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient

from adapters.api.app import create_app
from adapters.api.auth import AuthSettings
from adapters.api.driver.settings import DriverApiSettings
from adapters.api.shards import ApiShards
from adapters.audit.replay import replay
from adapters.followers.log_follower import iter_events
from adapters.interconnect.client import TcecClient
from adapters.interconnect.customer.catalogue import CataloguePull
from adapters.interconnect.door import InterconnectSettings, mount
from adapters.interconnect.mapping import connector_code, station_code
from adapters.interconnect.outbox.role import OutboxRole
from adapters.interconnect.shards import ShardedDoor
from adapters.interconnect.store.directory import Store
from adapters.interconnect.tcec.interfaces import Role
from adapters.interconnect.tcec.peer import Credentials, Peer
from adapters.payments.config import SecretBox
from adapters.postgres.env import eventsourcing_env
from domain.books import books_of
from domain.ledger import Ledger
from domain.roaming import RoamingCharge
from domain.session import SettlementRecord
from domain.start_rules import StartRules
from domain.wallet import Wallet
from projections.runner import Projections
from tests.factories import World, build_world
from tests.integration.roaming_harness import A_ID, B_ID, BASE_URL, Side, _side, online
from tests.integration.shards_harness import TwoShards, catch_up, make_ledger, two_shards  # noqa: F401 - the fixture

GUN1 = connector_code("32010600019236", 1)
ENERGY = (0, 31_000, 21_345, 0)  # peak and flat
DRIVER = "wechat:wx-main:o-driver-2"
STATIONS = "/driver/roaming/stations"


@dataclass
class ShardedB:
    """B over two shards, A its infrastructure peer, and how A reaches B (and B reaches A)."""

    a: Side
    world: World  # A's tenant, its station and pile
    shards: TwoShards
    client: TestClient  # B's API app over both shards
    door: ShardedDoor
    tenants: dict[str, UUID]
    b_on_a: Peer
    a_down: list[bool]

    def ledger(self, shard: str) -> Ledger:
        return self.shards.ledgers[shard]

    def store(self, shard: str) -> Store:
        return self.door.stores[shard]

    def scalar(self, shard: str, sql: str, *params: Any) -> Any:
        with psycopg.connect(self.shards.url(shard)) as conn:
            return conn.execute(sql, params).fetchone()[0]

    def driver(self, shard: str, top_up_fen: int = 150_00) -> dict[str, str]:
        """A driver of the shard's tenant with ``top_up_fen`` in the wallet on that shard."""
        tenant = self.tenants[shard]
        wallet = self.ledger(shard).open_wallet(tenant, DRIVER, "test")
        self.ledger(shard).top_up(wallet, key=f"top-up:{shard}", amount=top_up_fen, provider="wechat",
                                  payment_ref=f"wx-{shard}")
        return self.token(tenant)

    def token(self, tenant: UUID) -> dict[str, str]:
        token, _ = self.client.app.state.driver_identity.tokens.issue(tenant, DRIVER)
        return {"Authorization": f"Bearer {token}"}

    def wallet(self, shard: str) -> Wallet:
        return self.ledger(shard).wallet(Wallet.create_id(self.tenants[shard], DRIVER))

    def a_outbox(self) -> OutboxRole:
        """A's outbox (its pushes reach B's door through B's app)."""
        return OutboxRole(self.a.ledger, self.a.database_url, self.a.store, http_for=lambda peer: self.client)

    def b_outbox(self, shard: str) -> OutboxRole:
        """``chargeledger tcec-outbox --shard NAME`` of B, in process: that shard's ledger, database and store."""
        return OutboxRole(self.ledger(shard), self.shards.url(shard), self.store(shard),
                          http_for=lambda peer: self.a.client)

    def a_views(self) -> None:
        with Projections(self.a.ledger.applications, eventsourcing_env(self.a.database_url)) as projections:
            projections.catch_up()

    def payable(self, shard: str) -> int:
        """What B's tenant on ``shard`` owes A, in that shard's books (a credit: the balance negated)."""
        return -books_of(list(iter_events(self.ledger(shard).wallets))).accounts.get(f"payable:{A_ID}", 0)

    def receivable(self) -> int:
        return books_of(list(iter_events(self.a.ledger.wallets))).accounts.get(f"receivable:{B_ID}", 0)


def _down() -> httpx.Client:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("A is down", request=request)
    return httpx.Client(transport=httpx.MockTransport(refuse))


@pytest.fixture
def sharded_b(servers: tuple[str, str], two_shards: TwoShards) -> Iterator[ShardedB]:  # noqa: F811
    a_gen = _side(servers[0], "a", SecretBox.generate_setting("a1"))
    a = next(a_gen)
    world = build_world(a.ledger)
    a.tenant_id = world.tenant_id
    a_down = [False]
    down = _down()

    shards = ApiShards(two_shards.map, make_ledger, pool_size=2, ledgers=two_shards.ledgers)
    driver = DriverApiSettings(SecretBox.generate_setting("p1"), "https://b.example.com",
                               start_rules=StartRules(5_00, 200_00))
    app = create_app(None, two_shards.map.directory_url, AuthSettings.generate(), shards=shards, driver=driver)
    door = mount(app, InterconnectSettings(SecretBox.generate_setting("b1")),
                 http_for=lambda peer: down if a_down[0] else a.client)
    assert isinstance(door, ShardedDoor)
    tenants = two_shards.tenant_on_each()

    # tenant 2 (s2) and A: one credential set per direction
    b_on_a = a.store.peers.configure(a.tenant_id, B_ID, our_operator_id=A_ID, base_url=BASE_URL, role=Role.CUSTOMER,
                                     name="平台B")
    a_on_b = door.stores["s2"].peers.configure(tenants["s2"], A_ID, our_operator_id=B_ID, base_url=BASE_URL,
                                               role=Role.INFRASTRUCTURE, outbound=b_on_a.inbound, name="运营商A")
    b_on_a = a.store.peers.set_outbound(a.tenant_id, B_ID, a_on_b.inbound)
    # tenant 1 (s1) links the same OperatorID with secrets of its own: A's pushes to B are never its
    door.stores["s1"].peers.configure(tenants["s1"], A_ID, our_operator_id="CPLATFORM", base_url=BASE_URL,
                                      role=Role.INFRASTRUCTURE, outbound=Credentials.generate())
    try:
        with TestClient(app) as client:
            yield ShardedB(a, world, two_shards, client, door, tenants, b_on_a, a_down)
    finally:
        down.close()
        a_gen.close()


def test_a_driver_on_the_second_shard_roams_on_as_pile_and_pays_on_their_shard(sharded_b: ShardedB) -> None:
    b, a = sharded_b, sharded_b.a
    online(a.ledger, b.world.pile_no)
    b.a_views()  # A's catalogue answers from its read views
    peer = b.store("s2").peers.get(b.tenants["s2"], A_ID)
    assert CataloguePull(b.store("s2").peer_catalogue, TcecClient(peer, b.store("s2").held, a.client)).run().complete
    assert (b.scalar("s2", "SELECT count(*) FROM tcec_peer_stations"),
            b.scalar("s1", "SELECT count(*) FROM tcec_peer_stations")) == (1, 0)

    auth = b.driver("s2")
    station = station_code(b.world.station_id)
    listed = b.client.get(STATIONS, headers=auth)
    assert listed.status_code == 200, listed.text
    assert [(s["operator_id"], s["station_id"]) for s in listed.json()["stations"]] == [(A_ID, station)]
    detail = b.client.get(f"{STATIONS}/{A_ID}/{station}", headers=auth)
    assert detail.status_code == 200, detail.text
    assert GUN1 in [c["connector_id"] for c in detail.json()["connectors"]]
    assert b.client.get(STATIONS, headers=b.driver("s1")).json() == {"stations": []}  # tenant 1 pulled nothing

    r = b.client.post("/driver/roaming/sessions", json={"operator_id": A_ID, "connector_id": GUN1,
                                                         "station_id": station},
                      headers={**auth, "Idempotency-Key": "start-0001"})
    assert r.status_code == 202, r.text
    seq = r.json()["start_charge_seq"]
    assert (r.json()["state"], r.json()["hold_fen"]) == ("starting", 150_00)
    assert (b.wallet("s2").available, b.wallet("s2").held) == (0, 150_00)
    assert (b.wallet("s1").available, b.wallet("s1").held) == (150_00, 0)  # the other shard's driver untouched
    charge_id = RoamingCharge.create_id(b.tenants["s2"], A_ID, seq)
    assert b.ledger("s2").roaming_charge(charge_id).state == "starting"
    assert b.ledger("s1").find_roaming(b.tenants["s2"], A_ID, seq) is None

    trade_no = a.scalar("SELECT trade_no FROM tcec_starts WHERE start_charge_seq = %s", seq)
    now = datetime.now(timezone.utc)
    a.ledger.acknowledge_start(trade_no, at=now, ok=True)  # A's pile takes it (what A's gateway writes)
    a.ledger.mark_charging(trade_no, at=now)
    outbox = b.a_outbox()
    outbox.step(datetime.now(timezone.utc))  # the start result, through B's door to s2
    watched = b.client.get(f"/driver/roaming/sessions/{A_ID}/{seq}", headers=auth)
    assert watched.status_code == 200, watched.text
    assert watched.json()["state"] == "charging" and watched.json()["live"]["energy_kwh"] == "0.0000"

    stopped = b.client.post(f"/driver/roaming/sessions/{A_ID}/{seq}/stop", headers=auth)
    assert (stopped.status_code, stopped.json()["state"]) == (202, "stopping")
    assert a.ledger.session(trade_no).state == "stopping"  # A's pile is told to stop

    ended = datetime.now(timezone.utc)
    a.ledger.settle(trade_no, SettlementRecord(ENERGY, (0, 0, 0, 0), 0, sum(ENERGY), 0, sum(ENERGY),
                                               ended - timedelta(minutes=50), ended, 0x40), ended)
    outbox.step(datetime.now(timezone.utc))  # the stop result and the order
    (order,) = [row for row in a.store.outbox.rows(b.b_on_a.peer_id)
                if row["interface"] == "notification_charge_order_info"]
    assert order["answer"] == "ConfirmResult 0"  # B's s2 agreed
    bill = a.ledger.session(trade_no).bill
    done = b.client.get(f"/driver/roaming/sessions/{A_ID}/{seq}", headers=auth).json()
    assert (done["state"], done["bill"]["total_fen"], done["live"]) == ("settled", bill["total_fen"], None)
    assert (b.wallet("s2").available, b.wallet("s2").held) == (150_00 - bill["total_fen"], 0)
    assert b.payable("s2") == b.receivable() == bill["total_fen"] > 0
    assert b.payable("s1") == 0
    assert b.scalar("s1", "SELECT count(*) FROM tcec_received") == 0  # every push was s2's
    catch_up(b.shards)  # the auditor compares each shard's views with its ledger too
    for shard in ("s1", "s2"):
        report = replay(b.shards.url(shard))
        assert report.ok and report.trial_balance == 0, report.as_text()


def test_a_start_whose_answer_was_lost_is_finished_by_its_shards_outbox(sharded_b: ShardedB) -> None:
    b, a = sharded_b, sharded_b.a
    online(a.ledger, b.world.pile_no)
    auth = b.driver("s2")
    b.a_down[0] = True
    r = b.client.post("/driver/roaming/sessions", json={"operator_id": A_ID, "connector_id": GUN1},
                      headers={**auth, "Idempotency-Key": "start-0001"})
    b.a_down[0] = False
    assert r.status_code == 202, r.text
    assert r.json()["state"] == "requested"  # A unreachable: asked again later
    seq = r.json()["start_charge_seq"]
    charge_id = RoamingCharge.create_id(b.tenants["s2"], A_ID, seq)
    due = datetime.now(timezone.utc) + timedelta(minutes=2)
    assert b.b_outbox("s1").step(due)["roaming_asked"] == 0  # s1's outbox knows nothing of s2's charges
    # s2's: A never heard the start; the reconciler asks, hears "no such charge", sends the start once more
    assert b.b_outbox("s2").step(due)["roaming_asked"] == 1
    assert b.ledger("s2").roaming_charge(charge_id).state == "starting"
    assert a.scalar("SELECT count(*) FROM tcec_starts WHERE start_charge_seq = %s", seq) == 1


def test_a_driver_of_a_tenant_on_no_shard_is_refused(sharded_b: ShardedB) -> None:
    auth = sharded_b.token(uuid.uuid4())  # a valid driver token of a tenant the directory never placed
    assert sharded_b.client.get(STATIONS, headers=auth).status_code == 404
    r = sharded_b.client.post("/driver/roaming/sessions", json={"operator_id": A_ID, "connector_id": GUN1},
                              headers={**auth, "Idempotency-Key": "start-0001"})
    assert (r.status_code, r.json()["code"]) == (404, "not_found"), r.text
