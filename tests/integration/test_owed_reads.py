"""What piles logging in are owed, read in batches (pile_link/owed_reads.py): the same answers as one pile at a time."""

from __future__ import annotations

import asyncio
import functools
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

from adapters.followers.open_sessions import OpenSessions
from domain.errors import DomainError
from domain.ledger import Ledger
from domain.registry import Pile
from pile_link import owed_reads
from pile_link.owed_reads import OwedReads
from pile_link.pile_facts import LoginFacts
from tests.factories import build_world

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc)


class Pool:
    """What OwedReads uses of the gateway: its ledger, pool, counters, the one-pile tariff read and the
    facts the logins read (none here unless a test logs piles in)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.stats: Counter[str] = Counter()
        self.executor = ThreadPoolExecutor(max_workers=2)
        self.login_facts = LoginFacts(ledger.registry, lambda station_id: "Asia/Shanghai", self.stats)

    def run(self, fn: Any, *args: Any) -> asyncio.Future[Any]:
        return asyncio.get_running_loop().run_in_executor(self.executor, functools.partial(fn, *args))

    def tariff_owed(self, pile_no: str) -> bool:
        try:
            return self.ledger.tariff_owed(pile_no) is not None
        except DomainError:
            return False


def test_a_batch_answers_each_pile_as_its_own_reads_would(ledger: Ledger, database_url: str) -> None:
    world = build_world(ledger)
    confirmed, bare_station_pile = "32010600019001", "32010600019002"
    ledger.register_pile(world.station_id, confirmed, "DC", 1, "admin")
    tariff = ledger.tariffs.tariff(world.tariff_id)
    ledger.confirm_billing_model(confirmed, tariff.id, tariff.tariff_version, T0)
    no_tariff = ledger.create_station(world.tenant_id, "Station 2", "2 Test Road", 31.2, 121.4, "admin")
    ledger.register_pile(no_tariff, bare_station_pile, "DC", 1, "admin")
    trade_no = ledger.request_start(pile_no=world.pile_no, gun_no=2, wallet_id=world.wallet_id, hold_fen=30_00,
                                    at=T0, author="driver-1")
    index = OpenSessions(ledger, database_url)
    index.catch_up()
    piles = [world.pile_no, confirmed, bare_station_pile]
    gateway = Pool(ledger)
    reads = OwedReads(gateway)

    async def scenario() -> list[tuple[list[str], bool]]:
        return await asyncio.gather(*(reads.ask(p) for p in piles))

    try:
        answers = asyncio.run(scenario())
    finally:
        gateway.executor.shutdown()
        gateway.login_facts.close()
    assert answers == [([trade_no], True), ([], False), ([], False)]
    assert answers == [(index.of_pile(p), gateway.tariff_owed(p)) for p in piles]
    assert gateway.stats["owed_batches"] == 1


def test_piles_not_cached_are_read_in_one_query_and_an_unknown_pile_as_its_own_read_says(ledger: Ledger,
                                                                                          database_url: str) -> None:
    """The gateway keeps few piles cached (pile_link/write_behind.py, PilesLoadedFirst): the batch reads the
    others from the store, and a pile never registered makes each pile answered one at a time, as before."""
    world = build_world(ledger)
    confirmed = "32010600019001"
    ledger.register_pile(world.station_id, confirmed, "DC", 1, "admin")
    tariff = ledger.tariffs.tariff(world.tariff_id)
    ledger.confirm_billing_model(confirmed, tariff.id, tariff.tariff_version, T0)
    OpenSessions(ledger, database_url).catch_up()
    gateway = Pool(ledger)
    reads = OwedReads(gateway)

    async def ask(piles: list[str]) -> list[tuple[list[str], bool]]:
        return await asyncio.gather(*(reads.ask(p) for p in piles))

    try:
        for pile_no in (world.pile_no, confirmed):
            ledger.registry.evict(Pile.create_id(pile_no))
        assert asyncio.run(ask([world.pile_no, confirmed])) == [([], True), ([], False)]
        assert not ledger.registry.is_cached(Pile.create_id(confirmed))
        assert asyncio.run(ask([world.pile_no, "99999999999999", confirmed])) == [([], True), ([], False), ([], False)]
    finally:
        gateway.executor.shutdown()
        gateway.login_facts.close()


def test_piles_that_just_logged_in_are_answered_from_their_logins_facts(ledger: Ledger, database_url: str,
                                                                        monkeypatch: Any) -> None:
    """A storm's logins read each pile's facts (its tariff and confirmed billing model among them): the owed
    reads take them from there and load no pile again, with the answers a one-pile read gives, also for a
    pile that confirmed its billing model since the facts were first read (brought forward at its login)."""
    world = build_world(ledger)
    confirmed, own_tariff = "32010600019001", "32010600019002"
    for pile_no in (confirmed, own_tariff):
        ledger.register_pile(world.station_id, pile_no, "DC", 1, "admin")
    other = ledger.create_tariff(world.tenant_id, "own", {t: {"electricity": 1, "service": 1} for t in
                                                          ("sharp", "peak", "flat", "valley")}, [2] * 48, "admin")
    ledger.assign_tariff(other, "admin", pile_no=own_tariff)
    OpenSessions(ledger, database_url).catch_up()
    gateway = Pool(ledger)
    reads = OwedReads(gateway)
    piles = [world.pile_no, confirmed, own_tariff]

    async def log_in_and_ask() -> list[tuple[list[str], bool]]:
        await asyncio.gather(*(gateway.login_facts.login(p) for p in piles))
        return await asyncio.gather(*(reads.ask(p) for p in piles))

    def no_pile_loaded(*args: Any) -> None:
        raise AssertionError("a pile loaded again")

    try:
        asyncio.run(log_in_and_ask())  # every pile's facts read once
        tariff = ledger.tariffs.tariff(world.tariff_id)
        ledger.confirm_billing_model(confirmed, tariff.id, tariff.tariff_version, T0)  # after: facts behind
        monkeypatch.setattr(owed_reads, "load_piles", no_pile_loaded)
        answers = asyncio.run(log_in_and_ask())
    finally:
        gateway.executor.shutdown()
        gateway.login_facts.close()
    assert answers == [([], True), ([], False), ([], True)]
    assert answers == [([], gateway.tariff_owed(p)) for p in piles]
