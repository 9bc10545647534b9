"""The payment side under abuse: unreadable signed amounts, top-up floods, oversized callbacks, the WeChat
app secret in logs, operator refunds that must reach the platform, and Alipay refunds whose answer is lost."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from adapters.api.auth import TENANT_ADMIN, AuthSettings
from adapters.api.driver.settings import DriverApiSettings
from adapters.api.app import create_app
from adapters.payments.base import NotificationRefused, fen_of_yuan
from adapters.payments.config import SecretBox
from adapters.payments.service import TopUpLimits
from domain.ledger import Ledger
from domain.wallet import Wallet
from tests.operator_tokens import operator_headers
from tests.payment_fakes import FakeAlipay, PayWorld

KEYS = SecretBox.generate_setting("k1")


@pytest.fixture
def payment_keys() -> str:
    return KEYS  # the channels of `world` (tests/conftest.py) open under the API's keys


@pytest.fixture
def auth() -> AuthSettings:
    return AuthSettings.generate()


def settings(world: PayWorld, **kw: object) -> DriverApiSettings:
    return DriverApiSettings(KEYS, "https://charge.example.com", wechat_api=world.wechat.url,
                             gateways={"wechat": world.wechat.url, "alipay": world.alipay.gateway}, **kw)  # type: ignore[arg-type]


@pytest.fixture
def client(world: PayWorld, ledger: Ledger, database_url: str, auth: AuthSettings) -> Iterator[TestClient]:
    app = create_app(ledger, database_url, auth, pool_size=2,
                     driver=settings(world, top_up_limits=TopUpLimits(pending=3, per_hour=5)))
    with TestClient(app) as c:
        yield c


def login(client: TestClient, world: PayWorld, provider: str = "wechat") -> dict[str, str]:
    if provider == "wechat":
        code, _ = world.wechat.login_code()
    else:
        code, _ = world.alipay.auth_code()
    app = "wx-main" if provider == "wechat" else "ali-main"
    r = client.post(f"/driver/login/{provider}/{world.tenant_id}/{app}", json={"code": code})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}", "driver_id": r.json()["driver_id"]}


def headers(auth: dict[str, str]) -> dict[str, str]:
    return {"Authorization": auth["Authorization"]}


# ---- Alipay: a signed amount that is not an amount ---------------------------------------------------------
@pytest.mark.parametrize("amount", ["sNaN", "NaN", "-NaN", "Infinity", "-Infinity", "1e999", "1E2", "-20.00",
                                   "20.001", "20.", ".5", " 20.00", "20.00\x00", "٢٠.٠٠", "0x14", "1_000.00", ""])
def test_an_alipay_amount_that_is_not_a_plain_amount_is_refused_as_the_platform_expects(
        client: TestClient, world: PayWorld, amount: str) -> None:
    auth = login(client, world, "alipay")
    no = client.post("/driver/wallet/top-ups", json={"amount_fen": 20_00}, headers=headers(auth)).json()["out_trade_no"]
    form = world.alipay.payment_notification(no, total_amount=amount or " ")  # signed by the platform's key
    r = client.post(f"/pay/alipay/notify/{world.tenant_id}/ali-main", content=FakeAlipay.encode(form),
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert (r.status_code, r.text) == (400, "fail"), (amount, r.status_code, r.text)
    assert client.get("/driver/wallet", headers=headers(auth)).json()["available_fen"] == 0
    assert world.payments.order(no).state == "prepared"


def test_plain_amounts_are_read_exactly() -> None:
    assert [fen_of_yuan(x) for x in ("0.01", "20", "20.5", "20.50", "99999.99")] == [1, 2000, 2050, 2050, 9999999]
    for bad in ("sNaN", "1e999", "-1", "1.234", "１.00"):
        with pytest.raises(NotificationRefused):
            fen_of_yuan(bad)


# ---- top-ups: each one calls the platform's prepay ---------------------------------------------------------
def test_pending_top_ups_per_driver_are_limited(client: TestClient, world: PayWorld) -> None:
    auth = login(client, world)
    made = [client.post("/driver/wallet/top-ups", json={"amount_fen": 10_00}, headers=headers(auth)) for _ in range(4)]
    assert [r.status_code for r in made] == [201, 201, 201, 429]
    assert made[-1].json()["code"] == "too_many_pending_top_ups" and made[-1].json()["details"]["limit"] == 3
    assert len(world.wechat.orders) == 3, "the refused top-up still called the platform's prepay"
    # paying one frees a place; another driver is not held back by this one
    headers_, body = world.wechat.payment_notification(made[0].json()["out_trade_no"])
    assert client.post(f"/pay/wechat/notify/{world.tenant_id}/wx-main", content=body,
                       headers={**headers_, "Content-Type": "application/json"}).status_code == 204
    assert client.post("/driver/wallet/top-ups", json={"amount_fen": 10_00}, headers=headers(auth)).status_code == 201
    other = login(client, world)
    assert client.post("/driver/wallet/top-ups", json={"amount_fen": 10_00}, headers=headers(other)).status_code == 201


def test_top_ups_per_driver_and_hour_are_limited(client: TestClient, world: PayWorld) -> None:
    auth = login(client, world)
    statuses = []
    for _ in range(6):  # each paid at once, so only the hourly limit can refuse
        r = client.post("/driver/wallet/top-ups", json={"amount_fen": 1_00}, headers=headers(auth))
        statuses.append(r.status_code)
        if r.status_code == 201:
            h, body = world.wechat.payment_notification(r.json()["out_trade_no"])
            client.post(f"/pay/wechat/notify/{world.tenant_id}/wx-main", content=body,
                        headers={**h, "Content-Type": "application/json"})
    assert statuses == [201] * 5 + [429]
    assert r.json()["code"] == "too_many_top_ups" and int(r.headers["Retry-After"]) > 0
    assert len(world.wechat.orders) == 5


# ---- callbacks: a few KB at most -----------------------------------------------------------------------------
@pytest.mark.parametrize("provider,app", [("wechat", "wx-main"), ("alipay", "ali-main")])
def test_a_callback_body_larger_than_the_cap_is_413_before_it_is_read(client: TestClient, world: PayWorld,
                                                                      provider: str, app: str) -> None:
    url = f"/pay/{provider}/notify/{world.tenant_id}/{app}"
    for size in (8_193, 100_000):  # over the callbacks' cap, under and over the API's 64 KiB default
        big = b"a=" + b"x" * (size - 2)
        r = client.post(url, content=big, headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code == 413 and r.json()["code"] == "body_too_large", r.text

    def chunks() -> Iterator[bytes]:  # no Content-Length: the cap holds while reading
        for _ in range(100):
            yield b"x" * 1000

    r = client.post(url, content=chunks(), headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413, r.text


# ---- the WeChat app secret never reaches the log ---------------------------------------------------------------
def test_the_wechat_app_secret_is_never_logged(client: TestClient, world: PayWorld,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    login(client, world)
    client.post(f"/driver/login/wechat/{world.tenant_id}/wx-main", json={"code": "a-code-wechat-refuses"})
    assert any("jscode2session" in r.getMessage() for r in caplog.records), "the request log line is kept"
    for record in caplog.records:
        assert world.wechat.app_secret not in record.getMessage(), record.name
    assert world.wechat.app_secret not in caplog.text


# ---- operator refunds reach the platform --------------------------------------------------------------------
def operator(client: TestClient, world: PayWorld) -> dict[str, str]:
    return operator_headers(client.app, TENANT_ADMIN, world.tenant_id, subject="ops")


def paid_wechat_top_up(client: TestClient, world: PayWorld, auth: dict[str, str], fen: int) -> str:
    no = client.post("/driver/wallet/top-ups", json={"amount_fen": fen}, headers=headers(auth)).json()["out_trade_no"]
    h, body = world.wechat.payment_notification(no)
    assert client.post(f"/pay/wechat/notify/{world.tenant_id}/wx-main", content=body,
                       headers={**h, "Content-Type": "application/json"}).status_code == 204
    return no


def test_an_operator_refund_is_sent_to_the_platform_and_completes(client: TestClient, world: PayWorld,
                                                                   auth: AuthSettings) -> None:
    driver = login(client, world)
    no = paid_wechat_top_up(client, world, driver, 50_00)
    world.wechat.refund_answer = (200, "SUCCESS")
    body = {"driver_id": driver["driver_id"], "refund_id": "rf-ops-1", "amount_fen": 20_00, "provider": "wechat"}
    r = client.post("/operator/v1/refunds", headers=operator(client, world), json=body)
    assert r.status_code == 202, r.text
    [refund] = r.json()["refunds"]
    assert (refund["out_trade_no"], refund["status"], refund["amount_fen"]) == (no, "succeeded", 20_00)
    assert world.wechat.refunds[refund["out_refund_no"]]["amount"]["refund"] == 20_00  # the platform got it
    wallet = world.ledger.wallet(Wallet.create_id(world.tenant_id, driver["driver_id"]))
    assert (wallet.available, wallet.refund_pending, wallet.balances["clearing:wechat"]) == (30_00, 0, 30_00)
    # the same refund id again: the same refund, nothing sent twice
    again = client.post("/operator/v1/refunds", headers=operator(client, world), json=body)
    same = [(x["out_refund_no"], x["status"], x["amount_fen"]) for x in again.json()["refunds"]]
    assert again.status_code == 202 and same == [(refund["out_refund_no"], "succeeded", 20_00)]
    assert len(world.wechat.refunds) == 1
    other = client.post("/operator/v1/refunds", headers=operator(client, world), json={**body, "amount_fen": 1_00})
    assert (other.status_code, other.json()["code"]) == (409, "idempotency_conflict")


def test_an_operator_refund_the_platform_refuses_gives_the_money_back(client: TestClient, world: PayWorld,
                                                                      auth: AuthSettings) -> None:
    driver = login(client, world)
    paid_wechat_top_up(client, world, driver, 50_00)
    world.wechat.refund_answer = (400, "")
    r = client.post("/operator/v1/refunds", headers=operator(client, world),
                    json={"driver_id": driver["driver_id"], "refund_id": "rf-ops-2", "amount_fen": 50_00})
    assert r.status_code == 202 and r.json()["refunds"][0]["status"] == "failed"
    wallet = world.ledger.wallet(Wallet.create_id(world.tenant_id, driver["driver_id"]))
    assert (wallet.available, wallet.refund_pending) == (50_00, 0)
    # money that did not come through a platform cannot be refunded through one
    r = client.post("/operator/v1/refunds", headers=operator(client, world),
                    json={"driver_id": driver["driver_id"], "refund_id": "rf-ops-3", "amount_fen": 50_00,
                          "provider": "alipay"})
    assert (r.status_code, r.json()["code"]) == (409, "refund_refused")
    assert world.ledger.wallet(wallet.id).refund_pending == 0


# ---- Alipay: an unsigned or error answer is not a failure until the query says so -------------------------------
def alipay_paid(world: PayWorld, fen: int = 88_88) -> Wallet:
    no = world.service.create_top_up(world.alipay_payer(), fen).out_trade_no
    world.service.handle_notification("alipay", world.tenant_id, "ali-main", {},
                                      FakeAlipay.encode(world.alipay.payment_notification(no)))
    return world.ledger.wallet(Wallet.create_id(world.tenant_id, world.alipay_payer().driver_id))


@pytest.mark.parametrize(("at_alipay", "status", "balances"), [
    ("done", "succeeded", (80_00, 0, 8_88)),  # Alipay made the refund: the query says so, the money leaves
    ("lost", "failed", (88_88, 0, 0)),  # Alipay never made it: the query finds none, the money comes back
])
def test_an_unsigned_refund_answer_is_settled_by_the_refund_query(world: PayWorld, at_alipay: str, status: str,
                                                                   balances: tuple[int, int, int]) -> None:
    alipay_paid(world)
    world.alipay.refund_unsigned = at_alipay
    [refund] = world.service.request_refund(world.alipay_payer(), 8_88)
    assert refund.status == status
    wallet = world.ledger.wallet(Wallet.create_id(world.tenant_id, world.alipay_payer().driver_id))
    assert (wallet.available, wallet.refund_pending, 88_88 - wallet.available - wallet.refund_pending) == balances


def test_an_unsigned_refund_answer_with_no_readable_query_stays_pending_until_reconciled(world: PayWorld) -> None:
    alipay_paid(world)
    world.alipay.refund_unsigned, world.alipay.query_unsigned = "done", True
    [refund] = world.service.request_refund(world.alipay_payer(), 8_88)
    assert refund.status == "processing"
    wallet_id = Wallet.create_id(world.tenant_id, world.alipay_payer().driver_id)
    assert world.ledger.wallet(wallet_id).refund_pending == 8_88, "money returned while Alipay may still refund"
    world.alipay.query_unsigned = False
    assert world.service.reconcile_refund(refund.out_trade_no, refund.out_refund_no) == "succeeded"
    assert world.ledger.wallet(wallet_id).refund_pending == 0


def test_a_signed_business_failure_is_checked_by_the_query_too(world: PayWorld) -> None:
    alipay_paid(world)
    world.alipay.refund_fails = True
    [refund] = world.service.request_refund(world.alipay_payer(), 8_88)
    assert refund.status == "failed"
    assert world.alipay.calls[-2:] == ["alipay.trade.refund", "alipay.trade.fastpay.refund.query"]
