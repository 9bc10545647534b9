"""The relay with NATS stopped and started again mid-stream: every event exactly once, in order."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import nats
from nats.js.api import AckPolicy, ConsumerConfig
import psycopg

from adapters.postgres.env import eventsourcing_env
from adapters.followers.relay.publisher import Relay
from adapters.followers.relay.stream import MAIN_SHARD, message_id, subject_for
from adapters.servers.nats_users import STREAM
from adapters.servers.nats_server import EmbeddedNats
from domain.ledger import Ledger
from tests.factories import build_world, record

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=timezone.utc)


def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def charge_sessions(ledger: Ledger, world, count: int) -> None:
    for _ in range(count):
        trade_no = ledger.request_start(pile_no=world.pile_no, gun_no=1, wallet_id=world.wallet_id, hold_fen=5_00,
                                        at=T0, author="d")
        ledger.acknowledge_start(trade_no, at=T0, ok=True)
        ledger.mark_charging(trade_no, at=T0)
        for minute in range(1, 4):
            ledger.record_reading(trade_no, at=T0 + timedelta(minutes=minute), energy=minute * 100)
        ledger.settle(trade_no, record((0, 300, 0, 0), T0), T0 + timedelta(minutes=5))


def cut_in(url: str, subject: str, msg_id: str) -> None:
    """One message on the stream from someone other than the relay (a stale leader, another ledger)."""
    async def publish() -> None:
        nc = await nats.connect(url)
        try:
            await nc.jetstream().publish(subject, b"{}", headers={"Nats-Msg-Id": msg_id})
        finally:
            await nc.close()
    asyncio.run(publish())


async def read_stream(url: str) -> list:
    nc = await nats.connect(url)
    js = nc.jetstream()
    info = await js.stream_info(STREAM)
    sub = await js.pull_subscribe(f"{STREAM.lower()}.>", durable=None, stream=STREAM,
                                  config=ConsumerConfig(ack_policy=AckPolicy.NONE))  # no cap on unacked messages
    messages = []
    while len(messages) < info.state.messages:
        messages.extend(await sub.fetch(min(500, info.state.messages - len(messages)), timeout=5))
    await nc.close()
    return messages


def test_nats_outage_loses_and_duplicates_nothing(ledger: Ledger, database_url: str, tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "nats").start()
    relay = Relay(ledger.applications, eventsourcing_env(database_url), server.url, batch_size=50)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(relay.run(),), daemon=True)
    try:
        world = build_world(ledger)
        thread.start()
        charge_sessions(ledger, world, 3)
        wait_for(lambda: relay.published > 20)
        server.stop()  # mid-stream: the ledger goes on writing
        charge_sessions(ledger, world, 3)
        time.sleep(1.0)
        assert not relay.caught_up()
        server.start()
        charge_sessions(ledger, world, 3)
        wait_for(relay.caught_up)
    finally:
        loop.call_soon_threadsafe(relay.stop)
        thread.join(timeout=10)

    messages = asyncio.run(read_stream(server.url))
    server.stop()
    assert_stream_is_the_logs(ledger, relay.ledger_id, messages)


def assert_stream_is_the_logs(ledger: Ledger, ledger_id: str, messages: list, shard: str = MAIN_SHARD) -> None:
    """The stream's messages, one for one with the notification logs: each event exactly once, its
    subject (``shard``'s) and bytes as stored, each Application's events in their log's order."""
    expected = {}
    for app in ledger.applications:
        for n in app.recorder.select_notifications(None, 1_000_000):
            expected[message_id(ledger_id, app.name, n.id)] = (subject_for(app.name, n.topic, shard), n.state)
    ids = [m.headers["Nats-Msg-Id"] for m in messages]
    repeated = sorted(i for i, count in Counter(ids).items() if count > 1)
    assert not repeated, f"{len(ids) - len(set(ids))} events arrived twice, e.g. {repeated[:5]}"
    assert set(ids) == set(expected), f"{len(set(expected) - set(ids))} events lost"
    for m in messages:
        assert (m.subject, m.data) == expected[m.headers["Nats-Msg-Id"]]
    by_subject: dict[str, list[int]] = defaultdict(list)
    by_application: dict[str, list[int]] = defaultdict(list)
    for m in messages:
        notification_id = int(m.headers["Chargeledger-Notification-Id"])
        by_subject[m.subject].append(notification_id)
        by_application[m.headers["Chargeledger-Application"]].append(notification_id)
    for subject, notification_ids in by_subject.items():
        assert notification_ids == sorted(notification_ids), f"out of order on {subject}"
    for application, notification_ids in by_application.items():  # stronger still: each log's own order
        assert notification_ids == sorted(notification_ids), f"out of order in {application}"


def test_a_commit_wakes_the_relay_without_waiting_for_its_poll(ledger: Ledger, database_url: str,
                                                              nats_url: str) -> None:
    """With the fallback poll an hour away, events still go out: the recorder's NOTIFY wakes the relay,
    including after its listening connection was killed and came back."""
    relay = Relay(ledger.applications, eventsourcing_env(database_url), nats_url, idle_sleep=3600)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(relay.run(),), daemon=True)
    world = build_world(ledger)
    thread.start()
    try:
        wait_for(lambda: relay.listening and relay.caught_up(), timeout=30)
        charge_sessions(ledger, world, 1)
        wait_for(relay.caught_up, timeout=30)
        with psycopg.connect(database_url, autocommit=True) as conn:  # the listening connection dies
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE query LIKE 'LISTEN%%' AND pid <> pg_backend_pid()")
        wait_for(lambda: not relay.listening, timeout=30)
        wait_for(lambda: relay.listening, timeout=30)
        charge_sessions(ledger, world, 1)
        wait_for(relay.caught_up, timeout=30)
    finally:
        loop.call_soon_threadsafe(relay.stop)
        thread.join(timeout=10)
    assert not thread.is_alive()
