"""The API over two tenant shards (docs/shards.md): tenants placed by name or on the least-loaded shard,
each tenant's admin routed to their shard and seeing only their own, a pile number unique across
shards, a driver's start landing in their tenant's database, a platform admin's merged views."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient

from adapters.api.app import create_app
from adapters.api.auth import PLATFORM_ADMIN, TENANT_ADMIN, AuthSettings
from adapters.api.driver.settings import DriverApiSettings
from adapters.api.shards import ApiShards
from adapters.payments.config import SecretBox
from adapters.postgres.shards import ShardDirectory
from domain.errors import NotFound
from domain.start_rules import StartRules
from tests.factories import PRICES, SLOTS
from tests.integration.shards_harness import TwoShards, catch_up, make_ledger, two_shards  # noqa: F401 - the fixture
from tests.operator_tokens import operator_headers

P1, P2 = "32010600019236", "32010600019237"


@pytest.fixture
def client(two_shards: TwoShards) -> Iterator[TestClient]:  # noqa: F811
    shards = ApiShards(two_shards.map, make_ledger, pool_size=2, ledgers=two_shards.ledgers)
    driver = DriverApiSettings(SecretBox.generate_setting("k1"), "https://charge.example.com",
                               start_rules=StartRules(5_00, 200_00))
    app = create_app(None, two_shards.map.directory_url, AuthSettings.generate(), shards=shards, driver=driver)
    with TestClient(app) as c:
        yield c


def admin_opens(client: TestClient, headers: dict[str, str], pile_no: str) -> str:
    """A tenant admin's station with one pile, through the API; returns the station id."""
    r = client.post("/operator/v1/stations", headers=headers,
                    json={"name": f"Station {pile_no[-2:]}", "address": "1 Road", "latitude": 31.2, "longitude": 121.5})
    assert r.status_code == 201, r.text
    station = r.json()["station_id"]
    r = client.post(f"/operator/v1/stations/{station}/piles", headers=headers,
                    json={"pile_no": pile_no, "kind": "DC", "gun_count": 2})
    assert r.status_code == 201, r.text
    return str(station)


def test_tenants_are_placed_and_each_sees_only_its_own(client: TestClient, two_shards: TwoShards) -> None:  # noqa: F811
    app: Any = client.app
    platform = operator_headers(app, PLATFORM_ADMIN)
    r = client.post("/operator/v1/tenants", headers=platform, json={"name": "Alpha", "shard": "s9"})
    assert (r.status_code, r.json()["code"]) == (409, "unknown_shard")
    r1 = client.post("/operator/v1/tenants", headers=platform, json={"name": "Alpha", "shard": "s1"})
    r2 = client.post("/operator/v1/tenants", headers=platform, json={"name": "Beta"})  # least loaded: s2
    assert (r1.status_code, r1.json()["shard"], r2.status_code, r2.json()["shard"]) == (201, "s1", 201, "s2")
    t1, t2 = UUID(r1.json()["tenant_id"]), UUID(r2.json()["tenant_id"])
    two_shards.ledgers["s1"].registry.tenant(t1)
    with pytest.raises(NotFound):
        two_shards.ledgers["s1"].registry.tenant(t2)  # Beta's events are on s2 only
    two_shards.ledgers["s2"].registry.tenant(t2)

    a1, a2 = operator_headers(app, TENANT_ADMIN, t1), operator_headers(app, TENANT_ADMIN, t2)
    station1, station2 = admin_opens(client, a1, P1), admin_opens(client, a2, P2)
    r = client.post(f"/operator/v1/stations/{station2}/piles", headers=a2,
                    json={"pile_no": P1, "kind": "DC", "gun_count": 2})
    assert (r.status_code, r.json()["code"]) == (409, "already_exists")  # Alpha's pile, on the other shard
    catch_up(two_shards)

    def stations(headers: dict[str, str]) -> list[str]:
        r = client.get("/operator/v1/stations", headers=headers)
        assert r.status_code == 200, r.text
        return [s["station_id"] for s in r.json()["items"]]

    assert (stations(a1), stations(a2)) == ([station1], [station2])
    assert client.get(f"/operator/v1/piles/{P2}", headers=a1).status_code == 404
    assert client.get(f"/operator/v1/stations/{station1}", headers=a2).status_code == 404
    assert client.get(f"/operator/v1/piles/{P2}", headers=a2).json()["pile_no"] == P2
    assert [t["name"] for t in client.get("/operator/v1/tenants", headers=a2).json()["items"]] == ["Beta"]

    # the platform admin's views merge both shards
    assert [t["name"] for t in client.get("/operator/v1/tenants", headers=platform).json()["items"]] == ["Alpha", "Beta"]
    assert sorted(stations(platform)) == sorted([station1, station2])
    board = client.get("/operator/v1/dashboard", headers=platform).json()
    assert (board["stations"], board["piles"]["total"], board["guns"]["total"]) == (2, 2, 4)
    assert client.get("/operator/v1/dashboard", headers=a1).json()["piles"]["total"] == 1
    screen = client.get("/operator/v1/dashboard/screen", headers=platform).json()
    assert (screen["piles"]["total"], len(screen["power_curve"])) == (2, 96)
    assert client.get(f"/operator/v1/piles/{P1}", headers=platform).json()["pile_no"] == P1  # found on s1

    # the directory the gateway will route logins by
    directory = ShardDirectory(two_shards.map)
    assert directory.shards_of_piles([P1, P2, "99999999999999"]) == {P1: "s1", P2: "s2"}
    assert (directory.shard_of_pile(P2), directory.shard_of_pile("99999999999999")) == ("s2", None)
    assert directory.tenants() == {t1: "s1", t2: "s2"}


def test_a_drivers_start_lands_in_the_tenants_shard(client: TestClient, two_shards: TwoShards) -> None:  # noqa: F811
    app: Any = client.app
    platform = operator_headers(app, PLATFORM_ADMIN)
    t1 = UUID(client.post("/operator/v1/tenants", headers=platform, json={"name": "Alpha", "shard": "s1"})
              .json()["tenant_id"])
    t2 = UUID(client.post("/operator/v1/tenants", headers=platform, json={"name": "Beta", "shard": "s2"})
              .json()["tenant_id"])
    for tenant, pile_no, shard in ((t1, P1, "s1"), (t2, P2, "s2")):
        station = UUID(admin_opens(client, operator_headers(app, TENANT_ADMIN, tenant), pile_no))
        ledger = two_shards.ledgers[shard]
        tariff = ledger.create_tariff(tenant, "standard", PRICES, SLOTS, "admin")
        ledger.assign_tariff(tariff, "admin", station_id=station)
        ledger.pile_connected(pile_no, datetime.now(UTC), "gateway-" + shard, 0x16, "v1")
        for gun in (1, 2):
            ledger.report_gun(pile_no, gun, "idle", True, {}, datetime.now(UTC))
    s1, s2 = two_shards.ledgers["s1"], two_shards.ledgers["s2"]
    driver = "wechat:wx-main:o-driver-2"
    wallet = s2.open_wallet(t2, driver, "driver")
    s2.top_up(wallet, key="topup:d2", amount=500_00, provider="wechat", payment_ref="wx-d2")
    token, _ = app.state.driver_sides.of(t2).identity.tokens.issue(t2, driver)
    headers = {"Authorization": f"Bearer {token}"}

    r = client.post("/driver/sessions", headers={**headers, "Idempotency-Key": "start-0001"},
                    json={"pile_no": P2, "gun_no": 1})
    assert r.status_code == 202, r.text
    trade_no = r.json()["trade_no"]
    assert s2.session(trade_no).pile_no == P2  # in s2's database
    with pytest.raises(NotFound):
        s1.session(trade_no)
    assert s2.wallet(wallet).held == r.json()["hold_fen"] > 0
    assert client.get(f"/driver/sessions/{trade_no}", headers=headers).json()["state"] == "requested"
    r = client.post("/driver/sessions", headers={**headers, "Idempotency-Key": "start-0002"},
                    json={"pile_no": P1, "gun_no": 1})
    assert r.status_code == 404, r.text  # Alpha's pile is not Beta's driver's to start (nor on Beta's shard)
    assert client.get("/driver/wallet", headers=headers).json()["held_fen"] == s2.wallet(wallet).held
    a2 = operator_headers(app, TENANT_ADMIN, t2)
    before = s2.session(trade_no).version
    assert client.post(f"/operator/v1/orders/{trade_no}/stop", headers=a2, json={"reason": "test"}).status_code == 202
    assert s2.session(trade_no).version > before  # the stop is an event on s2
    a1 = operator_headers(app, TENANT_ADMIN, t1)
    assert client.post(f"/operator/v1/orders/{trade_no}/stop", headers=a1, json={"reason": "x"}).status_code == 404
