"""Wallet invariants under random command sequences (hypothesis), in memory and on Postgres."""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.errors import DomainError
from domain.ledger import Ledger
from domain.settlement import WalletCommand
from domain.wallet import Wallet, posting_sets_of

TENANT = uuid.UUID(int=1)
HOLD_IDS = [f"{n:032d}" for n in range(1, 5)]
REFUND_IDS = ["r1", "r2", "r3"]
amounts = st.integers(-5, 5000)

commands = st.one_of(
    st.builds(lambda a, p: ("top_up", {"amount": a, "provider": p, "payment_ref": f"pay-{a}"}), amounts,
              st.sampled_from(["wechat", "alipay"])),
    st.builds(lambda h, a: ("hold", {"hold_id": h, "amount": a}), st.sampled_from(HOLD_IDS), amounts),
    st.builds(lambda h, e, s: ("capture", {"hold_id": h, "electricity": e, "service": s}),
              st.sampled_from(HOLD_IDS), amounts, amounts),
    st.builds(lambda h: ("release", {"hold_id": h}), st.sampled_from(HOLD_IDS)),
    st.builds(lambda e, s: ("charge", {"electricity": e, "service": s, "reference": "x"}), amounts, amounts),
    st.builds(lambda e, s: ("credit_back", {"electricity": e, "service": s, "reference": "x"}), amounts, amounts),
    st.builds(lambda r, a: ("request_refund", {"refund_id": r, "amount": a, "provider": "wechat"}),
              st.sampled_from(REFUND_IDS), amounts),
    st.builds(lambda r: ("complete_refund", {"refund_id": r, "provider_ref": "p"}), st.sampled_from(REFUND_IDS)),
    st.builds(lambda r: ("fail_refund", {"refund_id": r, "reason": "bank said no"}), st.sampled_from(REFUND_IDS)),
    st.builds(lambda a: ("adjust", {"amount": a, "reason": "goodwill", "author": "ops"}),
              st.integers(-3000, 3000)),
)
sequences = st.lists(st.tuples(st.integers(0, 5), commands), min_size=1, max_size=40)


def run(apply: Any, sequence: list[tuple[int, tuple[str, dict[str, Any]]]]) -> list[tuple[str, dict[str, Any]]]:
    """Run commands, returning those that were accepted.

    The key repeats whenever the same (slot, command) recurs, as a retried delivery would.
    """
    accepted = []
    for slot, (name, kwargs) in sequence:
        keyed = {"key": f"{name}:{slot}:{sorted(kwargs.items())}", **kwargs}
        try:
            apply(name, keyed)
        except DomainError:
            continue
        accepted.append((name, keyed))
    return accepted


def trial_balance(events: list[Any]) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for event in events:
        for postings in posting_sets_of(event):
            assert sum(amount for _, amount in postings) == 0, postings
            for account, amount in postings:
                totals[account] += amount
    return dict(totals)


def check_invariants(wallet: Wallet, events: list[Any]) -> None:
    totals = trial_balance(events)
    assert sum(totals.values()) == 0
    assert wallet.available >= 0 and wallet.held >= 0 and wallet.refund_pending >= 0 and wallet.arrears >= 0
    assert wallet.held == sum(wallet.holds.values())
    assert not (wallet.available > 0 and wallet.arrears > 0), "money available while the driver owes"
    assert {k: v for k, v in totals.items() if v} == {k: v for k, v in wallet.balances.items() if v}


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(sequence=sequences)
def test_trial_balance_zero_and_invariants_in_memory(sequence: list) -> None:
    wallet = Wallet(tenant_id=TENANT, driver_id="d", author="test")
    events: list[Any] = list(wallet.collect_events())

    def apply(name: str, kwargs: dict[str, Any]) -> None:
        getattr(wallet, name)(**kwargs)
        events.extend(wallet.collect_events())
        check_invariants(wallet, events)

    run(apply, sequence)
    check_invariants(wallet, events)


def wallet_in_arrears(owed: int = 700, funds: int = 3000) -> Wallet:
    """A wallet holding ``funds`` for a start on gun 2 while a bill on gun 1 left ``owed`` fen unpaid."""
    wallet = Wallet(tenant_id=TENANT, driver_id="d", author="test")
    wallet.top_up("t", funds + 1000, "wechat", "p1")
    wallet.hold("h1", HOLD_IDS[0], funds)
    wallet.charge("c", 1000 + owed, 0, "gun1")  # an offline bill bigger than what was left
    assert (wallet.available, wallet.arrears, wallet.held) == (0, owed, funds)
    return wallet


@pytest.mark.parametrize("back", [
    lambda w: w.release("r", HOLD_IDS[0]),                         # the start on gun 2 failed
    lambda w: w.capture("cap", HOLD_IDS[0], 100, 0),                # the rest of the hold comes back
    lambda w: w.adjust("a", 2000, "goodwill", "ops"),               # an operator credits the driver
    lambda w: w.credit_back("cb", 900, 0, "gun1"),                  # a re-price came out lower
], ids=["release", "capture rest", "adjustment", "credit back"])
def test_money_coming_back_repays_arrears_first(back: Any) -> None:
    """Found by the fault simulator (seed 1032): a released hold went to available beside arrears."""
    wallet = wallet_in_arrears()
    back(wallet)
    assert wallet.arrears == 0
    assert wallet.available > 0


def test_a_failed_refund_repays_arrears_first() -> None:
    wallet = Wallet(tenant_id=TENANT, driver_id="d", author="test")
    wallet.top_up("t", 5000, "alipay", "p1")
    wallet.request_refund("rq", "r1", 2000, "alipay")
    wallet.charge("c", 3500, 0, "gun1")  # 3,000 covered, 500 owed
    assert (wallet.available, wallet.arrears) == (0, 500)
    wallet.fail_refund("f", "r1", "bank said no")
    assert (wallet.available, wallet.arrears, wallet.refund_pending) == (1500, 0, 0)


@settings(max_examples=200)
@given(sequence=sequences, repeat_at=st.integers(0, 39))
def test_repeating_a_command_with_its_key_changes_nothing(sequence: list, repeat_at: int) -> None:
    wallet = Wallet(tenant_id=TENANT, driver_id="d", author="test")
    done: list[tuple[str, dict[str, Any]]] = []

    def apply(name: str, kwargs: dict[str, Any]) -> None:
        getattr(wallet, name)(**kwargs)
        done.append((name, kwargs))

    run(apply, sequence)
    wallet.collect_events()
    if not done:
        return
    name, kwargs = done[repeat_at % len(done)]
    before = (dict(wallet.balances), dict(wallet.holds), repr(wallet.refunds), wallet.version)
    getattr(wallet, name)(**kwargs)
    assert wallet.collect_events() == []
    assert (dict(wallet.balances), dict(wallet.holds), repr(wallet.refunds), wallet.version) == before


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=sequences)
def test_trial_balance_zero_on_postgres(ledger: Ledger, sequence: list) -> None:
    wallet_id = ledger.open_wallet(TENANT, f"driver-{uuid.uuid4().hex}", "test")

    def apply(name: str, kwargs: dict[str, Any]) -> None:
        ledger.run_wallet_command(wallet_id, WalletCommand(name, kwargs))

    accepted = run(apply, sequence)
    wallet = ledger.wallet(wallet_id)
    stored = list(ledger.wallets.events.get(wallet_id))
    check_invariants(wallet, stored)
    # a second delivery of every accepted command, now checked against Postgres, writes nothing
    for name, kwargs in accepted:
        apply(name, kwargs)
    assert ledger.wallet(wallet_id).version == wallet.version
