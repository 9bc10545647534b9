"""Cached aggregates with another process writing: nothing stale is ever believed.

Commands run on the cached copy without a query; the version check refuses a stale save, and a
refusal decided on a stale copy is checked against the store. Reads that nothing version-checks
(is the pile enabled, which tariff version) are fast-forwarded. ``other`` is a second Ledger with
its own caches and connections: another gateway or API process.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

import pytest

from adapters.postgres.env import eventsourcing_env
from domain.errors import InsufficientFunds, PileUnavailable
from domain.ledger import Ledger
from domain.registry import Pile
from tests.factories import PRICES, SLOTS, build_world

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=timezone.utc)


@pytest.fixture
def other(database_url: str) -> Iterator[Ledger]:
    led = Ledger(eventsourcing_env(database_url))
    yield led
    led.close()


def start(ledger: Ledger, world, hold: int) -> str:
    return ledger.request_start(pile_no=world.pile_no, gun_no=1, wallet_id=world.wallet_id, hold_fen=hold, at=T0,
                                author="driver-1")


def test_a_hold_refused_on_a_stale_wallet_is_checked_against_the_store(ledger: Ledger, other: Ledger) -> None:
    world = build_world(ledger, top_up=10_00)
    with pytest.raises(InsufficientFunds):  # caches the wallet at 10.00
        ledger.hold(world.wallet_id, key="h0", hold_id="h0", amount=50_00)
    other.top_up(world.wallet_id, key="t2", amount=100_00, provider="wechat", payment_ref="w2")
    # our cached copy still says 10.00 available; the store says 110.00
    wallet = ledger.hold(world.wallet_id, key="h1", hold_id="h1", amount=50_00)
    assert (wallet.available, wallet.held) == (60_00, 50_00)
    with pytest.raises(InsufficientFunds):  # and a refusal the store confirms still stands
        ledger.hold(world.wallet_id, key="h2", hold_id="h2", amount=70_00)


def test_a_command_on_a_stale_copy_is_refused_by_the_version_check_and_run_again(ledger: Ledger,
                                                                                 other: Ledger) -> None:
    world = build_world(ledger, top_up=100_00)
    ledger.hold(world.wallet_id, key="a", hold_id="a", amount=10_00)
    other.hold(world.wallet_id, key="b", hold_id="b", amount=20_00)
    wallet = ledger.hold(world.wallet_id, key="c", hold_id="c", amount=30_00)
    assert wallet.holds == {"a": 10_00, "b": 20_00, "c": 30_00}
    versions = [e.originator_version for e in ledger.wallets.events.get(world.wallet_id)]
    assert versions == list(range(1, len(versions) + 1))


def test_plain_reads_see_what_another_process_wrote(ledger: Ledger, other: Ledger) -> None:
    world = build_world(ledger, top_up=100_00)
    assert ledger.wallet(world.wallet_id).available == 100_00
    other.top_up(world.wallet_id, key="t2", amount=5_00, provider="wechat", payment_ref="w2")
    assert ledger.wallet(world.wallet_id).available == 105_00


def test_a_start_sees_a_pile_disabled_and_a_tariff_revised_by_another_process(ledger: Ledger,
                                                                               other: Ledger) -> None:
    world = build_world(ledger, top_up=100_00)
    first = start(ledger, world, 10_00)  # pile, station, tariff and wallet are now cached here
    assert ledger.session(first).tariff["version"] == 1
    cheaper = {tier: {"electricity": p["electricity"] // 2, "service": p["service"]} for tier, p in PRICES.items()}
    assert other.revise_tariff(world.tariff_id, cheaper, SLOTS, "ops") == 2
    second = start(ledger, world, 10_00)
    assert ledger.session(second).tariff["version"] == 2
    other.set_pile_enabled(world.pile_no, False, "ops", "maintenance")
    with pytest.raises(PileUnavailable):
        start(ledger, world, 10_00)
    assert ledger.wallet(world.wallet_id).held == 20_00  # the refused start held nothing


def test_a_start_sees_a_tariff_assigned_by_another_process_and_one_it_never_read(ledger: Ledger,
                                                                                  other: Ledger) -> None:
    world = build_world(ledger, top_up=100_00)
    start(ledger, world, 10_00)  # the station's tariff is cached here
    cheaper = {tier: {"electricity": p["electricity"] // 2, "service": p["service"]} for tier, p in PRICES.items()}
    pile_tariff = other.create_tariff(world.tenant_id, "pile special", cheaper, SLOTS, "ops")
    other.assign_tariff(pile_tariff, "ops", pile_no=world.pile_no)  # overrides the station's, in the other process
    session = ledger.session(start(ledger, world, 10_00))
    assert (session.tariff["id"], session.tariff["version"]) == (str(pile_tariff), 1)
    other.revise_tariff(pile_tariff, PRICES, SLOTS, "ops")  # now cached here: brought forward with the pile
    assert ledger.session(start(ledger, world, 10_00)).tariff["version"] == 2
    other.assign_tariff(None, "ops", pile_no=world.pile_no)  # back to the station's tariff
    assert ledger.session(start(ledger, world, 10_00)).tariff["id"] == str(world.tariff_id)


def test_a_pile_with_a_long_history_loads_from_its_snapshot(ledger: Ledger, other: Ledger) -> None:
    world = build_world(ledger)
    for n in range(200):  # a pile's life on the link: logins, gun status changes, link drops
        at = T0.replace(minute=n % 60)
        if n % 10 == 0:
            ledger.pile_connected(world.pile_no, at, "gw-1", 0x16, "v1")
        ledger.report_gun(world.pile_no, 1 + n % 2, ("idle", "charging")[n // 2 % 2], True, {}, at)
        if n % 10 == 9:
            ledger.pile_disconnected(world.pile_no, at, "link lost")
    pile = ledger.registry.pile(world.pile_no)
    assert pile.version > 2 * 100
    snapshots = list(ledger.registry.snapshots.get(pile.id))  # type: ignore[union-attr]
    assert [s.originator_version for s in snapshots] == [100, 200]
    loaded = other.registry.pile(world.pile_no)  # not cached there: the latest snapshot and what followed it
    assert (loaded.version, loaded.guns, loaded.online) == (pile.version, pile.guns, pile.online)


def test_a_start_on_a_pile_moved_by_another_process_takes_its_new_stations_tariff_and_zone(ledger: Ledger,
                                                                                          other: Ledger) -> None:
    world = build_world(ledger, top_up=100_00)
    start(ledger, world, 10_00)  # the pile and its first station are cached here
    far = other.create_station(world.tenant_id, "Urumqi", "1 West Road", 43.8, 87.6, "ops", timezone="Asia/Urumqi")
    night = other.create_tariff(world.tenant_id, "night", PRICES, [3] * 48, "ops")
    other.assign_tariff(night, "ops", station_id=far)
    other.registry.update(Pile.create_id(world.pile_no), Pile, "pile", lambda p: p.move(far, "ops"))
    session = ledger.session(start(ledger, world, 10_00))
    assert (session.station_id, session.timezone, session.tariff["id"]) == (far, "Asia/Urumqi", str(night))
