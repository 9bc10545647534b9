"""The rules written once (issue 14): ids, the clock, fen and yuan. No servers."""

from __future__ import annotations

import uuid
from datetime import UTC

import pytest

from domain.clock import utcnow
from domain.credential import Credential
from domain.ids import derived_id
from domain.money import (
    energy_to_kwh_str,
    fen_to_yuan_str,
    fixed_point_str,
    price_to_yuan_str,
    ykc_amount_to_yuan_str,
    yuan_str_to_fen,
    yuan_str_to_price,
)
from domain.payment import DriverPayments, PaymentChannel, PaymentOrder
from domain.registry import Pile
from domain.session import ChargingSession
from domain.wallet import Wallet

TENANT = uuid.UUID("6f1d4c2e-0000-4000-8000-000000000001")
NS = uuid.NAMESPACE_URL


def test_derived_ids_are_the_ids_existing_ledgers_hold() -> None:
    """Each aggregate's id is exactly the uuid5 it was before the rule moved to domain/ids.py."""
    wallet = Wallet.create_id(TENANT, "driver-1")
    assert wallet == uuid.uuid5(NS, f"chargeledger:wallet:{TENANT}:driver-1")
    assert Pile.create_id("32010600213501") == uuid.uuid5(NS, "chargeledger:pile:32010600213501")
    trade = "32010600213501012511221000000001"
    assert ChargingSession.create_id(trade) == uuid.uuid5(NS, f"chargeledger:session:{trade}")
    assert Credential.create_id("card", "00a1b2c3d4e5f607") == uuid.uuid5(NS, "chargeledger:credential:card:00A1B2C3D4E5F607")
    assert PaymentChannel.create_id(TENANT, "wechat") == uuid.uuid5(NS, f"chargeledger:payment-channel:{TENANT}:wechat")
    assert PaymentOrder.create_id("T1") == uuid.uuid5(NS, "chargeledger:payment-order:T1")
    assert DriverPayments.create_id(wallet) == uuid.uuid5(NS, f"chargeledger:driver-payments:{wallet}")
    assert derived_id("x", 1, "a") == uuid.uuid5(NS, "chargeledger:x:1:a")


def test_utcnow_is_aware_utc() -> None:
    assert utcnow().tzinfo is UTC


@pytest.mark.parametrize(("value", "places", "text"), [
    (0, 2, "0.00"), (5, 2, "0.05"), (1234, 2, "12.34"), (-1234, 2, "-12.34"), (-5, 2, "-0.05"),
    (123456, 4, "12.3456"), (150000, 5, "1.50000"),
])
def test_fixed_point_str(value: int, places: int, text: str) -> None:
    assert fixed_point_str(value, places) == text


def test_the_money_strings_are_the_ones_written_before() -> None:
    for fen in (0, 1, 99, 100, 123456, -1, -250):
        sign = "-" if fen < 0 else ""
        assert fen_to_yuan_str(fen) == f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"
    for energy in (0, 1, 9999, 10000, 123456):
        assert energy_to_kwh_str(energy) == f"{energy // 10000}.{energy % 10000:04d}"
    for amount in (0, 5, -12345, 123456):
        sign = "-" if amount < 0 else ""
        assert ykc_amount_to_yuan_str(amount) == f"{sign}{abs(amount) // 10000}.{abs(amount) % 10000:04d}"
    for price in (0, 1, 150000, 123456789):
        assert price_to_yuan_str(price) == f"{price // 100000}.{price % 100000:05d}"


def test_yuan_round_trips_and_refuses_what_is_not_plain() -> None:
    for fen in (0, 1, 10, 99, 100, 2050, 9999999):
        assert yuan_str_to_fen(fen_to_yuan_str(fen)) == fen
    assert [yuan_str_to_fen(x) for x in ("0.01", "20", "20.5", "20.50")] == [1, 2000, 2050, 2050]
    for bad in ("", "-1", "1.234", "1e3", " 1", "NaN", "01", "1.", None):
        with pytest.raises(ValueError):
            yuan_str_to_fen(bad)  # type: ignore[arg-type]


def test_unit_prices_in_yuan_round_trip_with_up_to_five_decimals() -> None:
    for price in (0, 1, 150000, 123456789, 0xFFFFFFFF):
        assert yuan_str_to_price(price_to_yuan_str(price)) == price
    assert [yuan_str_to_price(x) for x in ("1.2", "0.35", "0.00001", "12", "1.23456")] == [
        120000, 35000, 1, 1200000, 123456]
    for bad in ("", "-1", "1.234567", "1e3", " 1", "NaN", "01", "1.", "1,2", "１.2", None):
        with pytest.raises(ValueError):
            yuan_str_to_price(bad)  # type: ignore[arg-type]
