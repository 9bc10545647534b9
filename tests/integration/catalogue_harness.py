"""We as customer platform browsing a peer's piles (tests/integration/test_interconnect_catalogue*.py): A, an
infrastructure operator serving the production handlers over real stations and piles (the roaming harness's
A), and B, whose drivers roam onto A's piles, with the driver API mounted; both with known sealing keys (the
CLI test serves A over HTTP and runs ``chargeledger peers pull`` on B's database). Z is a third peer of B's
that answers whatever a test's transport says.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import psycopg
import pytest

from adapters.api.app import mount_driver_api
from adapters.api.driver.identity import DriverTokens
from adapters.api.driver.settings import DriverApiSettings
from adapters.interconnect.client import TcecClient
from adapters.interconnect.customer.catalogue import CataloguePull, PullReport
from adapters.interconnect.tcec import wire
from adapters.interconnect.tcec.envelope import ResponseEnvelope
from adapters.interconnect.tcec.interfaces import Role
from adapters.interconnect.tcec.peer import Credentials, Peer
from adapters.payments.config import SecretBox
from adapters.postgres.env import eventsourcing_env
from projections.runner import Projections
from tests.factories import World, build_world
from tests.integration.roaming_harness import A_ID, B_ID, BASE_URL, Side, _side, online

Z_ID = "ZPLATFORM"
A_KEYS, B_KEYS = SecretBox.generate_setting("a1"), SecretBox.generate_setting("b1")


@dataclass
class Catalogue:
    a: Side
    b: Side
    world: World  # A's tenant: a station with a DC pile of two guns, on the factories' tariff
    a_on_b: Peer
    b_on_a: Peer

    def views(self) -> None:
        with Projections(self.a.ledger.applications, eventsourcing_env(self.a.database_url)) as projections:
            projections.catch_up()

    def pull(self, **options: Any) -> PullReport:
        """B pulls A's catalogue through A's app."""
        peer = self.b.store.peers.get(self.b.tenant_id, A_ID)
        return CataloguePull(self.b.store.peer_catalogue, TcecClient(peer, self.b.store.held, self.a.client),
                             **options).run()

    def driver(self, tenant_id: Any = None, who: str = "wechat:wx-main:openid-1") -> dict[str, str]:
        """A driver token of B's (or another) tenant, signed as B's login signs them."""
        token, _ = DriverTokens(self.b.client.app.state.signer).issue(tenant_id or self.b.tenant_id, who)
        return {"Authorization": f"Bearer {token}"}

    def get(self, path: str, auth: dict[str, str], **params: Any) -> httpx.Response:
        return self.b.client.get(path, headers=auth, params=params)

    def connectors(self) -> dict[str, dict[str, Any]]:
        with psycopg.connect(self.b.database_url) as conn:
            rows = conn.execute("SELECT connector_id, station_id, status, policy IS NOT NULL, policy_error "
                                "FROM tcec_peer_connectors ORDER BY connector_id").fetchall()
        return {r[0]: {"station": r[1], "status": r[2], "policy": r[3], "policy_error": r[4]} for r in rows}

    def age_a_stations(self, days: int = 1) -> None:
        """A's stations and piles as if last changed ``days`` ago (what a pull since then leaves out)."""
        with psycopg.connect(self.a.database_url) as conn:
            conn.execute("UPDATE catalogue_stations SET updated_at = updated_at - make_interval(days => %s)", (days,))
            conn.execute("UPDATE live_piles SET registered_at = registered_at - make_interval(days => %s)", (days,))

    def add_z(self, transport: Callable[[httpx.Request], httpx.Response]) -> tuple[Peer, httpx.Client]:
        """Z, another infrastructure peer of B's, whose answers ``transport`` makes (see :func:`signed`)."""
        z = self.b.store.peers.configure(self.b.tenant_id, Z_ID, our_operator_id=B_ID, base_url="http://z.test/evcs/v1",
                                         role=Role.INFRASTRUCTURE, outbound=Credentials.generate())
        return z, httpx.Client(transport=httpx.MockTransport(transport))


def signed(z: Peer, payload: Any, ret: int = 0, msg: str = "") -> httpx.Response:
    """Z's answer as Z would sign it for B: ``payload`` (a dict, as is, or None) encrypted with the set Z issued B."""
    assert z.outbound is not None
    keys = replace(z, inbound=z.outbound).inbound.keys
    data = "" if payload is None else keys.encrypt(wire.dumps(payload).encode("utf-8"))
    envelope = ResponseEnvelope(ret, msg, data, keys.response_sig(ret, msg, data))
    return httpx.Response(200, content=wire.dumps(envelope.body()).encode("utf-8"))


def token_answer(z: Peer) -> httpx.Response:
    return signed(z, {"OperatorID": Z_ID, "SuccStat": 0, "AccessToken": "z-token", "TokenAvailableTime": 7200,
                      "FailReason": 0})


@pytest.fixture
def catalogue(servers: tuple[str, str]) -> Iterator[Catalogue]:
    a_gen, b_gen = _side(servers[0], "a", A_KEYS), _side(servers[0], "b", B_KEYS)
    a, b = next(a_gen), next(b_gen)
    world = build_world(a.ledger)
    a.tenant_id = world.tenant_id
    mount_driver_api(b.client.app, b.ledger, DriverApiSettings(SecretBox.generate_setting("p1"),
                                                               "https://charge.example.com"))
    b_on_a = a.store.peers.configure(a.tenant_id, B_ID, our_operator_id=A_ID, base_url=BASE_URL, role=Role.CUSTOMER)
    a_on_b = b.store.peers.configure(b.tenant_id, A_ID, our_operator_id=B_ID, base_url=BASE_URL,
                                     role=Role.INFRASTRUCTURE, outbound=b_on_a.inbound, name="运营商A")
    b_on_a = a.store.peers.set_outbound(a.tenant_id, B_ID, a_on_b.inbound)
    setup = Catalogue(a, b, world, a_on_b, b_on_a)
    online(a.ledger, world.pile_no)
    setup.views()
    yield setup
    for gen in (b_gen, a_gen):
        gen.close()


def now() -> datetime:
    return datetime.now(timezone.utc)


def later(seconds: float) -> datetime:
    return now() + timedelta(seconds=seconds)
