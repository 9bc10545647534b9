"""Our driver's charge on a peer's pile (domain/use_cases/roaming.py) on the ledger: the start's hold and
the charge in one transaction, idempotent by StartChargeSeq; orders above and below the hold paid to
``payable:<peer>``; a failed start released; resent notifications changing nothing; and the audit of
the stored events clean, with what each peer is owed equal to its bills.

Runs on Postgres, and again on the in-memory Ledger (tests/unit/test_ledger_in_memory.py), but for
the tests named there as needing Postgres.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from domain.errors import IdempotencyConflict, InsufficientFunds, InvalidTransition, NotFound
from domain.ledger import Ledger
from domain.roaming import RoamingCharge
from tests.factories import World, build_world

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
PEER = "APLATFORM"
CONNECTOR = "3201060001923601"


def seq(n: int) -> str:
    return f"BPLATFORM{n:018d}"


def start(ledger: Ledger, world: World, n: int = 1, hold_fen: int = 30_00, **overrides: Any) -> RoamingCharge:
    arguments: dict[str, Any] = dict(tenant_id=world.tenant_id, wallet_id=world.wallet_id, peer=PEER,
                                     connector_id=CONNECTOR, station_id="3201060001", start_charge_seq=seq(n),
                                     hold_fen=hold_fen, at=T0, author="driver:driver-1")
    return ledger.start_roaming(**{**arguments, **overrides})


def settle(ledger: Ledger, charge: RoamingCharge, electricity: int, service: int, energy: int = 200_000,
           **overrides: Any) -> RoamingCharge:
    return ledger.settle_roaming(charge.id, at=T0 + timedelta(hours=1), energy=energy, electricity_fen=electricity,
                                 service_fen=service, start_time=T0, end_time=T0 + timedelta(minutes=58),
                                 stop_reason=0, **overrides)


def events(ledger: Ledger, application: Any, aggregate_id: Any) -> list[str]:
    return [type(e).__name__ for e in application.events.get(aggregate_id)]


def test_a_roaming_start_holds_in_the_same_write_and_is_idempotent_by_its_seq(ledger: Ledger) -> None:
    world = build_world(ledger)  # 100 yuan
    charge = start(ledger, world)
    assert (charge.state, charge.peer, charge.start_charge_seq, charge.hold_fen) == ("requested", PEER, seq(1), 30_00)
    assert charge.driver_id == "driver-1" and charge.requested_at == T0
    wallet = ledger.wallet(world.wallet_id)
    assert (wallet.available, wallet.held, wallet.holds) == (70_00, 30_00, {f"roam:{seq(1)}": 30_00})
    again = start(ledger, world, at=T0 + timedelta(seconds=5))  # the same start resent
    assert (again.id, again.version) == (charge.id, 1)
    assert ledger.find_roaming(world.tenant_id, PEER, seq(1)).id == charge.id
    assert ledger.find_roaming(world.tenant_id, "CPLATFORM", seq(1)) is None
    with pytest.raises(IdempotencyConflict):
        start(ledger, world, connector_id="3201060001923602")
    with pytest.raises(InsufficientFunds):  # 70 yuan left
        start(ledger, world, n=2, hold_fen=70_01)
    assert ledger.find_roaming(world.tenant_id, PEER, seq(2)) is None
    with pytest.raises(NotFound):  # the wallet is another tenant's
        start(ledger, world, n=3, tenant_id=uuid4())
    assert events(ledger, ledger.wallets, world.wallet_id) == ["Opened", "ToppedUp", "HoldPlaced"]
    assert ledger.roaming_charge(charge.id).version == 1


@pytest.mark.parametrize(("top_up", "electricity", "service", "available", "arrears"), [
    (100_00, 20_00, 4_50, 75_50, 0),  # below the hold: the rest of it back to the driver
    (100_00, 30_00, 0, 70_00, 0),  # exactly the hold
    (100_00, 30_00, 4_00, 66_00, 0),  # above it (a pile runs on after its stop): the rest from the balance
    (32_00, 30_00, 5_00, 0, 3_00),  # above the balance too: owed as arrears
], ids=["below", "equal", "above", "beyond the balance"])
def test_an_order_is_paid_to_the_peer_from_the_hold_and_beyond_it(ledger: Ledger, top_up: int, electricity: int,
                                                                  service: int, available: int, arrears: int) -> None:
    """(A bill further above the hold than a pile runs on is disputed: tests/unit/test_roaming.py.)"""
    world = build_world(ledger, top_up=top_up)
    charge = start(ledger, world)
    ledger.roaming_accepted(charge.id, at=T0)
    ledger.roaming_charging(charge.id, at=T0, start_time=T0)
    settled = settle(ledger, charge, electricity, service)
    assert settled.state == "settled" and settled.bill["total_fen"] == electricity + service
    wallet = ledger.wallet(world.wallet_id)
    assert (wallet.available, wallet.arrears, wallet.held, wallet.holds) == (available, arrears, 0, {})
    assert wallet.balances["payable:APLATFORM"] == -(electricity + service)
    assert not any(account.startswith("revenue:") for account in wallet.balances)
    version = (settled.version, wallet.version)
    again = settle(ledger, charge, electricity, service)  # the order resent
    assert (again.version, ledger.wallet(world.wallet_id).version) == version


def test_a_differing_order_after_settled_is_recorded_as_disputed_and_moves_no_money(ledger: Ledger) -> None:
    world = build_world(ledger)
    charge = start(ledger, world)
    settle(ledger, charge, 20_00, 5_00)  # an order without a start result: settled from 'requested'
    wallet = ledger.wallet(world.wallet_id)
    disputed = settle(ledger, charge, 20_00, 6_00, order={"TotalMoney": "26.00", "TotalElecMoney": "20.00",
                                                          "TotalSeviceMoney": "6.00", "TotalPower": "20.0"})
    settle(ledger, charge, 20_00, 5_00, energy=199_999)
    assert [(d["reason"], d["order"]["TotalMoney"]) for d in disputed.disputes] == [(2, "26.00")]
    after = ledger.roaming_charge(charge.id)
    assert [d["reason"] for d in after.disputes] == [2, 3] and after.bill["total_fen"] == 25_00
    assert ledger.wallet(world.wallet_id).balances == wallet.balances
    reported = ledger.dispute_roaming(charge.id, at=T0, reason=4, order={"TotalMoney": "1.00"})
    assert [d["reason"] for d in reported.disputes] == [2, 3, 4]


def test_a_failed_start_releases_its_hold_and_a_late_order_is_billed_beyond_it(ledger: Ledger) -> None:
    world = build_world(ledger)
    charge = start(ledger, world)
    ledger.roaming_accepted(charge.id, at=T0)
    ledger.roaming_stop_requested(charge.id, at=T0, author="driver:driver-1")
    failed = ledger.roaming_failed(charge.id, at=T0 + timedelta(seconds=90), reason="no start result")
    assert failed.state == "failed" and ledger.wallet(world.wallet_id).holds == {}
    assert ledger.roaming_failed(charge.id, at=T0, reason="resent").version == failed.version
    with pytest.raises(InvalidTransition):  # it charged after we released its hold: the caller stops it
        ledger.roaming_charging(charge.id, at=T0, start_time=T0)
    late = settle(ledger, charge, 10_00, 2_00)  # the peer bills the charge all the same
    wallet = ledger.wallet(world.wallet_id)
    assert late.state == "settled" and (wallet.available, wallet.held) == (88_00, 0)
    assert wallet.balances["payable:APLATFORM"] == -12_00
    assert events(ledger, ledger.wallets, world.wallet_id)[-2:] == ["Released", "ChargedToPayable"]


def test_resent_notifications_change_nothing_and_a_charged_charge_cannot_fail(ledger: Ledger) -> None:
    world = build_world(ledger)
    charge = start(ledger, world)
    for _ in range(2):
        ledger.roaming_accepted(charge.id, at=T0)
        ledger.roaming_charging(charge.id, at=T0, start_time=T0 + timedelta(seconds=3))
        ledger.roaming_stop_requested(charge.id, at=T0, author="driver:driver-1")
    charging = ledger.roaming_charge(charge.id)
    assert (charging.state, charging.start_time, charging.version) == ("stopping", T0 + timedelta(seconds=3), 4)
    with pytest.raises(InvalidTransition):
        ledger.roaming_failed(charge.id, at=T0, reason="too late")
    assert ledger.wallet(world.wallet_id).held == 30_00


def test_charges_of_two_peers_owe_each_peer_its_own_bills(ledger: Ledger) -> None:
    world = build_world(ledger)
    a = start(ledger, world, n=1, hold_fen=20_00)
    c = start(ledger, world, n=2, hold_fen=20_00, peer="CPLATFORM")
    settle(ledger, a, 10_00, 1_00)
    settle(ledger, c, 25_00, 0)
    balances = ledger.wallet(world.wallet_id).balances
    assert (balances["payable:APLATFORM"], balances["payable:CPLATFORM"], balances["available"]) == \
        (-11_00, -25_00, -64_00)
