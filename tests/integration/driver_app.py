"""The driver API on the real app, as its tests use it (tests/integration/test_driver_*.py): a station of two
piles on a tariff, the app and its client, and what a driver does through it (login, top up, start).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from adapters.api.auth import AuthSettings
from adapters.api.driver.settings import DriverApiSettings
from domain.start_rules import StartRules
from adapters.api.app import create_app
from adapters.payments.config import SecretBox
from domain.ledger import Ledger
from tests.factories import PRICES, SLOTS
from tests.payment_fakes import PayWorld

PILE, OTHER_PILE = "32010600019236", "32010600019237"
KEYS = SecretBox.generate_setting("k1")


@pytest.fixture
def payment_keys() -> str:
    return KEYS  # the channels of `world` (tests/conftest.py) open under the API's keys


@pytest.fixture
def world(world: PayWorld, ledger: Ledger) -> PayWorld:
    """The conftest's world, with a station of two piles on a tariff."""
    w = world
    station = ledger.create_station(w.tenant_id, "Riverside", "1 River Road", 31.23, 121.47, "admin")
    for pile_no in (PILE, OTHER_PILE):
        ledger.register_pile(station, pile_no, "DC", 2, "admin")
    tariff = ledger.create_tariff(w.tenant_id, "standard", PRICES, SLOTS, "admin")
    ledger.assign_tariff(tariff, "admin", station_id=station)
    return w


def connect(ledger: Ledger, pile_no: str, status: str = "idle") -> None:
    """What the pile link writes when a pile logs in and reports its guns."""
    now = datetime.now(UTC)
    ledger.pile_connected(pile_no, now, "test-gateway", 0x16, "v1")
    for gun_no in (1, 2):
        ledger.report_gun(pile_no, gun_no, status, True, {}, now)


def settings_for(world: PayWorld, **kw: Any) -> DriverApiSettings:
    return DriverApiSettings(KEYS, "https://charge.example.com", start_rules=StartRules(5_00, 200_00),
                             stream_poll=0.05, gateways={"wechat": world.wechat.url, "alipay": world.alipay.gateway},
                             wechat_api=world.wechat.url, **kw)


def make_app(ledger: Ledger, database_url: str, world: PayWorld, auth: AuthSettings, **kw: Any) -> FastAPI:
    return create_app(ledger, database_url, auth, pool_size=3, driver=settings_for(world, **kw))


@pytest.fixture
def auth_settings() -> AuthSettings:
    return AuthSettings.generate()


@pytest.fixture
def client(world: PayWorld, ledger: Ledger, database_url: str, auth_settings: AuthSettings) -> Iterator[TestClient]:
    with TestClient(make_app(ledger, database_url, world, auth_settings)) as c:
        yield c


def login(client: TestClient, world: PayWorld, openid: str | None = None) -> dict[str, str]:
    code, _ = world.wechat.login_code(openid)
    r = client.post(f"/driver/login/wechat/{world.tenant_id}/wx-main", json={"code": code})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def top_up(client: TestClient, world: PayWorld, auth: dict[str, str], fen: int) -> None:
    """Top up through the mini-program flow: prepay, then WeChat's signed notification to our callback."""
    r = client.post("/driver/wallet/top-ups", json={"amount_fen": fen}, headers=auth)
    assert r.status_code == 201, r.text
    headers, body = world.wechat.payment_notification(r.json()["out_trade_no"])
    r = client.post(f"/pay/wechat/notify/{world.tenant_id}/wx-main", content=body,
                    headers={**headers, "Content-Type": "application/json"})
    assert r.status_code == 204, r.text


def start(client: TestClient, auth: dict[str, str], key: str, pile_no: str = PILE, gun_no: int = 1) -> Any:
    return client.post("/driver/sessions", json={"pile_no": pile_no, "gun_no": gun_no},
                       headers={**auth, "Idempotency-Key": key})


def wallet(client: TestClient, auth: dict[str, str]) -> dict[str, int]:
    return client.get("/driver/wallet", headers=auth).json()
