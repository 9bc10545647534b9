"""The driver H5 pages over two tenant shards (docs/shards.md): a driver of a tenant on ``s2`` sees their
wallet and their history from ``s2`` (its Ledger, its orders view), never the directory shard's."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapters.api.app import create_app
from adapters.api.auth import AuthSettings
from adapters.api.driver.settings import DriverApiSettings
from adapters.api.shards import ApiShards
from adapters.payments.config import SecretBox
from adapters.postgres.shards import ShardDirectory
from adapters.web.mount import mount
from domain.start_rules import StartRules
from tests.console import FAST
from tests.factories import build_world
from tests.integration.shards_harness import TwoShards, make_ledger, settle_sessions, two_shards  # noqa: F401
from tests.integration.test_shards_orders import PILES, catch_up

H5 = "/console/h5"
DRIVER = "wechat:wx-main:o-driver-1"


@pytest.fixture
def app(two_shards: TwoShards) -> Iterator[Any]:  # noqa: F811
    shards = ApiShards(two_shards.map, make_ledger, pool_size=2, ledgers=two_shards.ledgers)
    driver = DriverApiSettings(SecretBox.generate_setting("k1"), "https://charge.example.com",
                               start_rules=StartRules(5_00, 200_00))
    application = mount(create_app(None, two_shards.map.directory_url, AuthSettings.generate(), shards=shards,
                                   driver=driver), FAST)
    with TestClient(application):
        yield application


def test_a_drivers_wallet_and_history_come_from_their_tenants_shard(app: Any, two_shards: TwoShards) -> None:  # noqa: F811
    directory = ShardDirectory(two_shards.map)
    worlds = {}
    for name, ledger in two_shards.ledgers.items():
        worlds[name] = build_world(ledger, pile_no=PILES[name], top_up=80_00 if name == "s2" else 10_00,
                                   driver=DRIVER)
        directory.place(worlds[name].tenant_id, name, "test")
    s2 = worlds["s2"]
    trades = settle_sessions(two_shards.ledgers["s2"], PILES["s2"], s2.wallet_id, 2)
    settle_sessions(two_shards.ledgers["s1"], PILES["s1"], worlds["s1"].wallet_id, 1)
    catch_up(two_shards)

    token, _ = app.state.driver_sides.of(s2.tenant_id).identity.tokens.issue(s2.tenant_id, DRIVER)
    client = TestClient(app, cookies={"cl_driver": token})
    history = client.get(f"{H5}/history")
    assert history.status_code == 200, history.text
    assert sorted(trade for trade in trades if f'data-trade="{trade}"' in history.text) == sorted(trades)
    assert history.text.count('data-trade="') == 2  # not the s1 tenant's order
    home = client.get(f"{H5}/")
    assert home.status_code == 200, home.text
    available = two_shards.ledgers["s2"].wallet(s2.wallet_id).available
    assert f"{available // 100}.{available % 100:02d}" in home.text  # s2's wallet, not s1's namesake
