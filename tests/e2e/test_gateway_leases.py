"""A gateway that dies holding a charging pile that never comes back: the watchdog records the pile
offline from the gateway's lapsed lease, so the session gets the offline deadline and its hold ends
(the fault simulator's finding; issue 11, finding 6 after a gateway crash)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import psycopg

from adapters.followers import gateway_leases
from adapters.followers.gateway_leases import LEASE_TTL
from adapters.followers.watchdog import Watchdog
from domain.ledger import Ledger
from domain.session import OFFLINE_TIMEOUT
from pile_link.gateway import Gateway
from tests.factories import World, build_world

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=timezone.utc)


def charging_on(ledger: Ledger, world: World, gateway: str) -> str:
    ledger.record_pile_changes([(world.pile_no, lambda p: p.connect(at=T0, gateway=gateway, protocol_version=0x0F,
                                                                    program_version="sim"))])
    trade_no = ledger.request_start(pile_no=world.pile_no, gun_no=1, wallet_id=world.wallet_id, hold_fen=50_00,
                                    at=T0, author="driver-1")
    ledger.mark_charging(trade_no, at=T0)
    return trade_no


def renew(database_url: str, gateway: str, at: datetime) -> bool:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return gateway_leases.renew(conn, gateway, at)


def test_the_piles_of_a_gateway_that_stopped_renewing_are_recorded_offline_and_the_hold_ends(
        ledger: Ledger, database_url: str) -> None:
    world = build_world(ledger, top_up=100_00)
    watchdog = Watchdog(ledger, database_url)
    trade_no = charging_on(ledger, world, "gw-killed")
    renew(database_url, "gw-killed", T0)  # its last renewal; then kill -9

    watchdog.sweep(T0)  # the watchdog starts: it has not seen the database for a whole lease yet
    watchdog.sweep(T0 + LEASE_TTL / 2)
    assert ledger.session(trade_no).offline_since is None  # the lease has not expired

    watchdog.sweep(T0 + LEASE_TTL + timedelta(seconds=5))
    session = ledger.session(trade_no)
    assert session.state == "charging" and session.offline_since == T0  # the gateway's last sign of life
    assert session.deadline == T0 + OFFLINE_TIMEOUT
    assert ledger.registry.pile(world.pile_no).online is False
    assert watchdog.stats["gateways_lapsed"] == 1

    watchdog.sweep(T0 + OFFLINE_TIMEOUT + timedelta(seconds=1))
    session = ledger.session(trade_no)
    assert session.state == "abandoned"
    assert ledger.wallet(world.wallet_id).held == 0


def test_a_live_gateway_keeps_its_piles_and_a_lapsed_one_that_renews_hears_so(ledger: Ledger,
                                                                              database_url: str) -> None:
    world = build_world(ledger, top_up=100_00)
    watchdog = Watchdog(ledger, database_url)
    trade_no = charging_on(ledger, world, "gw-alive")
    for step in range(0, 200, 5):  # renewing every 5 s, as a gateway's sweep does
        at = T0 + timedelta(seconds=step)
        assert renew(database_url, "gw-alive", at) is False
        watchdog.sweep(at)
    assert ledger.session(trade_no).offline_since is None
    assert ledger.registry.pile(world.pile_no).connection["gateway"] == "gw-alive"

    late = T0 + timedelta(seconds=195) + LEASE_TTL + timedelta(seconds=1)  # cut off from Postgres a while
    watchdog.sweep(late)
    assert ledger.session(trade_no).offline_since is not None
    assert renew(database_url, "gw-alive", late) is True  # the gateway then records its piles connected again
    assert renew(database_url, "gw-alive", late + timedelta(seconds=5)) is False


def test_a_watchdog_just_back_from_an_outage_waits_a_whole_lease_before_judging(ledger: Ledger,
                                                                                database_url: str) -> None:
    world = build_world(ledger, top_up=100_00)
    watchdog = Watchdog(ledger, database_url)
    trade_no = charging_on(ledger, world, "gw-1")
    renew(database_url, "gw-1", T0)
    after_outage = T0 + 5 * LEASE_TTL  # every lease looks expired to a watchdog that just reached the database
    watchdog.sweep(after_outage)
    assert ledger.session(trade_no).offline_since is None
    renew(database_url, "gw-1", after_outage + timedelta(seconds=5))  # the live gateway renews in time
    watchdog.sweep(after_outage + LEASE_TTL + timedelta(seconds=1))
    assert ledger.session(trade_no).offline_since is None


def test_a_pile_that_logged_in_at_another_gateway_is_left_alone(ledger: Ledger, database_url: str) -> None:
    world = build_world(ledger, top_up=100_00)
    watchdog = Watchdog(ledger, database_url)
    trade_no = charging_on(ledger, world, "gw-old")
    renew(database_url, "gw-old", T0)
    ledger.record_pile_changes([(world.pile_no, lambda p: p.connect(at=T0 + timedelta(seconds=20), gateway="gw-new",
                                                                    protocol_version=0x0F, program_version="sim"))])
    watchdog.sweep(T0)
    watchdog.sweep(T0 + LEASE_TTL + timedelta(seconds=1))
    assert ledger.session(trade_no).offline_since is None
    assert ledger.registry.pile(world.pile_no).connection["gateway"] == "gw-new"


def test_a_running_gateway_renews_its_lease_and_gives_it_up_when_it_stops(ledger: Ledger, database_url: str,
                                                                         nats_url: str) -> None:
    def lease() -> tuple | None:
        with psycopg.connect(database_url) as conn:
            return conn.execute("SELECT renewed_at, lapsed_at FROM gateway_leases WHERE gateway_id = 'gw-real'"
                                ).fetchone()

    async def run() -> None:
        gateway = Gateway(ledger, database_url=database_url, nats_url=nats_url, gateway_id="gw-real",
                          sweep_interval=3600, watchdog=False)
        await gateway.start()
        try:
            await gateway.sweep()
            assert lease() is not None and lease()[1] is None
        finally:
            await gateway.stop()
        assert lease() is None

    asyncio.run(run())
