"""Alipay through the real ``python-alipay-sdk`` against a fake gateway with keys made per run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from adapters.payments.base import AppMismatch, InvalidSignature, StaleNotification
from domain.payment import PaymentAmountMismatch
from domain.wallet import Wallet
from tests.payment_fakes import FakeAlipay, PayWorld


def _wallet(world: PayWorld) -> Wallet:
    return world.ledger.wallet(Wallet.create_id(world.tenant_id, world.alipay_payer().driver_id))


def _top_up(world: PayWorld, amount: int = 88_88) -> str:
    return world.service.create_top_up(world.alipay_payer(), amount).out_trade_no


def _notify(world: PayWorld, form: dict[str, str]) -> str:
    return world.service.handle_notification("alipay", world.tenant_id, "ali-main", {},
                                             FakeAlipay.encode(form)).outcome


def test_trade_create_is_a_signed_mini_program_trade(world: PayWorld) -> None:
    top_up = world.service.create_top_up(world.alipay_payer(), 12_34)
    trade = world.alipay.trades[top_up.out_trade_no]  # the fake checked our request's RSA2 signature
    assert trade["total_amount"] == "12.34" and trade["product_code"] == "JSAPI_PAY"
    assert trade["buyer_id"] == "2088000000000001" and trade["op_app_id"] == world.alipay.app_id
    assert trade["notify_url"] == f"https://charge.example.com/pay/alipay/notify/{world.tenant_id}/ali-main"
    assert top_up.pay_params == {"tradeNO": trade["trade_no"]}


def test_a_verified_notification_credits_once_when_delivered_twice(world: PayWorld) -> None:
    out_trade_no = _top_up(world, 88_88)
    form = world.alipay.payment_notification(out_trade_no)
    assert _notify(world, form) == "credited"
    assert _notify(world, form) == "duplicate"
    assert _wallet(world).available == 88_88
    assert world.payments.order(out_trade_no).transaction_id == world.alipay.trades[out_trade_no]["trade_no"]


def test_a_forged_or_tampered_notification_is_refused(world: PayWorld) -> None:
    out_trade_no = _top_up(world)
    with pytest.raises(InvalidSignature):
        _notify(world, world.alipay.payment_notification(out_trade_no, forge=True))
    form = world.alipay.payment_notification(out_trade_no)
    form["buyer_id"] = "2088999999999999"  # a signed field changed after signing
    with pytest.raises(InvalidSignature):
        _notify(world, form)
    form = world.alipay.payment_notification(out_trade_no)
    form["sign_type"] = "RSA"  # the SDK refuses a sign type other than the channel's
    with pytest.raises(InvalidSignature):
        _notify(world, form)
    unsigned = world.alipay.payment_notification(out_trade_no)
    del unsigned["sign"]
    with pytest.raises(InvalidSignature):
        _notify(world, unsigned)
    assert _wallet(world).available == 0


def test_a_stale_or_future_notify_time_is_refused(world: PayWorld) -> None:
    out_trade_no = _top_up(world)
    for sent in (datetime.now(UTC) - timedelta(hours=49), datetime.now(UTC) + timedelta(minutes=10)):
        with pytest.raises(StaleNotification):
            _notify(world, world.alipay.payment_notification(out_trade_no, notify_time=sent))
    assert _wallet(world).available == 0


def test_a_wrong_amount_is_refused(world: PayWorld) -> None:
    out_trade_no = _top_up(world, 88_88)
    with pytest.raises(PaymentAmountMismatch):
        _notify(world, world.alipay.payment_notification(out_trade_no, total_amount="888.80"))
    assert _wallet(world).available == 0


def test_a_wrong_app_id_is_refused(world: PayWorld) -> None:
    out_trade_no = _top_up(world)
    with pytest.raises(AppMismatch):
        _notify(world, world.alipay.payment_notification(out_trade_no, app_id="2021000000000000"))
    assert _wallet(world).available == 0


def test_a_trade_not_yet_paid_is_acknowledged_but_not_credited(world: PayWorld) -> None:
    out_trade_no = _top_up(world)
    assert _notify(world, world.alipay.payment_notification(out_trade_no, trade_status="WAIT_BUYER_PAY")) == "ignored"
    assert _wallet(world).available == 0


def test_a_refund_succeeds_synchronously(world: PayWorld) -> None:
    out_trade_no = _top_up(world, 88_88)
    _notify(world, world.alipay.payment_notification(out_trade_no))
    [refund] = world.service.request_refund(world.alipay_payer(), 8_88)
    assert refund.status == "succeeded"
    assert world.alipay.refunds[refund.out_refund_no]["refund_amount"] == "8.88"
    wallet = _wallet(world)
    assert (wallet.available, wallet.refund_pending, wallet.balances["clearing:alipay"]) == (80_00, 0, 80_00)


def test_a_refund_left_processing_by_a_system_error_is_settled_by_reconciling(world: PayWorld) -> None:
    """ACQ.SYSTEM_ERROR leaves a refund's outcome unknown; the refund query decides it later: one
    refund went through all the same (the money leaves), the other never happened (it comes back)."""
    out_trade_no = _top_up(world, 88_88)
    _notify(world, world.alipay.payment_notification(out_trade_no))
    world.alipay.refund_system_error = "done"
    [went_through] = world.service.request_refund(world.alipay_payer(), 8_88)
    world.alipay.refund_system_error = "lost"
    [never_happened] = world.service.request_refund(world.alipay_payer(), 10_00)
    assert (went_through.status, never_happened.status) == ("processing", "processing")
    wallet = _wallet(world)
    assert (wallet.available, wallet.refund_pending) == (70_00, 18_88)

    world.alipay.refund_system_error = None
    assert world.service.reconcile_refund(out_trade_no, went_through.out_refund_no) == "succeeded"
    assert world.service.reconcile_refund(out_trade_no, never_happened.out_refund_no) == "failed"
    assert world.service.reconcile_refund(out_trade_no, went_through.out_refund_no) == "succeeded"  # again: no change
    wallet = _wallet(world)
    assert (wallet.available, wallet.refund_pending, wallet.balances["clearing:alipay"]) == (80_00, 0, 80_00)
    refunds = world.payments.order(out_trade_no).refunds
    assert (refunds[went_through.out_refund_no]["state"], refunds[never_happened.out_refund_no]["state"]) == (
        "succeeded", "failed")


def test_a_refund_that_fails_gives_the_money_back(world: PayWorld) -> None:
    out_trade_no = _top_up(world, 88_88)
    _notify(world, world.alipay.payment_notification(out_trade_no))
    world.alipay.refund_fails = True
    [refund] = world.service.request_refund(world.alipay_payer())
    assert refund.status == "failed" and "ACQ.TRADE_STATUS_ERROR" in refund.reason
    wallet = _wallet(world)
    assert (wallet.available, wallet.refund_pending) == (88_88, 0)
    order = world.payments.order(out_trade_no)
    assert order.refunds[refund.out_refund_no]["state"] == "failed" and order.refundable == 88_88
