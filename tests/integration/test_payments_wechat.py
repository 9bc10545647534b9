"""WeChat Pay v3 through the real ``wechatpayv3`` SDK against a fake platform with keys made per run."""

from __future__ import annotations

import base64
import threading
import time
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from adapters.payments.base import AppMismatch, InvalidSignature, StaleNotification
from adapters.payments.config import Channels
from adapters.payments.service import PaymentService
from adapters.postgres.env import eventsourcing_env
from domain.errors import NotFound
from domain.ledger import Ledger
from domain.payment import PaymentAmountMismatch
from domain.wallet import Wallet
from tests.payment_fakes import KeyPair, PayWorld


def _wallet(world: PayWorld, openid: str = "o-driver-1") -> Wallet:
    return world.ledger.wallet(Wallet.create_id(world.tenant_id, world.wechat_payer(openid).driver_id))


def _top_up(world: PayWorld, amount: int = 50_00, openid: str = "o-driver-1") -> str:
    top_up = world.service.create_top_up(world.wechat_payer(openid), amount)
    return top_up.out_trade_no


def _notify(world: PayWorld, headers: dict[str, str], body: bytes) -> str:
    return world.service.handle_notification("wechat", world.tenant_id, "wx-main", headers, body).outcome


def test_prepay_answers_request_payment_parameters_signed_with_the_merchant_key(world: PayWorld) -> None:
    top_up = world.service.create_top_up(world.wechat_payer(), 30_00)
    sent = world.wechat.orders[top_up.out_trade_no]
    assert sent["amount"] == {"total": 30_00, "currency": "CNY"}
    assert sent["payer"] == {"openid": "o-driver-1"}
    assert sent["notify_url"] == f"https://charge.example.com/pay/wechat/notify/{world.tenant_id}/wx-main"
    p = top_up.pay_params
    assert p["appId"] == world.wechat.app_id and p["package"] == f"prepay_id={sent['prepay_id']}"
    assert p["signType"] == "RSA"
    message = f"{p['appId']}\n{p['timeStamp']}\n{p['nonceStr']}\n{p['package']}\n".encode()
    merchant_public = load_pem_public_key(world.wechat.merchant.public_pem.encode())
    merchant_public.verify(base64.b64decode(p["paySign"]), message, padding.PKCS1v15(), hashes.SHA256())  # type: ignore[union-attr]
    order = world.payments.order(top_up.out_trade_no)
    assert order.state == "prepared" and order.provider_ref == sent["prepay_id"]


def test_a_verified_notification_credits_the_wallet_once_when_delivered_twice(world: PayWorld) -> None:
    out_trade_no = _top_up(world, 50_00)
    headers, body = world.wechat.payment_notification(out_trade_no, transaction_id="4200000001")
    assert _notify(world, headers, body) == "credited"
    assert _notify(world, headers, body) == "duplicate"
    again = world.wechat.payment_notification(out_trade_no, transaction_id="4200000001")  # a fresh retry
    assert _notify(world, *again) == "duplicate"
    wallet = _wallet(world)
    assert wallet.available == 50_00
    order = world.payments.order(out_trade_no)
    assert order.state == "credited" and order.transaction_id == "4200000001"
    events = [type(e).__name__ for e in world.payments.repository.event_store.get(order.id)]
    assert events == ["Created", "Prepared", "Paid", "Credited"]
    top_ups = [e for e in world.ledger.wallets.events.get(wallet.id) if type(e).__name__ == "ToppedUp"]
    assert [(e.key, e.payment_ref, e.provider) for e in top_ups] == [(f"topup:{out_trade_no}", out_trade_no, "wechat")]


def test_a_forged_signature_is_refused_and_changes_nothing(world: PayWorld) -> None:
    out_trade_no = _top_up(world)
    headers, body = world.wechat.payment_notification(out_trade_no, key=KeyPair())  # signed by someone else
    with pytest.raises(InvalidSignature):
        _notify(world, headers, body)
    headers, body = world.wechat.payment_notification(out_trade_no)
    tampered = body.replace(b'"summary": "notification"', b'"summary": "tampered!!!!"')
    with pytest.raises(InvalidSignature):
        _notify(world, headers, tampered)
    assert world.payments.order(out_trade_no).state == "prepared"
    assert _wallet(world).available == 0


def test_an_unknown_key_id_a_missing_signature_type_or_a_wrong_apiv3_key_is_refused(world: PayWorld) -> None:
    out_trade_no = _top_up(world)
    headers, body = world.wechat.payment_notification(out_trade_no, serial="PUB_KEY_ID_SOMEONE_ELSE")
    with pytest.raises(InvalidSignature):  # refused before the SDK would go to the network for certificates
        _notify(world, headers, body)
    headers, body = world.wechat.payment_notification(out_trade_no)
    del headers["Wechatpay-Signature-Type"]
    with pytest.raises(InvalidSignature):
        _notify(world, headers, body)
    headers, body = world.wechat.payment_notification(out_trade_no, apiv3_key="k" * 32)
    with pytest.raises(InvalidSignature):  # the signature is good, the resource does not decrypt
        _notify(world, headers, body)
    assert _wallet(world).available == 0


def test_a_stale_timestamp_is_refused(world: PayWorld) -> None:
    out_trade_no = _top_up(world)
    now = int(time.time())
    world.service.providers.now = lambda: datetime.fromtimestamp(now, UTC)  # the window's edges, exactly
    for skew in (-301, +301, -3600):
        headers, body = world.wechat.payment_notification(out_trade_no, timestamp=now + skew)
        with pytest.raises(StaleNotification):
            _notify(world, headers, body)
    assert _wallet(world).available == 0
    headers, body = world.wechat.payment_notification(out_trade_no, timestamp=now - 300)
    assert _notify(world, headers, body) == "credited"


def test_a_wrong_amount_is_refused(world: PayWorld) -> None:
    out_trade_no = _top_up(world, 50_00)
    headers, body = world.wechat.payment_notification(out_trade_no, amount=500_00)
    with pytest.raises(PaymentAmountMismatch):
        _notify(world, headers, body)
    assert world.payments.order(out_trade_no).state == "prepared"
    assert _wallet(world).available == 0


def test_a_wrong_app_id_is_refused(world: PayWorld) -> None:
    out_trade_no = _top_up(world)
    headers, body = world.wechat.payment_notification(out_trade_no, appid="wx0000000000000000")
    with pytest.raises(AppMismatch):
        _notify(world, headers, body)
    assert _wallet(world).available == 0


def test_a_notification_for_an_order_of_another_channel_or_tenant_is_refused(world: PayWorld) -> None:
    out_trade_no = _top_up(world)
    headers, body = world.wechat.payment_notification(out_trade_no)
    other_tenant = world.ledger.create_tenant("Other", "admin")
    with pytest.raises(NotFound):  # the other tenant has no such channel
        world.service.handle_notification("wechat", other_tenant, "wx-main", headers, body)
    with pytest.raises(NotFound):  # the channel is not an Alipay one
        world.service.handle_notification("alipay", world.tenant_id, "wx-main", headers, body)
    assert _wallet(world).available == 0


def test_two_concurrent_notifications_for_one_order_credit_once(world: PayWorld, database_url: str) -> None:
    """Two API processes (each its own Applications and pools) receive the same payment at once."""
    out_trade_no = _top_up(world, 42_00)
    deliveries = [world.wechat.payment_notification(out_trade_no, transaction_id="4200000042") for _ in range(2)]
    env = eventsourcing_env(database_url)
    processes = []
    for _ in range(2):
        ledger = Ledger(env)
        payments = ledger.payments
        processes.append(PaymentService(ledger, payments, Channels(payments, world.channels.box),
                                        world.service.providers))
    barrier = threading.Barrier(2, timeout=30)
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def deliver(i: int) -> None:
        try:
            barrier.wait()
            outcomes.append(processes[i].handle_notification("wechat", world.tenant_id, "wx-main", *deliveries[i]).outcome)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=deliver, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in processes:
        p.ledger.close()
        p.payments.close()
    assert not errors, errors
    assert len(outcomes) == 2 and "credited" in outcomes
    wallet = _wallet(world)
    assert wallet.available == 42_00
    top_ups = [e for e in world.ledger.wallets.events.get(wallet.id) if type(e).__name__ == "ToppedUp"]
    assert len(top_ups) == 1
    names = [type(e).__name__ for e in world.payments.repository.event_store.get(world.payments.order(out_trade_no).id)]
    assert names.count("Paid") == 1 and names.count("Credited") == 1


def test_a_refund_that_succeeds_by_notification_moves_the_money_out(world: PayWorld) -> None:
    out_trade_no = _top_up(world, 50_00)
    _notify(world, *world.wechat.payment_notification(out_trade_no))
    [refund] = world.service.request_refund(world.wechat_payer(), 20_00)
    assert refund.status == "processing" and refund.out_trade_no == out_trade_no
    sent = world.wechat.refunds[refund.out_refund_no]
    assert sent["amount"] == {"refund": 20_00, "total": 50_00, "currency": "CNY"}
    wallet = _wallet(world)
    assert (wallet.available, wallet.refund_pending) == (30_00, 20_00)
    headers, body = world.wechat.refund_notification(refund.out_refund_no, "SUCCESS")
    assert _notify(world, headers, body) == "refund_succeeded"
    assert _notify(world, headers, body) == "refund_succeeded"  # redelivered: nothing more moves
    wallet = _wallet(world)
    assert (wallet.available, wallet.refund_pending) == (30_00, 0)
    assert wallet.balances["clearing:wechat"] == 30_00  # 50 in, 20 back out
    assert world.payments.order(out_trade_no).refundable == 30_00


def test_a_refund_that_fails_gives_the_money_back(world: PayWorld) -> None:
    out_trade_no = _top_up(world, 50_00)
    _notify(world, *world.wechat.payment_notification(out_trade_no))
    [refund] = world.service.request_refund(world.wechat_payer())  # everything available
    assert refund.amount_fen == 50_00 and refund.status == "processing"
    assert _wallet(world).available == 0
    headers, body = world.wechat.refund_notification(refund.out_refund_no, "ABNORMAL")
    assert _notify(world, headers, body) == "refund_failed"
    assert _notify(world, headers, body) == "refund_failed"
    wallet = _wallet(world)
    assert (wallet.available, wallet.refund_pending) == (50_00, 0)
    assert world.payments.order(out_trade_no).refundable == 50_00


def test_a_refund_the_platform_refuses_at_once_gives_the_money_back(world: PayWorld) -> None:
    out_trade_no = _top_up(world, 50_00)
    _notify(world, *world.wechat.payment_notification(out_trade_no))
    world.wechat.refund_answer = (403, "")
    [refund] = world.service.request_refund(world.wechat_payer(), 10_00)
    assert refund.status == "failed" and "NOT_ENOUGH" in refund.reason
    wallet = _wallet(world)
    assert (wallet.available, wallet.refund_pending) == (50_00, 0)


def test_a_refund_spans_the_newest_payments_first(world: PayWorld) -> None:
    first, second = _top_up(world, 10_00), _top_up(world, 20_00)
    for no in (first, second):
        _notify(world, *world.wechat.payment_notification(no))
    world.wechat.refund_answer = (200, "SUCCESS")
    refunds = world.service.request_refund(world.wechat_payer(), 25_00)
    assert [(r.out_trade_no, r.amount_fen, r.status) for r in refunds] == [(second, 20_00, "succeeded"),
                                                                            (first, 5_00, "succeeded")]
    assert _wallet(world).available == 5_00

