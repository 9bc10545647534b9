"""The ledger's stream on a 3-node NATS cluster (issue 15.4): replicated R3, and a node's loss, kill -9 of
a follower or of the stream's leader while the relay publishes a backlog through its window, loses and
duplicates nothing: the stream ends with the notification logs one for one, in their order, and a
gateway's command follower still gets the commands written after the loss."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import nats
import nats.js.errors
import pytest
from nats.js.api import AckPolicy, ConsumerConfig

from adapters.followers.relay.publisher import Relay
from adapters.postgres.env import eventsourcing_env
from adapters.servers.nats_cluster import ClusterNode, EmbeddedNatsCluster
from adapters.servers.nats_users import GATEWAY, RELAY, STREAM, server_options
from domain.ledger import Ledger
from pile_link.commands import CommandFollower
from tests.e2e.relay_harness import backlog, relay_thread
from tests.factories import build_world
from tests.integration.test_relay import T0, assert_stream_is_the_logs, wait_for

BACKLOG = 12_000  # meter readings, one event each: enough that the relay is still publishing when a node dies


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNatsCluster]:
    nodes = EmbeddedNatsCluster(tmp_path_factory.mktemp("nats-cluster"), 3).start()
    yield nodes
    nodes.stop()


@pytest.fixture
def fresh(cluster: EmbeddedNatsCluster) -> EmbeddedNatsCluster:
    """The cluster with every node up and the ledger's stream removed."""
    for i, node in enumerate(cluster.nodes):
        if not node.running():
            cluster.restart(i)
    asyncio.run(_admin(cluster, _delete_stream))
    return cluster


async def _admin(cluster: EmbeddedNatsCluster, work, *args):  # type: ignore[no-untyped-def]
    """``work`` on the JetStream API, asked again on a timeout: after a node's loss the stream elects a new
    leader, and until it has, the API does not answer (seconds, more on a loaded machine)."""
    nc = await nats.connect(**server_options(cluster.url), connect_timeout=2, max_reconnect_attempts=20)
    try:
        for attempt in range(6):
            try:
                return await work(nc.jetstream(timeout=10), *args)
            except nats.errors.TimeoutError:
                if attempt == 5:
                    raise
                await asyncio.sleep(1)
    finally:
        await nc.close()


async def _delete_stream(js) -> None:  # type: ignore[no-untyped-def]
    try:
        await js.delete_stream(STREAM)
    except nats.js.errors.NotFoundError:
        pass


async def _replicas(js) -> int:  # type: ignore[no-untyped-def]
    return (await js.stream_info(STREAM)).config.num_replicas


async def _replicas_current(js) -> bool:  # type: ignore[no-untyped-def]
    cluster = (await js.stream_info(STREAM)).cluster
    return bool(cluster and cluster.leader and cluster.replicas and all(p.current for p in cluster.replicas))


async def _read_stream(js) -> list:  # type: ignore[no-untyped-def]
    """Every message of the stream, through a consumer of one replica (placed on a live node)."""
    info = await js.stream_info(STREAM)
    sub = await js.pull_subscribe("chargeledger.>", durable=None, stream=STREAM,
                                  config=ConsumerConfig(ack_policy=AckPolicy.NONE, num_replicas=1,
                                                        mem_storage=True))
    messages: list = []
    while len(messages) < info.state.messages:
        messages.extend(await sub.fetch(min(500, info.state.messages - len(messages)), timeout=10))
    return messages


class Gateway:
    """A gateway's command follower (pile_link.commands) on a loop of its own, noting what it is handed."""

    def __init__(self, nats_url: str) -> None:
        self.seen: Counter[str] = Counter()
        self.trades: list[str] = []
        self.loop = asyncio.new_event_loop()
        self.follower = CommandFollower(nats_url, "cluster-test", self.handle, self.resumed, Counter())
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.follower.start(), self.loop).result(60)

    async def handle(self, subject: str, headers: dict[str, str], data: bytes) -> None:
        self.seen[subject] += 1
        if subject.endswith("ChargingSession.Opened"):
            self.trades.append(data.decode())

    async def resumed(self) -> None:
        pass

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.follower.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def start_session(ledger: Ledger, world, gun: int) -> str:  # type: ignore[no-untyped-def]
    return ledger.request_start(pile_no=world.pile_no, gun_no=gun, wallet_id=world.wallet_id, hold_fen=5_00,
                                at=T0, author="d")


def victim_node(cluster: EmbeddedNatsCluster, victim: str, gateway: Gateway) -> ClusterNode:
    leader = cluster.stream_leader()
    if victim == "the stream's leader":
        return leader
    if victim == "the relay's node":
        node = cluster.node_of_client("chargeledger relay")
        assert node is not None, "the relay is not connected"
        return node
    if victim == "the node of the gateway's consumer":
        opened = gateway.follower.subscriptions["Sessions.ChargingSession.Opened"]
        return cluster.consumer_leader(opened._consumer)
    relay_node = cluster.node_of_client("chargeledger relay")  # a follower, the relay elsewhere if it can be
    followers = [n for n in cluster.nodes if n is not leader]
    return next((n for n in followers if n is not relay_node), followers[0])


@pytest.mark.parametrize("victim", ["a follower", "the stream's leader", "the relay's node",
                                    "the node of the gateway's consumer"])
def test_a_node_killed_mid_backlog_loses_and_duplicates_nothing(
        victim: str, fresh: EmbeddedNatsCluster, ledger: Ledger, database_url: str) -> None:
    cluster = fresh
    world = build_world(ledger)
    backlog(ledger, world, BACKLOG)
    relay = Relay(ledger.applications, eventsourcing_env(database_url), cluster.url_for(RELAY), batch_size=500,
                  window=200)
    with relay_thread(relay):
        wait_for(lambda: relay.published > 0, timeout=60)
        gateway = Gateway(cluster.url_for(GATEWAY))
        try:
            assert asyncio.run(_admin(cluster, _replicas)) == 3  # a cluster of 3: R3, without any setting
            target = victim_node(cluster, victim, gateway)
            wait_for(lambda: relay.published > BACKLOG // 4, timeout=120)
            assert not relay.caught_up()  # mid-backlog: the window is full when the node dies
            target.kill()
            trade_no = start_session(ledger, world, 1)  # a command written after the loss
            wait_for(relay.caught_up, timeout=180)
            wait_for(lambda: any(trade_no in body for body in gateway.trades), timeout=120)
            assert not target.running()
            messages = asyncio.run(_admin(cluster, _read_stream))
        finally:
            gateway.close()
    assert_stream_is_the_logs(ledger, relay.ledger_id, messages)
    # (relay.published may be short of the events: those stored whose acks the node's loss took were
    # found on the stream by the sync, and not sent again)
    print(f"\nkilled {victim} ({target.name}) mid-backlog: {len(messages)} events on the stream, each once; "
          f"acknowledged {relay.published}, relay errors {relay.errors}, windows refused {relay.refused}, "
          f"syncs {relay.synced}")


def test_the_stream_grows_to_r3_and_a_setting_overrides(fresh: EmbeddedNatsCluster, ledger: Ledger,
                                                       database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``NATS_REPLICAS=1`` makes an R1 stream on the cluster; a relay without the setting then brings it
    to R3 (a cluster of 3 nodes), and one that connects while a node is down does not shrink it."""
    cluster = fresh
    build_world(ledger)
    env = eventsourcing_env(database_url)

    def relay_once(replicas: int | None) -> None:
        relay = Relay(ledger.applications, env, cluster.url_for(RELAY), replicas=replicas)
        with relay_thread(relay):
            wait_for(relay.caught_up, timeout=60)
        relay.close()

    monkeypatch.setenv("NATS_REPLICAS", "1")
    relay_once(None)
    assert asyncio.run(_admin(cluster, _replicas)) == 1
    monkeypatch.delenv("NATS_REPLICAS")
    relay_once(None)
    assert asyncio.run(_admin(cluster, _replicas)) == 3
    # the new replicas copy the stream from the one that held it: until they have, that node's loss stops it
    wait_for(lambda: asyncio.run(_admin(cluster, _replicas_current)), timeout=60)
    cluster.kill(2)
    start_session(ledger, build_world(ledger, pile_no="32010600019237", driver="driver-2"), 1)
    relay_once(None)
    assert asyncio.run(_admin(cluster, _replicas)) == 3


def test_a_bad_replicas_setting_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from adapters.followers.relay.stream import replicas_setting
    for bad in ("0", "three", "7", "-1"):
        with pytest.raises(ValueError, match="NATS_REPLICAS"):
            replicas_setting(bad)
    assert replicas_setting("") is None and replicas_setting("3") == 3


def test_a_cluster_url_names_every_node(cluster: EmbeddedNatsCluster, tmp_path: Path) -> None:
    options = server_options(cluster.url_for(RELAY))
    assert options["servers"] == [f"nats://127.0.0.1:{node.port}" for node in cluster.nodes]
    assert options["user"] == RELAY and options["password"]
