"""One gateway process for the piles of every tenant shard (docs/shards.md, "The gateway"): two shard
databases, a relay per shard into the one stream, and :class:`pile_link.shards.ShardedGateway`.

A pile of tenant T1 (shard s1) and one of T2 (s2) log in to the same gateway; an unknown pile is
refused. A start asked on each shard's ledger reaches its pile through NATS (each shard's subjects,
followed by that shard's engine); each record settles on its own shard, never on the other. Then a
second gateway, a ``chargeledger gateway`` process with no ``--shard`` on the sharded configuration,
takes the s2 pile when it reconnects there: it is recorded connected to that process, and the next
start on s2 reaches it there. The audit replays 0 differences on both shards."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from adapters.audit.replay import replay
from adapters.cli.relay import running_relay
from adapters.postgres.env import eventsourcing_env
from adapters.postgres.shards import ShardDirectory
from adapters.servers.nats_users import GATEWAY
from adapters.servers.processes import free_port
from domain.errors import NotFound
from domain.ledger import Ledger
from domain.registry import Pile
from domain.session import ChargingSession
from pile_link.shards import ShardedGateway
from pile_link.ykc import Login, RemoteStart, RemoteStartReply, TransactionConfirm
from projections.runner import Projections
from tests.e2e.gateway_harness import PRICE_PER_TIER
from tests.e2e.relay_harness import CLI, Processes
from tests.e2e.relay_harness import processes  # noqa: F401  (the fixture)
from tests.e2e.test_metrics_roles import scrape
from tests.factories import World, build_world
from tests.integration.shards_harness import TwoShards, two_shards  # noqa: F401 - the fixture
from tests.integration.test_relay import wait_for
from tests.ykc_pile import ScriptedPile

PILES = {"s1": "32010600019301", "s2": "32010600019302"}
UNKNOWN = "32010600019399"


@pytest.fixture
def placed(two_shards: TwoShards) -> Iterator[tuple[ShardDirectory, dict[str, World]]]:  # noqa: F811
    """Tenant T1 on s1 and T2 on s2, each with a station, a pile (claimed in the directory), a tariff
    and a wallet, as the API places and registers them."""
    directory = ShardDirectory(two_shards.map)
    worlds = {}
    for name, ledger in two_shards.ledgers.items():
        world = worlds[name] = build_world(ledger, pile_no=PILES[name])
        directory.place(world.tenant_id, name, "test")
        directory.claim_pile(world.pile_no, world.tenant_id)
    yield directory, worlds


def pile_time() -> datetime:
    return datetime.now(ZoneInfo("Asia/Shanghai")).replace(tzinfo=None, microsecond=0)


async def start_and_settle(ledger: Ledger, run: Any, world: World, pile: ScriptedPile) -> str:
    """A start asked on the pile's shard reaches the pile (0x34, through NATS), is accepted, and its
    record (0x3B) is confirmed once settled."""
    trade_no = await run(ledger.request_start, pile_no=world.pile_no, gun_no=1, wallet_id=world.wallet_id,
                         hold_fen=50_00, at=datetime.now().astimezone(), author="driver-1")
    start = await pile.expect(RemoteStart)
    assert (start.trade_no, start.pile_no) == (trade_no, world.pile_no)
    pile.send(RemoteStartReply(trade_no, world.pile_no, "01", 1, 0))
    now = pile_time()
    pile.send(pile.record(trade_no, 1, (0, 0, 12000, 0), PRICE_PER_TIER, now, now + timedelta(minutes=20)))
    assert (await pile.expect(TransactionConfirm)).result == 0
    return trade_no


def connected_to(ledger: Ledger, pile_no: str) -> str | None:
    """The gateway the store says holds the pile (read fresh: another process writes it too)."""
    pile = ledger.registry.get(Pile.create_id(pile_no), Pile, "pile", fresh=True)
    return pile.connection.get("gateway") if pile.online and pile.connection else None


def lease_held(database_url: str, gateway_id: str) -> bool:
    """Whether the shard's own ``gateway_leases`` table holds this gateway's lease."""
    with psycopg.connect(database_url) as conn:
        if not conn.execute("SELECT to_regclass('gateway_leases') IS NOT NULL").fetchone()[0]:
            return False
        return conn.execute("SELECT count(*) FROM gateway_leases WHERE gateway_id = %s",
                            (gateway_id,)).fetchone()[0] == 1


def wait_for_port(port: int, processes: Processes, proc: Any) -> None:
    deadline = time.monotonic() + 60
    while True:
        processes.alive(proc)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, processes.log(proc)
            time.sleep(0.1)


def test_one_gateway_serves_the_piles_of_both_shards_and_a_second_process_takes_one_over(
        two_shards: TwoShards, placed: tuple[ShardDirectory, dict[str, World]],  # noqa: F811
        nats_url: str, nats_role_urls: dict[str, str], processes: Processes) -> None:  # noqa: F811
    directory, worlds = placed
    ledgers = two_shards.ledgers
    processes.env.update(CHARGELEDGER_SHARDS=",".join(f"{n}={u}" for n, u in two_shards.map.urls.items()),
                         DATABASE_URL=two_shards.url("s1"), NATS_URL=nats_role_urls[GATEWAY])
    port_b, metrics_b = free_port(), free_port()
    with running_relay(ledgers["s1"], two_shards.url("s1"), nats_url, "s1") as r1, \
            running_relay(ledgers["s2"], two_shards.url("s2"), nats_url, "s2") as r2:
        wait_for(lambda: r1.caught_up() and r2.caught_up(), timeout=60)

        async def main() -> dict[str, list[str]]:
            gateway = ShardedGateway(ledgers, two_shards.map.urls, directory, nats_url=nats_url, sweep_interval=0.5)
            await gateway.start()
            trades: dict[str, list[str]] = {"s1": [], "s2": []}
            try:
                piles = {name: ScriptedPile(world.pile_no) for name, world in worlds.items()}
                for pile in piles.values():
                    await pile.login(gateway.port)
                stranger = ScriptedPile(UNKNOWN)
                await stranger.login(gateway.port, expect_ok=False)  # no shard has it: refused, closed
                assert await stranger.closed_by_peer()
                assert set(gateway.links) == set(PILES.values())
                for name, pile in piles.items():
                    engine = gateway.engines[name]
                    assert gateway.links[pile.pile_no].gateway is engine  # bound to its shard's engine
                    trades[name].append(await start_and_settle(ledgers[name], engine.run, worlds[name], pile))
                for name, pile_no in PILES.items():  # recorded on its shard, the lease in its shard's table
                    await until(lambda: connected_to(ledgers[name], pile_no) == gateway.gateway_id)  # noqa: B023
                    await until(lambda: lease_held(two_shards.url(name), gateway.gateway_id))  # noqa: B023

                # the s2 pile moves to a second gateway process, which serves every shard too
                other = processes.start("gateway-b", "-c", CLI, "gateway", "--no-relay", "--host", "127.0.0.1",
                                        "--port", str(port_b), "--metrics-port", str(metrics_b))
                await asyncio.to_thread(wait_for_port, port_b, processes, other)
                await piles["s2"].close()
                moved = ScriptedPile(PILES["s2"])
                await moved.login(port_b)
                b_id = f"{socket.gethostname()}:{other.pid}"
                await until(lambda: connected_to(ledgers["s2"], PILES["s2"]) == b_id)
                await until(lambda: PILES["s2"] not in gateway.links)
                for name in PILES:  # it serves both shards: its lease in both
                    await until(lambda: lease_held(two_shards.url(name), b_id))  # noqa: B023
                samples = await asyncio.to_thread(scrape, metrics_b)  # its metrics are one gateway's, over the shards
                assert samples[("chargeledger_connected_piles", ())] == 1
                assert samples[("chargeledger_gateway_events_total", (("event", "shard_lookups"),))] >= 1
                assert ("chargeledger_gateway_queue_depth", (("queue", "readings"),)) in samples
                trades["s2"].append(await start_and_settle(ledgers["s2"], gateway.engines["s2"].run, worlds["s2"],
                                                           moved))
                # the s1 pile is still served here
                trades["s1"].append(await start_and_settle(ledgers["s1"], gateway.engines["s1"].run, worlds["s1"],
                                                           piles["s1"]))
                assert connected_to(ledgers["s1"], PILES["s1"]) == gateway.gateway_id
                processes.alive(other)
                await moved.close()
                await piles["s1"].close()
                return trades
            finally:
                await gateway.stop()

        trades = asyncio.run(asyncio.wait_for(main(), 120))

    for name, ledger in ledgers.items():
        other_ledger = ledgers["s2" if name == "s1" else "s1"]
        for trade_no in trades[name]:
            session = ledger.sessions.get(ChargingSession.create_id(trade_no), ChargingSession, "session", fresh=True)
            assert session.state == "finished"  # settled on its own shard (read fresh: process B settled one)...
            with pytest.raises(NotFound):
                other_ledger.session(trade_no)  # ...and never on the other
        with Projections(ledger.applications, eventsourcing_env(two_shards.url(name), pool_size=1)) as views:
            views.catch_up()
        report = replay(two_shards.url(name))
        assert report.ok, report.differences
        assert report.counts["sessions"] == len(trades[name])
    assert (len(trades["s1"]), len(trades["s2"])) == (2, 2)


async def until(predicate: Any, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await asyncio.to_thread(predicate):
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


class HeldDirectory(ShardDirectory):
    """The real directory, whose lookups wait until the test lets them go."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.release = threading.Event()

    def shards_of_piles(self, pile_nos: Any) -> dict[str, str]:
        self.release.wait(30)
        return super().shards_of_piles(pile_nos)


def test_a_login_whose_connection_closed_while_its_shard_was_looked_up_records_nothing(
        two_shards: TwoShards, placed: tuple[ShardDirectory, dict[str, World]], nats_url: str) -> None:  # noqa: F811
    directory = HeldDirectory(two_shards.map)
    ledgers = two_shards.ledgers

    async def main() -> None:
        gateway = ShardedGateway(ledgers, two_shards.map.urls, directory, nats_url=nats_url, sweep_interval=3600,
                                 login_deadline=0.3)
        await gateway.start()
        try:
            pile = await ScriptedPile(PILES["s1"]).connect(gateway.port)
            pile.send(pile_login(PILES["s1"]))
            assert await pile.closed_by_peer()  # its login deadline passed while the lookup waited
            assert gateway.stats["login_overdue"] == 1
            directory.release.set()
            await until(lambda: gateway.shards.batches.idle)
            engine = gateway.engines["s1"]
            await engine.pile_changes.flush()
            assert gateway.links == {} and not gateway.connections
            assert connected_to(ledgers["s1"], PILES["s1"]) is None  # never recorded online
            again = ScriptedPile(PILES["s1"])
            await again.login(gateway.port)  # the next login is served (the pile now known)
            assert set(gateway.links) == {PILES["s1"]}
            await again.close()
        finally:
            directory.release.set()
            await gateway.stop()

    asyncio.run(asyncio.wait_for(main(), 60))


def pile_login(pile_no: str) -> Login:
    return Login(pile_no, 0, 2, 0x10, "V4.1.50", 0, "0" * 20, 4)
