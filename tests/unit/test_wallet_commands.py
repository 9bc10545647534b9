"""The wallet commands' stored fields and fingerprints, unchanged since before the idempotency
prelude was written once (``domain.wallet.idempotent``): existing ledgers replay, and idempotency
keys given before still match. ``data/wallet_commands.json`` was written by the commands as they
were before the change (each command, its arguments, the event it recorded). No servers."""

from __future__ import annotations

import inspect
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from domain.errors import IdempotencyConflict
from domain.wallet import Wallet

TENANT = uuid.UUID("6f1d4c2e-0000-4000-8000-000000000001")
RECORDED = json.loads((Path(__file__).resolve().parents[1] / "data" / "wallet_commands.json").read_text())


def fields(event: Any) -> dict[str, Any]:
    kept = {k: v for k, v in event.__dict__.items() if k not in ("originator_id", "timestamp")}
    return json.loads(json.dumps(kept, sort_keys=True, default=str))


def run(wallet: Wallet, name: str, arguments: dict[str, Any]) -> None:
    commands = {"top_up": wallet.top_up, "hold": wallet.hold, "capture": wallet.capture, "release": wallet.release,
                "charge": wallet.charge, "credit_back": wallet.credit_back, "request_refund": wallet.request_refund,
                "complete_refund": wallet.complete_refund, "fail_refund": wallet.fail_refund,
                "adjust": wallet.adjust}
    commands[name](**arguments)


def test_every_command_records_what_it_recorded_before() -> None:
    wallet = Wallet(tenant_id=TENANT, driver_id="d", author="t")
    wallet.collect_events()
    assert {name for name, *_ in RECORDED} == {"top_up", "hold", "capture", "release", "charge", "credit_back",
                                              "request_refund", "complete_refund", "fail_refund", "adjust"}
    for name, arguments, event_name, stored in RECORDED:
        run(wallet, name, arguments)
        (event,) = wallet.collect_events()
        assert (type(event).__name__, fields(event)) == (event_name, stored), name
    for name, arguments, _, _ in RECORDED:  # the same keys again: nothing, every fingerprint matches
        run(wallet, name, arguments)
        assert wallet.collect_events() == [], name


def test_a_key_reused_for_other_arguments_is_refused() -> None:
    wallet = Wallet(tenant_id=TENANT, driver_id="d", author="t")
    wallet.top_up(key="k", amount=100, provider="cash", payment_ref="a")
    with pytest.raises(IdempotencyConflict):
        wallet.top_up(key="k", amount=101, provider="cash", payment_ref="a")
    with pytest.raises(IdempotencyConflict):
        wallet.hold(key="k", hold_id="h", amount=100)


def test_positional_and_keyword_calls_are_the_same_command() -> None:
    wallet = Wallet(tenant_id=TENANT, driver_id="d", author="t")
    wallet.top_up("k", 100, "cash", "a")
    wallet.top_up(key="k", amount=100, provider="cash", payment_ref="a")
    wallet.top_up("k", 100, payment_ref="a", provider="cash")
    assert len(wallet.collect_events()) == 2  # Opened, one ToppedUp
    with pytest.raises(TypeError):
        wallet.top_up("k2", 100, "cash")
    with pytest.raises(TypeError):
        wallet.top_up("k2", 100, "cash", "a", "extra")
    with pytest.raises(TypeError):
        wallet.top_up("k2", 100, "cash", "a", amount=100)


def test_the_signature_shown_is_the_callers() -> None:
    assert list(inspect.signature(Wallet.hold).parameters) == ["self", "key", "hold_id", "amount"]
