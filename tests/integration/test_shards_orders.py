"""A platform admin's orders, revenue and CSV over two shards (docs/shards.md): every shard's keyset page
merged newest first, a cursor carrying each shard's position (checked, opaque), an order arriving while
someone pages neither shown twice nor skipped, revenue per day and station from both, the CSV shard
after shard; a tenant admin still pages their own shard with the single-shard cursor."""

from __future__ import annotations

import base64
import csv
import io
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapters.api.app import create_app
from adapters.api.auth import PLATFORM_ADMIN, TENANT_ADMIN, AuthSettings
from adapters.api.shards import ApiShards
from adapters.postgres.shards import ShardDirectory
from tests.factories import build_world
from tests.integration.shards_harness import (T0, TwoShards, catch_up, make_ledger, settle_sessions,  # noqa: F401
                                             two_shards)
from tests.operator_tokens import operator_headers

PILES = {"s1": "32010600019236", "s2": "32010600019237"}
EVERY = timedelta(minutes=10)


@pytest.fixture
def client(two_shards: TwoShards) -> Iterator[TestClient]:  # noqa: F811
    shards = ApiShards(two_shards.map, make_ledger, pool_size=2, ledgers=two_shards.ledgers)
    app = create_app(None, two_shards.map.directory_url, AuthSettings.generate(), shards=shards)
    with TestClient(app) as c:
        yield c


def charge_both(shards: TwoShards) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Three sessions on s1 (T0, +10, +20 min) and four on s2 (T0+5, +15, +25, +35): interleaved in time."""
    worlds, trades = {}, {}
    directory = ShardDirectory(shards.map)
    for i, (name, ledger) in enumerate(shards.ledgers.items()):
        worlds[name] = build_world(ledger, pile_no=PILES[name])
        directory.place(worlds[name].tenant_id, name, "test")
        trades[name] = settle_sessions(ledger, PILES[name], worlds[name].wallet_id, 3 + i, at=T0 + i * EVERY / 2,
                                       every=EVERY)
    catch_up(shards)
    return worlds, trades


def pages(client: TestClient, headers: dict[str, str], limit: int) -> list[list[str]]:
    found, cursor = [], None
    while True:
        r = client.get("/operator/v1/orders", headers=headers,
                       params={"limit": limit, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        found.append([o["trade_no"] for o in r.json()["items"]])
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return found


def test_the_platform_admins_orders_are_merged_newest_first_across_shards(client: TestClient,
                                                                         two_shards: TwoShards) -> None:  # noqa: F811
    worlds, trades = charge_both(two_shards)
    platform = operator_headers(client.app, PLATFORM_ADMIN)
    s1, s2 = trades["s1"], trades["s2"]
    newest_first = [s2[3], s2[2], s1[2], s2[1], s1[1], s2[0], s1[0]]  # +35, +25, +20, +15, +10, +5, +0 min
    assert pages(client, platform, 50) == [newest_first]
    assert pages(client, platform, 3) == [newest_first[:3], newest_first[3:6], newest_first[6:]]
    assert pages(client, platform, 7) == [newest_first]  # every shard done: no empty last page
    # a tenant admin: their shard only, with the single shard's cursor
    a2 = operator_headers(client.app, TENANT_ADMIN, worlds["s2"].tenant_id)
    assert pages(client, a2, 2) == [trades["s2"][::-1][:2], trades["s2"][::-1][2:], []]


def test_an_order_arriving_while_paging_is_neither_repeated_nor_skipped(client: TestClient,
                                                                       two_shards: TwoShards) -> None:  # noqa: F811
    worlds, trades = charge_both(two_shards)
    platform = operator_headers(client.app, PLATFORM_ADMIN)
    first = client.get("/operator/v1/orders", headers=platform, params={"limit": 3}).json()
    late = settle_sessions(two_shards.ledgers["s1"], PILES["s1"], worlds["s1"].wallet_id, 1, at=T0 + 9 * EVERY)
    catch_up(two_shards)
    seen, cursor = [o["trade_no"] for o in first["items"]], first["next_cursor"]
    while cursor:
        body = client.get("/operator/v1/orders", headers=platform, params={"limit": 3, "cursor": cursor}).json()
        seen += [o["trade_no"] for o in body["items"]]
        cursor = body["next_cursor"]
    assert sorted(seen) == sorted(trades["s1"] + trades["s2"]) and late[0] not in seen  # each once, the new one later
    assert pages(client, platform, 50)[0][0] == late[0]  # a fresh listing starts with it


def test_a_cursor_is_checked(client: TestClient, two_shards: TwoShards) -> None:  # noqa: F811
    worlds, _ = charge_both(two_shards)
    platform = operator_headers(client.app, PLATFORM_ADMIN)
    a1 = operator_headers(client.app, TENANT_ADMIN, worlds["s1"].tenant_id)
    merged = client.get("/operator/v1/orders", headers=platform, params={"limit": 2}).json()["next_cursor"]
    single = client.get("/operator/v1/orders", headers=a1, params={"limit": 2}).json()["next_cursor"]

    def b64(text: str) -> str:
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    for headers, cursor in ((platform, single), (a1, merged), (platform, b64("m1|s1:5")),
                            (platform, b64("m1|s1:5,s2:0")), (platform, b64("m1|s2:5,s1:5")),
                            (platform, b64("m1|s1:5,s1:5,s2:*")), (platform, b64("m1|s1:x,s2:-")),
                            (platform, b64("m2|s1:5,s2:-")), (platform, "!!")):
        r = client.get("/operator/v1/orders", headers=headers, params={"cursor": cursor})
        assert r.status_code == 422, (cursor, r.text)
        if cursor != "!!":
            assert r.json()["code"] == "invalid_cursor"
    assert client.get("/operator/v1/orders", headers=platform,
                      params={"cursor": b64("m1|s1:*,s2:-")}).json()["next_cursor"] is None  # s1 from the top


def test_revenue_and_csv_over_both_shards(client: TestClient, two_shards: TwoShards) -> None:  # noqa: F811
    worlds, trades = charge_both(two_shards)
    platform = operator_headers(client.app, PLATFORM_ADMIN)
    r = client.get("/operator/v1/revenue", headers=platform)
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert {i["station_id"]: i["sessions"] for i in items} == {str(worlds["s1"].station_id): 3,
                                                                str(worlds["s2"].station_id): 4}
    assert [i["station_id"] for i in items] == sorted(i["station_id"] for i in items)  # one day, by station
    assert r.json()["totals"]["sessions"] == 7
    a1 = operator_headers(client.app, TENANT_ADMIN, worlds["s1"].tenant_id)
    per_tenant = client.get("/operator/v1/revenue", headers=a1).json()
    assert per_tenant["totals"]["sessions"] == 3
    assert r.json()["totals"]["energy"] == per_tenant["totals"]["energy"] * 7 // 3

    r = client.get("/operator/v1/orders.csv", headers=platform)
    assert r.status_code == 200, r.text
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["trade_no"] for row in rows] == trades["s1"][::-1] + trades["s2"][::-1]  # shard after shard
    assert [row["trade_no"] for row in csv.DictReader(io.StringIO(
        client.get("/operator/v1/orders.csv", headers=a1).text))] == trades["s1"][::-1]


def test_the_consoles_orders_list_merges_the_shards_for_a_platform_admin(two_shards: TwoShards) -> None:  # noqa: F811
    from adapters.web.mount import mount
    from tests.console import FAST, signed_in

    shards = ApiShards(two_shards.map, make_ledger, pool_size=2, ledgers=two_shards.ledgers)
    app = mount(create_app(None, two_shards.map.directory_url, AuthSettings.generate(), shards=shards), FAST)
    with TestClient(app):
        _, trades = charge_both(two_shards)
        console = signed_in(app, "root", PLATFORM_ADMIN)
        page = console.get("/console/orders")
        assert page.status_code == 200, page.text
        assert all(trade in page.text for trade in trades["s1"] + trades["s2"])
        assert console.get("/console/orders", params={"cursor": "MTA0Mg"}).status_code == 422  # a single shard's
