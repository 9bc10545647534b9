"""The typed use cases, in memory (the library's POPO recorders): no servers.

What is checked: stored wallet command names run through the one registry (and nothing else does);
the shared "save the batch, else one by one"; pile commands store only the parameters given; the one
start-hold rule."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime, timedelta

import pytest
from eventsourcing.persistence import IntegrityError

from domain.errors import InsufficientFunds, InvalidTransition, NotFound, WrongPile
from domain.ledger import WALLET_COMMANDS, Ledger, PileGun
from domain.registry import Pile
from domain.settlement import WalletCommand, bill_from_hold, release_hold, wallet_commands
from domain.start_rules import StartRules, card_start_rules
from domain.wallet import Wallet
from tests.factories import build_world

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)


@pytest.fixture
def ledger() -> Ledger:
    ledger = Ledger({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    yield ledger
    ledger.close()


def charging(ledger: Ledger, world, gun: int = 1) -> str:
    trade_no = ledger.request_start(pile_no=world.pile_no, gun_no=gun, wallet_id=world.wallet_id, hold_fen=30_00,
                                    at=T0, author="driver-1")
    ledger.acknowledge_start(trade_no, at=T0, ok=True)
    ledger.mark_charging(trade_no, at=T0)
    return trade_no


def test_no_string_dispatch_is_left() -> None:
    for gone in ("session_command", "wallet_command", "wallet_update", "pile_command"):
        assert not hasattr(Ledger, gone)


def test_the_registry_names_every_wallet_command_by_its_own_name() -> None:
    commands = {name for name, member in vars(Wallet).items()
                if inspect.isfunction(member) and hasattr(member, "__wrapped__")}
    assert set(WALLET_COMMANDS) == commands


def test_a_stored_command_runs_as_its_typed_use_case(ledger: Ledger) -> None:
    """A ``wallet_followups`` row (name and JSON arguments) and the policy's tuples run through the
    registry; the same command through the typed method then changes nothing (same key, same fingerprint)."""
    world = build_world(ledger)
    stored = WalletCommand("hold", {"key": "hold:x", "hold_id": "x", "amount": 10_00})
    wallet, events = ledger.run_wallet_command(world.wallet_id, stored)
    assert (wallet.held, [type(e).__name__ for e in events]) == (10_00, ["HoldPlaced"])
    assert ledger.hold(world.wallet_id, key="hold:x", hold_id="x", amount=10_00).held == 10_00
    _, events = ledger.run_wallet_command(world.wallet_id, release_hold("x"))
    assert [type(e).__name__ for e in events] == ["Released"]
    assert ledger.release(world.wallet_id, key="release:x", hold_id="x").held == 0
    assert ledger.run_wallet_command(world.wallet_id, ("release", {"key": "release:x", "hold_id": "x"}))[1] == []


def test_a_stored_name_not_in_the_registry_is_refused(ledger: Ledger) -> None:
    world = build_world(ledger)
    for name in ("__init__", "seen", "_post", "collect_events", "top_up "):
        with pytest.raises(InvalidTransition):
            ledger.run_wallet_command(world.wallet_id, WalletCommand(name, {}))


def test_the_settlement_policy_names_only_registered_commands() -> None:
    assert release_hold("t") == ("release", {"key": "release:t", "hold_id": "t"})
    for commands in (bill_from_hold("t", 10, {"electricity_fen": 30, "service_fen": 5}),
                     bill_from_hold("t", 0, {"electricity_fen": 3, "service_fen": 5})):
        assert {c.name for c in commands} <= set(WALLET_COMMANDS)


def test_a_session_closing_brings_the_wallet_in_line(ledger: Ledger) -> None:
    world = build_world(ledger)
    trade_no = charging(ledger, world)
    ledger.record_reading(trade_no, at=T0 + timedelta(minutes=5), energy=10_000)
    session = ledger.force_close(trade_no, at=T0 + timedelta(hours=1), reason="stuck", author="ops")
    wallet = ledger.wallet(world.wallet_id)
    assert (session.state, wallet.held, wallet.available) == ("abandoned", 0, 100_00 - session.bill["total_fen"])
    assert [c.name for c in wallet_commands(session, "Abandoned", type("E", (), {"bill": session.bill}))] == ["capture"]


def test_pile_sent_commands_run_only_on_that_pile_s_gun(ledger: Ledger) -> None:
    world = build_world(ledger)
    trade_no = charging(ledger, world)
    with pytest.raises(WrongPile):
        ledger.record_fault(trade_no, at=T0, source="pile", code="x", detail="", sent_by=PileGun(world.pile_no, 2))
    ledger.record_fault(trade_no, at=T0, source="pile", code="x", detail="", sent_by=PileGun(world.pile_no, 1))
    assert [type(e).__name__ for e in ledger.sessions.events.get(ledger.session(trade_no).id)][-1] == "FaultRecorded"


def test_a_reading_batch_that_conflicts_is_saved_session_by_session(ledger: Ledger,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    world = build_world(ledger, top_up=200_00)
    one, two = charging(ledger, world, 1), charging(ledger, world, 2)
    save = ledger.sessions.save
    calls = []

    def conflicting_once(*aggregates):
        calls.append(len(aggregates))
        if len(calls) == 1:
            raise IntegrityError("another writer")
        return save(*aggregates)

    monkeypatch.setattr(ledger.sessions, "save", conflicting_once)
    outcomes = ledger.record_readings([
        {"trade_no": one, "at": T0 + timedelta(minutes=1), "energy": 100},
        {"trade_no": two, "at": T0 + timedelta(minutes=1), "energy": 200, "sent_by": PileGun(world.pile_no, 1)},
        {"trade_no": one, "at": T0 + timedelta(minutes=2), "energy": 300},
        {"trade_no": "0" * 32, "at": T0, "energy": 1},
    ])
    assert [type(o).__name__ if o else None for o in outcomes] == [None, "WrongPile", None, "NotFound"]
    assert calls == [1, 1]  # the batch (one session: two was refused), then that session on its own
    assert (ledger.session(one).meter_energy, ledger.session(two).meter_energy) == (300, 0)


def test_pile_changes_refused_half_way_leave_nothing_and_spare_the_others(ledger: Ledger) -> None:
    world = build_world(ledger)

    def half_way(pile: Pile) -> None:
        pile.connect(at=T0, gateway="g", protocol_version=0x0F, program_version="v1")
        raise NotFound("refused after one event")

    outcomes = ledger.record_pile_changes([
        (world.pile_no, half_way),
        ("99999999999999", lambda pile: pile.disconnect(at=T0, reason="x")),
        (world.pile_no, lambda pile: pile.disconnect(at=T0, reason="lost")),
    ])
    assert [type(o).__name__ if o else None for o in outcomes] == ["NotFound", "NotFound", None]
    names = [type(e).__name__ for e in ledger.registry.events.get(Pile.create_id(world.pile_no))]
    assert "Connected" not in names


def test_pile_commands_store_the_parameters_given(ledger: Ledger) -> None:
    world = build_world(ledger)
    ledger.reboot_pile(world.pile_no, author="ops", at=T0)
    ledger.reboot_pile(world.pile_no, author="ops", at=T0, when="idle")
    ledger.read_realtime(world.pile_no, author="ops", at=T0, gun_no=2)
    ledger.set_pile_parameters(world.pile_no, author="ops", at=T0, disabled=True)
    ledger.push_tariff(world.pile_no, author="ops", at=T0)
    stored = [(e.command, e.params) for e in ledger.registry.events.get(Pile.create_id(world.pile_no))
              if type(e).__name__ == "CommandRequested"]
    assert stored == [("reboot", {}), ("reboot", {"when": "idle"}), ("read_realtime", {"gun_no": 2}),
                      ("set_parameters", {"disabled": True}),
                      ("push_tariff", {"tariff_id": str(world.tariff_id), "version": 1})]
    with pytest.raises(NotFound):
        ledger.reboot_pile(world.pile_no, author="ops", at=T0, tenant_id=world.station_id)


def test_one_start_rule() -> None:
    rules = StartRules(5_00, 200_00)
    assert [rules.hold_for(a) for a in (5_00, 150_00, 200_00, 900_00)] == [5_00, 150_00, 200_00, 200_00]
    with pytest.raises(InsufficientFunds) as refused:
        rules.hold_for(4_99)
    assert refused.value.details == {"available_fen": 4_99, "min_start_fen": 5_00}
    card = card_start_rules(20_00)
    assert (card.hold_for(1), card.hold_for(50_00)) == (1, 20_00)
    with pytest.raises(InsufficientFunds):
        card.hold_for(0)
    with pytest.raises(ValueError):
        StartRules(0, 10)
    with pytest.raises(ValueError):
        StartRules(10, 5)


def test_a_card_start_holds_by_the_rule(ledger: Ledger) -> None:
    world = build_world(ledger, top_up=50_00)
    ledger.bind_credential(world.wallet_id, "card", "00000000DEADBEEF", "ops")
    trade_no, held = ledger.start_at_pile(pile_no=world.pile_no, gun_no=1, kind="card", value="00000000deadbeef",
                                          at=T0, rules=card_start_rules(20_00))
    assert (held, ledger.session(trade_no).hold_fen, ledger.wallet(world.wallet_id).available) == (20_00, 20_00, 30_00)
    empty = build_world(ledger, top_up=0, pile_no="32010600019237", driver="driver-2")
    ledger.bind_credential(empty.wallet_id, "card", "00000000CAFEBABE", "ops")
    with pytest.raises(InsufficientFunds):
        ledger.start_at_pile(pile_no=empty.pile_no, gun_no=1, kind="card", value="00000000CAFEBABE", at=T0,
                             rules=card_start_rules(20_00))
