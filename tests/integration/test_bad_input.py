"""Bad input gets a clear domain error and leaves nothing written."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest

from domain.errors import (
    AlreadyExists,
    CaptureExceedsHold,
    DomainError,
    IdempotencyConflict,
    InvalidAmount,
    InvalidRegistration,
    InvalidTariff,
    NotFound,
    UnknownHold,
)
from domain.ledger import Ledger
from tests.factories import PRICES, SLOTS, build_world

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=timezone.utc)


def high_water(ledger: Ledger) -> tuple:
    return tuple(app.recorder.max_notification_id() for app in ledger.applications)


@pytest.fixture
def world(ledger: Ledger):
    w = build_world(ledger)
    ledger.hold(w.wallet_id, key="h1", hold_id="h1", amount=10_00)
    return w


CASES = {
    "tariff with a missing slot": (InvalidTariff, "48 half-hour slots",
                                   lambda led, w: led.create_tariff(w.tenant_id, "bad", PRICES, SLOTS[:47], "ops")),
    "tariff with a negative price": (InvalidTariff, "must be >= 0",
                                     lambda led, w: led.revise_tariff(
                                         w.tariff_id, {**PRICES, "flat": {"electricity": -1, "service": 0}},
                                         SLOTS, "ops")),
    "negative top-up": (InvalidAmount, "must be > 0 fen",
                        lambda led, w: led.top_up(w.wallet_id, key="k", amount=-100,
                                                  provider="wechat", payment_ref="x")),
    "negative hold": (InvalidAmount, "must be > 0 fen",
                      lambda led, w: led.hold(w.wallet_id, key="k", hold_id="h2", amount=-1)),
    "fractional amount": (InvalidAmount, "integer number of fen",
                          lambda led, w: led.top_up(w.wallet_id, key="k", amount=1.5,
                                                    provider="wechat", payment_ref="x")),
    "capture above the hold": (CaptureExceedsHold, "exceeds hold h1 of 1000 fen",
                               lambda led, w: led.capture(w.wallet_id, key="k", hold_id="h1",
                                                          electricity=900, service=101)),
    "capture of an unknown hold": (UnknownHold, "no open hold nope",
                                   lambda led, w: led.capture(w.wallet_id, key="k",
                                                              hold_id="nope", electricity=1, service=0)),
    "unknown wallet": (NotFound, "no wallet",
                       lambda led, w: led.top_up(uuid.uuid4(), key="k", amount=100,
                                                 provider="wechat", payment_ref="x")),
    "start with an unknown wallet": (NotFound, "no wallet",
                                     lambda led, w: led.request_start(pile_no=w.pile_no, gun_no=1,
                                                                      wallet_id=uuid.uuid4(), hold_fen=100,
                                                                      at=T0, author="d")),
    "start for an unknown pile": (NotFound, "no pile",
                                  lambda led, w: led.request_start(pile_no="99999999999999", gun_no=1,
                                                                   wallet_id=w.wallet_id, hold_fen=100, at=T0,
                                                                   author="d")),
    "hold above the available balance": (DomainError, "cannot hold 999999 fen: 9000 fen available",
                                         lambda led, w: led.request_start(pile_no=w.pile_no, gun_no=1,
                                                                          wallet_id=w.wallet_id, hold_fen=999999,
                                                                          at=T0, author="d")),
    "reused idempotency key": (IdempotencyConflict, "already used for a different command",
                               lambda led, w: led.hold(w.wallet_id, key="h1", hold_id="h1",
                                                       amount=5_00)),
    "pile number of 13 digits": (InvalidRegistration, "14 digits",
                                 lambda led, w: led.register_pile(w.station_id, "1234567890123", "DC", 1, "ops")),
    "pile registered twice": (AlreadyExists, "already registered",
                              lambda led, w: led.register_pile(w.station_id, w.pile_no, "DC", 1, "ops")),
    "adjustment without a reason": (InvalidAmount, "needs a reason",
                                    lambda led, w: led.adjust(w.wallet_id, key="k", amount=5,
                                                              reason=" ", author="ops")),
}


@pytest.mark.parametrize("case", list(CASES))
def test_refused_with_a_clear_error_and_nothing_written(ledger: Ledger, world, case: str) -> None:
    error, message, command = CASES[case]
    before = high_water(ledger)
    with pytest.raises(error, match=message) as raised:
        command(ledger, world)
    assert raised.value.code and raised.value.message
    assert high_water(ledger) == before
