"""A partner platform's account (T/CEC's customer platform pays for its users' sessions): a wallet with a credit
line, whose uncovered bills are owed on ``receivable:<partner>``, never on a driver's arrears; the books
balance and the auditor's fast mirror equals the aggregate after every command. In memory."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings

from domain.books import books_of
from domain.errors import InvalidAmount
from domain.ledger import Ledger
from domain.session import SettlementRecord
from domain.wallet import ARREARS, Wallet, partner_driver_id, receivable
from tests.factories import build_world
from tests.integration.test_wallet_properties import sequences
from tests.unit.test_audit_mirror import mirrored

TENANT = uuid.UUID(int=1)
T0 = datetime(2026, 11, 22, 2, 0, tzinfo=timezone.utc)


def account() -> Wallet:
    wallet = Wallet(tenant_id=TENANT, driver_id=partner_driver_id("BPLATFORM"), author="t")
    wallet.open_credit_line(key="credit-line:BPLATFORM", account=receivable("BPLATFORM"))
    return wallet


def test_an_uncovered_bill_is_owed_on_the_partners_receivable_and_money_in_repays_it_first() -> None:
    wallet = account()
    wallet.charge(key="charge:1", electricity=700, service=400, reference="1")
    assert (wallet.owed, wallet.arrears, wallet.available) == (1100, 0, 0)
    assert wallet.balances == {"receivable:BPLATFORM": 1100, "revenue:electricity": -700, "revenue:service": -400}
    wallet.credit_back(key="rebill-credit:1", electricity=100, service=0, reference="1")
    wallet.top_up(key="topup:settlement", amount=1500, provider="cash", payment_ref="bank transfer")
    assert (wallet.owed, wallet.available) == (0, 500)  # the partner paid its debt; the rest is prepaid
    assert books_of(wallet.collect_events()).balanced


def test_a_credit_line_is_opened_once_on_a_new_wallet_on_a_receivable_account() -> None:
    wallet = account()
    with pytest.raises(InvalidAmount):
        wallet.open_credit_line(key="again", account=receivable("OTHER0000"))
    used = Wallet(tenant_id=TENANT, driver_id="d", author="t")
    used.top_up(key="k", amount=100, provider="cash", payment_ref="p")
    for target, line in ((used, receivable("X")), (Wallet(tenant_id=TENANT, driver_id="e", author="t"), "revenue:x")):
        with pytest.raises(InvalidAmount):
            target.open_credit_line(key="line", account=line)
    assert Wallet(tenant_id=TENANT, driver_id="f", author="t").owed_to == ARREARS


def test_driver_ids_of_partner_accounts_are_reserved_and_opening_twice_is_the_same_account() -> None:
    ledger = Ledger({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    world = build_world(ledger, top_up=0)
    with pytest.raises(InvalidAmount):
        ledger.open_wallet(world.tenant_id, partner_driver_id("BPLATFORM"), "admin")
    first = ledger.open_partner_account(world.tenant_id, "BPLATFORM", "tcec:BPLATFORM")
    assert ledger.open_partner_account(world.tenant_id, "BPLATFORM", "tcec:BPLATFORM") == first
    assert ledger.wallet(first).owed_to == receivable("BPLATFORM")
    trade_no = ledger.request_start(pile_no=world.pile_no, gun_no=1, wallet_id=first, hold_fen=0, at=T0,
                                    author="tcec:BPLATFORM:BPLATFORM000000000000000001", origin="tcec")
    energy = (0, 0, 10_000, 0)
    ledger.settle(trade_no, SettlementRecord(energy, (0, 0, 0, 0), 0, 10_000, 0, 10_000, T0, T0, 0x40), T0)
    assert ledger.wallet(first).owed == ledger.session(trade_no).bill["total_fen"] == 110
    assert ledger.wallet(world.wallet_id).arrears == 0


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(sequence=sequences)
def test_the_audit_mirror_equals_a_partner_account_after_every_command(sequence: list) -> None:
    wallet = account()
    replays = mirrored(wallet, sequence)
    assert sum(replays.fast.accounts.values()) == 0 and wallet.owed >= 0
