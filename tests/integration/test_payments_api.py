"""The payment router on the API app: login, top-up, callbacks, wallet, refund, and who may see what."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from adapters.api.auth import DRIVER, AuthSettings, Principal
from adapters.api.app import create_app
from adapters.api.payments import payment_router
from domain.ledger import Ledger
from tests.payment_fakes import FakeAlipay, PayWorld


@pytest.fixture
def client(world: PayWorld, ledger: Ledger, database_url: str) -> Iterator[TestClient]:
    app = create_app(ledger, database_url, AuthSettings.generate(), pool_size=2)
    app.include_router(payment_router(world.service, world.identity))
    with TestClient(app) as c:
        yield c


def _login(client: TestClient, world: PayWorld) -> dict[str, str]:
    code, _ = world.wechat.login_code()
    r = client.post(f"/driver/login/wechat/{world.tenant_id}/wx-main", json={"code": code})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def _wechat_notify(client: TestClient, world: PayWorld, delivery: tuple[dict[str, str], bytes]) -> object:
    headers, body = delivery
    return client.post(f"/pay/wechat/notify/{world.tenant_id}/wx-main", content=body,
                       headers={**headers, "Content-Type": "application/json"})


def test_login_top_up_notify_balance_postings_refund(client: TestClient, world: PayWorld) -> None:
    auth = _login(client, world)
    r = client.post("/driver/wallet/top-ups", json={"amount_fen": 60_00}, headers=auth)
    assert r.status_code == 201, r.text
    top_up = r.json()
    assert top_up["provider"] == "wechat" and top_up["pay_params"]["package"].startswith("prepay_id=")
    delivery = world.wechat.payment_notification(top_up["out_trade_no"])
    first, second = _wechat_notify(client, world, delivery), _wechat_notify(client, world, delivery)
    assert (first.status_code, second.status_code) == (204, 204)  # type: ignore[attr-defined]
    assert client.get(f"/driver/wallet/top-ups/{top_up['out_trade_no']}", headers=auth).json()["state"] == "credited"
    wallet = client.get("/driver/wallet", headers=auth).json()
    assert (wallet["available_fen"], wallet["held_fen"]) == (60_00, 0)
    world.wechat.refund_answer = (200, "SUCCESS")
    r = client.post("/driver/wallet/refunds", json={"amount_fen": 15_00}, headers=auth)
    assert r.status_code == 200 and r.json()["refunds"][0]["status"] == "succeeded"
    postings = client.get("/driver/wallet/postings", headers=auth).json()["postings"]
    assert [p["kind"] for p in postings] == ["RefundCompleted", "RefundRequested", "ToppedUp"]
    assert postings[-1]["postings"] == [[["clearing:wechat", 60_00], ["available", -60_00]]]
    assert client.get("/driver/wallet", headers=auth).json()["available_fen"] == 45_00


def test_refused_callbacks_answer_fail_and_credit_nothing(client: TestClient, world: PayWorld) -> None:
    auth = _login(client, world)
    no = client.post("/driver/wallet/top-ups", json={"amount_fen": 10_00}, headers=auth).json()["out_trade_no"]
    forged = world.wechat.payment_notification(no, serial="PUB_KEY_ID_X")
    stale = world.wechat.payment_notification(no, timestamp=int(datetime.now(UTC).timestamp()) - 900)
    wrong_amount = world.wechat.payment_notification(no, amount=1)
    wrong_app = world.wechat.payment_notification(no, appid="wx-other")
    for delivery, status in ((forged, 401), (stale, 400), (wrong_amount, 400), (wrong_app, 400)):
        r = _wechat_notify(client, world, delivery)
        assert r.status_code == status and r.json()["code"] == "FAIL", r.text  # type: ignore[attr-defined]
    r = client.post(f"/pay/wechat/notify/{world.tenant_id}/nope", content=b"{}")
    assert r.status_code == 404 and r.json()["code"] == "FAIL"
    assert client.get("/driver/wallet", headers=auth).json()["available_fen"] == 0


def test_alipay_callback_answers_success_once_verified(client: TestClient, world: PayWorld) -> None:
    code, _ = world.alipay.auth_code()
    token = client.post(f"/driver/login/alipay/{world.tenant_id}/ali-main", json={"code": code}).json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    top_up = client.post("/driver/wallet/top-ups", json={"amount_fen": 20_00}, headers=auth).json()
    assert set(top_up["pay_params"]) == {"tradeNO"}
    form = world.alipay.payment_notification(top_up["out_trade_no"])
    url = f"/pay/alipay/notify/{world.tenant_id}/ali-main"
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    for _ in range(2):
        r = client.post(url, content=FakeAlipay.encode(form), headers=headers)
        assert (r.status_code, r.text) == (200, "success")
    forged = world.alipay.payment_notification(top_up["out_trade_no"], forge=True)
    r = client.post(url, content=FakeAlipay.encode(forged), headers=headers)
    assert r.text == "fail"
    assert client.get("/driver/wallet", headers=auth).json()["available_fen"] == 20_00


def test_a_driver_cannot_see_another_drivers_order_and_tokens_are_checked(client: TestClient, world: PayWorld) -> None:
    alice, bob = _login(client, world), _login(client, world)
    no = client.post("/driver/wallet/top-ups", json={"amount_fen": 10_00}, headers=alice).json()["out_trade_no"]
    assert client.get(f"/driver/wallet/top-ups/{no}", headers=bob).status_code == 404
    assert client.get(f"/driver/wallet/top-ups/{no}", headers=alice).status_code == 200
    assert client.get("/driver/wallet").status_code == 401
    expired, _ = world.identity.tokens.signer.issue(Principal("wechat:wx-main:o1", DRIVER, world.tenant_id),
                                                    now=datetime.now(UTC) - timedelta(days=1))
    r = client.get("/driver/wallet", headers={"Authorization": f"Bearer {expired}"})
    assert r.status_code == 401 and r.json()["code"] == "token_expired"


def test_bad_input_is_422_or_409_and_writes_nothing(client: TestClient, world: PayWorld) -> None:
    auth = _login(client, world)
    for body in ({"amount_fen": 0}, {"amount_fen": "100"}, {"amount_fen": 10.5}, {"amount_fen": 10**9}, {}):
        r = client.post("/driver/wallet/top-ups", json=body, headers=auth)
        assert r.status_code == 422 and r.json()["code"] == "validation_error", (body, r.text)
    r = client.post("/driver/wallet/refunds", json={"amount_fen": 1}, headers=auth)
    assert r.status_code == 409 and r.json()["code"] == "insufficient_funds"
    r = client.post(f"/driver/login/wechat/{world.tenant_id}/wx-main", json={"code": "forged"})
    assert r.status_code == 409 and r.json()["code"] == "login_refused"
    assert client.get("/driver/wallet/postings", headers=auth).json()["postings"] == []
