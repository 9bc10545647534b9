"""The gateway's login facts (pile_link/pile_facts.py): logins read in batches, as the store has the pile now."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from domain.errors import NotFound, PileUnavailable
from domain.ledger import Ledger
from pile_link.pile_facts import LoginFacts, PileFacts
from tests.factories import build_world

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc)


def facts_of(ledger: Ledger, pile_no: str) -> PileFacts:
    pile = ledger.registry.pile(pile_no)
    return PileFacts.of(pile, ledger.registry.station(pile.station_id).timezone)


def login_facts(ledger: Ledger, stats: Counter[str]) -> LoginFacts:
    return LoginFacts(ledger.registry, lambda station_id: ledger.registry.station(station_id).timezone, stats)


def test_concurrent_logins_are_read_in_one_batch_and_each_gets_its_own_answer(ledger: Ledger) -> None:
    world = build_world(ledger)
    piles = [f"320106000190{n:02d}" for n in range(30)]
    for pile_no in piles:
        ledger.register_pile(world.station_id, pile_no, "DC", 2, "admin")
    ledger.set_pile_enabled(piles[0], False, "admin", "unpaid")
    ledger.report_gun(piles[1], 2, "idle", True, {}, T0)
    stats: Counter[str] = Counter()
    facts = login_facts(ledger, stats)

    async def scenario() -> list[PileFacts | BaseException]:
        return await asyncio.gather(*(facts.login(p) for p in [*piles, "99999999999999", piles[1]]),
                                    return_exceptions=True)

    try:
        answers = asyncio.run(scenario())
    finally:
        facts.close()
    assert isinstance(answers[0], PileUnavailable)
    assert isinstance(answers[30], NotFound)
    assert answers[1] == answers[31] == facts_of(ledger, piles[1])
    assert (2, "idle", True, ()) in answers[1].guns  # type: ignore[union-attr]
    assert all(answers[n] == facts_of(ledger, piles[n]) for n in range(1, 30))
    assert stats["login_batches"] == 1 and stats["login_facts_read"] == 31


def test_known_facts_serve_while_the_pile_is_unchanged_and_are_read_again_once_it_changed(ledger: Ledger) -> None:
    world = build_world(ledger)
    other = "32010600019001"
    ledger.register_pile(world.station_id, other, "DC", 1, "admin")
    stats: Counter[str] = Counter()
    facts = login_facts(ledger, stats)

    async def login(pile_no: str) -> PileFacts:
        return await facts.login(pile_no)

    try:
        first = asyncio.run(login(world.pile_no))
        asyncio.run(login(other))
        assert asyncio.run(login(world.pile_no)) == first and stats["login_facts_hit"] == 1
        ledger.set_pile_enabled(world.pile_no, False, "admin", "unpaid")  # a moment ago, no relay involved
        with pytest.raises(PileUnavailable):
            asyncio.run(login(world.pile_no))
        assert asyncio.run(login(other)) == facts_of(ledger, other) and stats["login_facts_hit"] == 2
        ledger.set_pile_enabled(world.pile_no, True, "admin", "paid")
        assert asyncio.run(login(world.pile_no)) == facts_of(ledger, world.pile_no)
    finally:
        facts.close()


def test_a_pile_with_snapshots_is_read_from_its_newest_snapshot_and_the_events_after_it(ledger: Ledger) -> None:
    world = build_world(ledger)
    for n in range(130):  # a snapshot every 100 events
        ledger.report_gun(world.pile_no, 1 + n % 2, ("idle", "charging")[n // 2 % 2], n % 3 == 0, {},
                          T0 + timedelta(seconds=n))
    pile = ledger.registry.pile(world.pile_no)
    assert pile.version > 100 and list(ledger.registry.snapshots.get(pile.id))  # type: ignore[union-attr]
    facts = login_facts(ledger, Counter())
    try:
        assert asyncio.run(facts.login(world.pile_no)) == facts_of(ledger, world.pile_no)
    finally:
        facts.close()


def test_preloaded_facts_answer_logins_with_one_check_and_a_pile_changed_since_is_read_again(ledger: Ledger) -> None:
    """The gateway reads every pile's facts at start; a login still answers as the store has the pile then:
    disabled since the preload, refused; registered since, read; the rest answered from what was preloaded."""
    world = build_world(ledger)
    piles = [f"320106000190{n:02d}" for n in range(5)]
    for pile_no in piles:
        ledger.register_pile(world.station_id, pile_no, "DC", 2, "admin")
    late = "32010600019099"
    stats: Counter[str] = Counter()
    facts = login_facts(ledger, stats)

    async def scenario() -> list[PileFacts | BaseException]:
        await facts.preload()
        ledger.set_pile_enabled(piles[0], False, "admin", "unpaid")  # after the preload
        ledger.register_pile(world.station_id, late, "DC", 1, "admin")
        return await asyncio.gather(*(facts.login(p) for p in [*piles, world.pile_no, late]), return_exceptions=True)

    try:
        answers = asyncio.run(scenario())
    finally:
        facts.close()
    assert stats["login_facts_preloaded"] == 6
    assert isinstance(answers[0], PileUnavailable)
    assert answers[1:] == [facts_of(ledger, p) for p in [*piles[1:], world.pile_no, late]]
    assert stats["login_facts_hit"] == 5 and stats["login_facts_forward"] == 1  # disabled since: brought forward
    assert stats["login_facts_read"] == 1  # registered since
    assert answers[1].guns is answers[2].guns  # type: ignore[union-attr]
    assert answers[1].station_id is answers[2].station_id  # type: ignore[union-attr]


def test_known_facts_are_brought_forward_by_the_events_since_as_a_read_would_have_them(ledger: Ledger) -> None:
    """A pile that changed since its facts were read (connected at another gateway, guns, faults, moved,
    disabled) is answered from the events the check found, applied by the Pile's own methods; as a read would."""
    world = build_world(ledger)
    piles = [f"320106000190{n:02d}" for n in range(3)]
    for pile_no in piles:
        ledger.register_pile(world.station_id, pile_no, "DC", 2, "admin")
    elsewhere = ledger.create_station(world.tenant_id, "Station 2", "2 Test Road", 43.8, 87.6, "admin", "Asia/Urumqi")
    stats: Counter[str] = Counter()
    facts = login_facts(ledger, stats)

    async def scenario() -> list[PileFacts | BaseException]:
        await facts.preload()
        for pile_no in piles:
            ledger.pile_connected(pile_no, T0, "gateway-2", 1, "v1")
            ledger.report_gun(pile_no, 2, "charging", True, {"hw:3": "over temperature"}, T0)
        ledger.report_gun(piles[1], 2, "idle", True, {}, T0 + timedelta(seconds=1))  # the fault cleared
        ledger.pile_disconnected(piles[1], T0 + timedelta(seconds=2), "gateway died")
        ledger.record_pile_changes([(piles[2], lambda pile: pile.move(elsewhere, "admin"))])
        ledger.set_pile_enabled(piles[0], False, "admin", "unpaid")
        return await asyncio.gather(*(facts.login(p) for p in piles), return_exceptions=True)

    try:
        answers = asyncio.run(scenario())
    finally:
        facts.close()
    assert isinstance(answers[0], PileUnavailable)
    assert answers[1:] == [facts_of(ledger, p) for p in piles[1:]]
    assert answers[2].station_id == elsewhere and answers[2].timezone == "Asia/Urumqi"  # type: ignore[union-attr]
    assert (2, "charging", True, ("hw:3",)) in answers[2].guns  # type: ignore[union-attr]
    assert stats["login_facts_forward"] == 3 and stats["login_facts_read"] == 0
