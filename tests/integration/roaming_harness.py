"""A, an infrastructure operator, and B, a customer platform whose users charge on A's piles: two API apps on
their own databases, both serving the production T/CEC handlers, linked with one credential set per
direction (tests/integration/test_interconnect_infra*.py). B calls A through A's app with TcecClient; A's
outbox (OutboxRole, in process) pushes to B through B's app. A has a second tenant with a pile of its
own, which B must never see.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient

from adapters.api.app import create_app
from adapters.api.auth import AuthSettings
from adapters.api.driver.settings import DriverApiSettings
from adapters.interconnect.client import TcecClient
from adapters.interconnect.door import InterconnectSettings, mount
from adapters.interconnect.outbox.role import OutboxRole
from adapters.interconnect.outbox.sender import RetryPolicy
from adapters.interconnect.store.directory import Store
from adapters.interconnect.tcec import wire
from adapters.interconnect.tcec.interfaces import Role
from adapters.interconnect.tcec.peer import Peer
from adapters.interconnect.tcec.routing import Handlers
from adapters.payments.config import SecretBox
from adapters.postgres.env import eventsourcing_env
from adapters.servers.postgres_server import create_database
from domain.books import books_of
from domain.ledger import Ledger
from domain.start_rules import StartRules
from projections.runner import Projections
from tests.factories import World, build_world

A_ID, B_ID = "APLATFORM", "BPLATFORM"
BASE_URL = "http://testserver/evcs/v1"
OTHER_PILE = "55000000000001"
T0 = datetime.now(timezone.utc).replace(microsecond=0)


def seq(n: int) -> str:
    return f"{B_ID}{n:018d}"


@dataclass
class Side:
    database_url: str
    ledger: Ledger
    client: TestClient
    store: Store
    tenant_id: uuid.UUID

    def scalar(self, sql: str, *params: Any) -> Any:
        with psycopg.connect(self.database_url) as conn:
            return conn.execute(sql, params).fetchone()[0]

    def events(self) -> int:
        return self.scalar("SELECT (SELECT count(*) FROM sessions_events) + (SELECT count(*) FROM wallets_events)")


@dataclass
class Roaming:
    a: Side
    b: Side
    world: World
    other: World  # another tenant of A, with a pile of its own
    b_on_a: Peer
    a_on_b: Peer
    b_down: list[bool] = field(default_factory=lambda: [False])

    def b_client(self) -> TcecClient:
        return TcecClient(self.b.store.peers.get(self.b.tenant_id, A_ID), self.b.store.held, self.a.client)

    def call(self, interface: str, request: Any) -> Any:
        return self.b_client().call(interface, request)

    def http_to_b(self, peer: Peer) -> httpx.Client:
        """A's way to B: B's app, or, while ``b_down``, a transport whose every request fails to connect."""
        if self.b_down[0]:
            return httpx.Client(transport=httpx.MockTransport(_refuse))
        return self.b.client

    def outbox(self, policy: RetryPolicy = RetryPolicy()) -> OutboxRole:
        """A's outbox role as a new process would start it."""
        return OutboxRole(self.a.ledger, self.a.database_url, self.a.store, http_for=self.http_to_b, policy=policy)

    def views(self) -> None:
        with Projections(self.a.ledger.applications, eventsourcing_env(self.a.database_url)) as projections:
            projections.catch_up()

    def received(self, interface: str) -> list[dict[str, Any]]:
        return [{**row, "data": wire.loads(row["payload"])}
                for row in self.b.store.received.of(self.a_on_b.peer_id, interface)]

    def pushes(self, *interfaces: str) -> list[dict[str, Any]]:
        """A's outbox rows for B (of these interfaces; by default every one but the connector statuses)."""
        rows = self.a.store.outbox.rows(self.b_on_a.peer_id)
        return [r for r in rows if r["interface"] in interfaces or
                (not interfaces and r["interface"] != "notification_stationStatus")]

    def receivable(self) -> int:
        return books_of(_wallet_events(self.a.ledger)).accounts.get(f"receivable:{B_ID}", 0)

    def payable(self) -> int:
        """What B owes A in B's books (a credit: the negative of the account's balance)."""
        return -books_of(_wallet_events(self.b.ledger)).accounts.get(f"payable:{A_ID}", 0)

    def b_outbox(self) -> OutboxRole:
        """B's own outbox role (its reconciler asks A about B's drivers' charges), as a new process starts it."""
        return OutboxRole(self.b.ledger, self.b.database_url, self.b.store, http_for=lambda peer: self.a.client)

    def driver(self, openid: str = "driver-1", top_up_fen: int = 100_00) -> dict[str, str]:
        """A driver of B with ``top_up_fen`` in the wallet: the Authorization header of their token."""
        driver_id = f"wechat:wx-main:{openid}"
        wallet_id = self.b.ledger.open_wallet(self.b.tenant_id, driver_id, "test")
        if top_up_fen:
            self.b.ledger.top_up(wallet_id, key=f"top-up:{openid}", amount=top_up_fen, provider="wechat",
                                 payment_ref=f"wx-{openid}")
        token, _ = self.b.client.app.state.driver_identity.tokens.issue(self.b.tenant_id, driver_id)
        return {"Authorization": f"Bearer {token}"}


def _refuse(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("B is down", request=request)


def _wallet_events(ledger: Ledger) -> list[Any]:
    from adapters.followers.log_follower import iter_events
    return list(iter_events(ledger.wallets))


def _side(server_url: str, name: str, box: str, http_for: Callable[[Peer], httpx.Client] | None = None,
          handlers: Handlers | None = None) -> Iterator[Side]:
    """One platform. Given ``http_for`` (its way to the other platform) it also serves drivers, with
    the driver API's roaming endpoints."""
    database = f"t_roam_{name}_{uuid.uuid4().hex[:8]}"
    url = create_database(server_url, database)
    ledger = Ledger(eventsourcing_env(url))
    driver = None if http_for is None else DriverApiSettings(SecretBox.generate_setting("p1"), "https://b.example.com",
                                                             start_rules=StartRules(5_00, 200_00))
    app = create_app(ledger, url, AuthSettings.generate(), pool_size=3, driver=driver)
    door = mount(app, InterconnectSettings(box), http_for=http_for, handlers=handlers)
    try:
        with TestClient(app) as client:
            yield Side(url, ledger, client, door.services.store, uuid.uuid4())
    finally:
        ledger.close()
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def online(ledger: Ledger, pile_no: str, *, plugged: bool = True) -> None:
    """The pile logged in and reports gun 1 idle (plugged in) and gun 2 idle, as the gateway would record it."""
    ledger.pile_connected(pile_no, T0, "test-gateway", 0x10, "V1")
    ledger.report_gun(pile_no, 1, "idle", plugged, {}, T0)
    ledger.report_gun(pile_no, 2, "idle", False, {}, T0)


@pytest.fixture
def roaming(servers: tuple[str, str]) -> Iterator[Roaming]:
    to_a: list[TestClient] = []
    a_gen = _side(servers[0], "a", SecretBox.generate_setting("a1"))
    b_gen = _side(servers[0], "b", SecretBox.generate_setting("b1"), http_for=lambda peer: to_a[0])
    a, b = next(a_gen), next(b_gen)
    to_a.append(a.client)
    world = build_world(a.ledger)
    a.tenant_id = world.tenant_id
    other = build_world(a.ledger, pile_no=OTHER_PILE, driver="other-driver")
    b_on_a = a.store.peers.configure(a.tenant_id, B_ID, our_operator_id=A_ID, base_url=BASE_URL, role=Role.CUSTOMER,
                                     name="平台B", status_interval=60)
    a_on_b = b.store.peers.configure(b.tenant_id, A_ID, our_operator_id=B_ID, base_url=BASE_URL,
                                     role=Role.INFRASTRUCTURE, outbound=b_on_a.inbound)
    b_on_a = a.store.peers.set_outbound(a.tenant_id, B_ID, a_on_b.inbound)
    setup = Roaming(a, b, world, other, b_on_a, a_on_b)
    setup.views()
    yield setup
    for gen in (b_gen, a_gen):
        gen.close()


def step(outbox: OutboxRole, at: datetime | None = None) -> dict[str, int]:
    return outbox.step(at or datetime.now(timezone.utc))


def later(seconds: float) -> datetime:
    return datetime.now(timezone.utc) + timedelta(seconds=seconds)


Check = Callable[[], bool]
