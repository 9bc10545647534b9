"""The T/CEC door over two tenant shards (docs/shards.md, docs/interconnect.md "Shards"): tenant 1 on s1
and tenant 2 on s2 each link a peer; an envelope is routed by its OperatorID, and when both link the same
OperatorID, by the SigSecret that signs it. The token is issued and the handler runs on the tenant's
shard (its Store and its Ledger); a link configured a moment later on another shard is found at its first
call; ``chargeledger peers --tenant`` works on the tenant's shard."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import psycopg
import pytest
from fastapi.testclient import TestClient

import app as cli
from adapters.api.app import create_app
from adapters.api.auth import AuthSettings
from adapters.api.shards import ApiShards
from adapters.interconnect.door import InterconnectSettings, mount
from adapters.interconnect.handlers import token as token_handlers
from adapters.interconnect.shards import ShardedDoor
from adapters.interconnect.tcec import wire
from adapters.interconnect.tcec.envelope import ResponseEnvelope, Ret
from adapters.interconnect.tcec.interfaces import Role
from adapters.interconnect.tcec.models.status import StationStatusResponse
from adapters.interconnect.tcec.peer import Credentials, Peer
from adapters.interconnect.tcec.routing import Call, Handlers
from adapters.payments.config import SecretBox
from tests.integration.interconnect_harness import BASE_URL
from tests.integration.shards_harness import TwoShards, make_ledger, two_shards  # noqa: F401 - the fixture
from tests.integration.test_interconnect_refusals import envelope

OURS = "APLATFORM"
X, Y, Z, W = "XPLATFORM", "YPLATFORM", "ZPLATFORM", "WPLATFORM"


class Sharded:
    def __init__(self, shards: TwoShards, client: TestClient, door: ShardedDoor, tenants: dict[str, UUID],
                 calls: list[tuple[UUID, Any]]) -> None:
        self.shards, self.client, self.door, self.tenants, self.calls = shards, client, door, tenants, calls

    def link(self, shard: str, operator_id: str) -> Peer:
        return self.door.stores[shard].peers.configure(self.tenants[shard], operator_id, our_operator_id=OURS,
                                                       base_url=BASE_URL, role=Role.CUSTOMER)

    def post(self, interface: str, body: dict[str, str], token: str | None = None) -> ResponseEnvelope:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        r = self.client.post(f"/evcs/v1/{interface}", content=wire.dumps(body).encode(), headers=headers)
        assert r.status_code == 200, r.text
        return ResponseEnvelope.parse(r.content)

    def token(self, peer: Peer, seq: str = "0001") -> str:
        answer = self.post("query_token", envelope(peer.inbound, {
            "OperatorID": peer.operator_id, "OperatorSecret": peer.inbound.operator_secret},
            operator_id=peer.operator_id, seq=seq))
        assert answer.ret == 0, answer
        data = json.loads(peer.inbound.keys.decrypt(answer.data))
        assert data["SuccStat"] == 0, data
        return str(data["AccessToken"])

    def status(self, peer: Peer, token: str, seq: str = "0002") -> ResponseEnvelope:
        return self.post("query_station_status", envelope(peer.inbound, {"StationIDs": ["S1"]},
                                                          operator_id=peer.operator_id, seq=seq), token)

    def issued_on(self, shard: str, peer: Peer) -> int:
        with psycopg.connect(self.shards.url(shard)) as conn:
            return int(conn.execute("SELECT count(*) FROM tcec_tokens_issued WHERE peer_id = %s",
                                    (peer.peer_id,)).fetchone()[0])


@pytest.fixture
def sharded(two_shards: TwoShards) -> Iterator[Sharded]:  # noqa: F811
    calls: list[tuple[UUID, Any]] = []
    handlers = Handlers()
    handlers.handles("query_token")(token_handlers.query_token)

    @handlers.handles("query_station_status")
    def station_status(call: Call) -> StationStatusResponse:
        calls.append((call.peer.tenant_id, call.services.ledger))  # which tenant, on which shard's Ledger
        return StationStatusResponse(Total=0, StationStatusInfos=[])

    shards = ApiShards(two_shards.map, make_ledger, pool_size=2, ledgers=two_shards.ledgers)
    app = create_app(None, two_shards.map.directory_url, AuthSettings.generate(), shards=shards)
    door = mount(app, InterconnectSettings(SecretBox.generate_setting("k1")), handlers=handlers)
    assert isinstance(door, ShardedDoor)
    tenants = two_shards.tenant_on_each()
    with TestClient(app) as client:
        yield Sharded(two_shards, client, door, tenants, calls)


def test_each_call_lands_on_the_shard_of_the_link_that_signs_it(sharded: Sharded) -> None:
    x1, y2 = sharded.link("s1", X), sharded.link("s2", Y)
    z1, z2 = sharded.link("s1", Z), sharded.link("s2", Z)  # the same OperatorID, two tenants, two secrets
    assert z1.inbound.sig_secret != z2.inbound.sig_secret
    ledgers = sharded.shards.ledgers
    for shard, peer in (("s1", x1), ("s2", y2), ("s1", z1), ("s2", z2)):
        token = sharded.token(peer)
        other = "s2" if shard == "s1" else "s1"
        assert (sharded.issued_on(shard, peer), sharded.issued_on(other, peer)) == (1, 0)
        answer = sharded.status(peer, token)
        assert answer.ret == 0, answer
        assert sharded.calls[-1][0] == sharded.tenants[shard] and sharded.calls[-1][1] is ledgers[shard]
    assert len(sharded.calls) == 4

    # z1's token is z1's: signed by z2 it is refused (4002), on z2's shard, and reaches no handler
    token_z1 = sharded.token(z1, seq="0009")
    refused = sharded.status(z2, token_z1, seq="0003")
    assert refused.ret == Ret.BAD_TOKEN and z2.inbound.keys.verify_response(refused.ret, refused.msg, refused.data,
                                                                            refused.sig)
    # signed by no link of Z: 4001, unsigned (two links could have been meant); an unknown OperatorID: 4004
    stranger = Credentials.generate()
    forged = sharded.post("query_station_status", envelope(stranger, {"StationIDs": ["S1"]}, operator_id=Z), token_z1)
    assert (forged.ret, forged.sig) == (Ret.BAD_SIG, "")
    unknown = sharded.post("query_token", envelope(stranger, {}, operator_id=W))
    assert (unknown.ret, unknown.sig) == (Ret.BAD_DATA, "") and "无此运营商" in unknown.msg
    assert len(sharded.calls) == 4


def test_a_link_configured_later_on_another_shard_is_found_at_its_first_call(sharded: Sharded) -> None:
    x1 = sharded.link("s1", X)
    assert sharded.status(x1, sharded.token(x1)).ret == 0  # X remembered: on s1
    x2 = sharded.link("s2", X)  # tenant 2 links X too, after the door remembered where X is
    token = sharded.token(x2)
    assert (sharded.issued_on("s2", x2), sharded.status(x2, token).ret) == (1, 0)
    assert sharded.calls[-1][0] == sharded.tenants["s2"]
    w2 = sharded.link("s2", W)  # an OperatorID nobody linked when first asked
    assert sharded.status(w2, sharded.token(w2)).ret == 0


def test_peers_cli_works_on_the_tenants_shard(sharded: Sharded, nats_url: str, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    shards = sharded.shards
    monkeypatch.setenv("NATS_URL", nats_url)
    monkeypatch.setenv("CHARGELEDGER_SHARDS", ",".join(f"{n}={u}" for n, u in shards.map.urls.items()))
    monkeypatch.setenv("DATABASE_URL", shards.url("s1"))
    monkeypatch.setenv("CHARGELEDGER_INTERCONNECT_KEYS", SecretBox.generate_setting("cli1"))
    tenant2 = str(sharded.tenants["s2"])
    assert cli.main(["peers", "add", Y, "--tenant", tenant2, "--our-operator-id", OURS, "--base-url", BASE_URL,
                     "--role", "customer"]) == 0
    with psycopg.connect(shards.url("s2")) as conn:
        assert conn.execute("SELECT tenant_id FROM tcec_peers WHERE operator_id = %s", (Y,)).fetchone() == (
            sharded.tenants["s2"],)
    with psycopg.connect(shards.url("s1")) as conn:
        assert conn.execute("SELECT count(*) FROM tcec_peers WHERE operator_id = %s", (Y,)).fetchone() == (0,)
    capsys.readouterr()
    assert cli.main(["peers", "list", "--tenant", tenant2]) == 0
    assert Y in capsys.readouterr().out
    with pytest.raises(SystemExit, match="on no shard"):
        cli.main(["peers", "list", "--tenant", str(uuid.uuid4())])
