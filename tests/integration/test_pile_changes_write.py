"""The gateway's link status write (pile_link/write_behind.py, PilesLoadedFirst): the batch's piles read in one
query, the changes written as ``record_pile_changes`` writes them, the piles not kept in the cache after."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from domain.errors import InvalidRegistration, NotFound
from domain.ledger import Ledger
from domain.registry import Pile
from pile_link.write_behind import PilesLoadedFirst
from tests.factories import build_world

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc)


def connect(pile: Pile) -> Any:
    return pile.connect(at=T0, gateway="gateway-1", protocol_version=1, program_version="v1")


def test_changes_of_piles_not_cached_are_written_and_refused_as_before_and_the_piles_let_go(ledger: Ledger) -> None:
    world = build_world(ledger)
    piles = [world.pile_no, "32010600019001", "32010600019002"]
    for pile_no in piles[1:]:
        ledger.register_pile(world.station_id, pile_no, "DC", 2, "admin")
    ledger.registry.evict(Pile.create_id(piles[1]))  # the others stay cached: both kinds in one batch
    write = PilesLoadedFirst(ledger.registry, ledger.record_pile_changes)
    batch = [*((p, connect) for p in piles),
             (piles[1], lambda pile: pile.report_gun_status(2, "idle", True, T0)),
             (piles[2], lambda pile: pile.report_gun_status(9, "idle", True, T0))]  # no gun 9: refused alone
    outcomes = write(batch)
    assert outcomes[:4] == [None] * 4 and isinstance(outcomes[4], InvalidRegistration)
    assert not any(ledger.registry.is_cached(Pile.create_id(p)) for p in piles)
    stored = [ledger.registry.pile(p) for p in piles]
    assert all(pile.online and pile.connection["gateway"] == "gateway-1" for pile in stored)  # type: ignore[index]
    assert stored[1].guns["2"]["status"] == "idle" and stored[2].guns["2"]["status"] == "offline"

    unknown = write([(piles[0], lambda pile: pile.disconnect(T0, "gone")), ("99999999999999", connect)])
    assert unknown[0] is None and isinstance(unknown[1], NotFound)
    assert not ledger.registry.pile(piles[0]).online
