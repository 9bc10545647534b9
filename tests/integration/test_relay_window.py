"""The relay's publish window (adapters/followers/relay/window.py) against a real NATS: guarded atomic
batches. A batch whose guard (the last sequence on its shard's Application's subjects) is wrong is refused
and stores nothing, per shard, while another shard's publishes go on; a right one is stored in order,
acknowledged in order; another shard's messages between two of a shard's batches change nothing (the
stream-wide guard the window had before refused and reordered there); one event alone goes as a plain
publish with the same guard; a relay whose window is refused
re-reads the stream and goes on; one whose stream lost ``allow_atomic`` sets it again."""

from __future__ import annotations

import asyncio

import nats
import pytest

from adapters.followers.relay.publisher import Relay
from adapters.followers.relay.stream import guard_subject, ensure_stream
from adapters.followers.relay.window import BATCH_SEQUENCE, Outgoing, PublishWindow, Refused
from adapters.postgres.env import eventsourcing_env
from adapters.servers.nats_users import RELAY, STREAM, connect_options, server_options
from domain.ledger import Ledger
from tests.e2e.relay_harness import backlog, relay_thread
from tests.factories import build_world
from tests.integration.test_relay import assert_stream_is_the_logs, charge_sessions, cut_in, read_stream, wait_for

SHARDS = {"main": "chargeledger.Window", "s2": "chargeledger.s2.Window"}  # an Application "Window" on each


def outgoing(shard: str, prefix: str, count: int) -> list[Outgoing]:
    return [Outgoing(f"{SHARDS[shard]}.Test.E{i}", f"body {i}".encode(), {"Nats-Msg-Id": f"{shard}.{prefix}:{i}"}, i)
            for i in range(1, count + 1)]


async def last_on(js, shard: str) -> int:  # type: ignore[no-untyped-def]
    try:
        return (await js.get_last_msg(STREAM, guard_subject("Window", shard))).seq
    except nats.js.errors.NotFoundError:
        return 0


async def stored_ids(js, first: int) -> list[str]:  # type: ignore[no-untyped-def]
    last = (await js.stream_info(STREAM)).state.last_seq
    return [(await js.get_msg(STREAM, seq)).headers["Nats-Msg-Id"] for seq in range(first, last + 1)]


def test_a_batch_expecting_the_wrong_last_sequence_on_its_guard_is_refused_per_shard(
        nats_url: str, nats_role_urls: dict[str, str]) -> None:
    """Each shard's guard is its own: s2's window expecting a wrong sequence is refused and stores
    nothing while main's, right, is stored; then the other way round; then both right, in order."""
    async def scenario() -> None:
        nc = await nats.connect(**server_options(nats_role_urls[RELAY]), **connect_options(RELAY))
        try:
            js = nc.jetstream(timeout=5)
            await ensure_stream(js)
            window = await PublishWindow(nc, 4, ack_timeout=5).open()
            taken: dict[str, list[tuple[int, int]]] = {"main": [], "s2": []}

            def took(shard: str):  # type: ignore[no-untyped-def]
                return lambda event, sequence: taken[shard].append((event.notification_id, sequence))

            async def publish(shard: str, prefix: str, expected: int) -> int:
                return await window.publish(outgoing(shard, prefix, 10), guard_subject("Window", shard), expected,
                                            lambda: True, took(shard))

            before = (await js.stream_info(STREAM)).state.last_seq
            with pytest.raises(Refused) as refused:  # as if an event before them had been lost in flight
                await publish("s2", "gap", await last_on(js, "s2") + 1)
            assert refused.value.code == 10071, refused.value  # wrong last sequence
            assert taken["s2"] == [] and (await js.stream_info(STREAM)).state.last_seq == before  # none stored
            main_last = await publish("main", "a", await last_on(js, "main"))  # main's guard: unaffected
            assert taken["main"] == [(i, before + i) for i in range(1, 11)]  # in order, acknowledged in order
            assert main_last == before + 10 == await last_on(js, "main")

            with pytest.raises(Refused):  # the other way round: main's stale, s2's right
                await publish("main", "stale", main_last - 1)
            with pytest.raises(Refused):  # one event alone (a plain publish, the same guard): refused too
                await window.publish(outgoing("main", "one", 1), guard_subject("Window", "main"), main_last - 1,
                                     lambda: True, took("main"))
            s2_last = await publish("s2", "a", await last_on(js, "s2"))
            assert taken["s2"] == [(i, main_last + i) for i in range(1, 11)] and s2_last == main_last + 10
            ids = await stored_ids(js, before + 1)
            assert ids == [f"main.a:{i}" for i in range(1, 11)] + [f"s2.a:{i}" for i in range(1, 11)]
            # batches of 4: each message carries its place in its batch (the window was more than one)
            info = await js.get_msg(STREAM, before + 4)
            assert info.headers[BATCH_SEQUENCE] == "4"
            one = await window.publish(outgoing("s2", "one", 1), guard_subject("Window", "s2"), s2_last,
                                       lambda: True, took("s2"))
            assert one == s2_last + 1 and BATCH_SEQUENCE not in (await js.get_msg(STREAM, one)).headers
            assert window.waiting == {}
        finally:
            await nc.close()
    asyncio.run(scenario())


def test_another_shards_messages_between_a_shards_batches_change_nothing(
        nats_url: str, nats_role_urls: dict[str, str]) -> None:
    """Another shard's relay publishes between a shard's learning its last sequence and its window, and
    between each two of its batches: every event is stored, once, in order, none refused. (Expecting the
    stream-wide last sequence, as the window did before, the first batch was refused and the events after
    the refused one stored ahead of it: a reorder, or a loss once the next sync moved the position past it.)"""
    async def scenario() -> list[str]:
        nc = await nats.connect(**server_options(nats_role_urls[RELAY]), **connect_options(RELAY))
        try:
            js = nc.jetstream(timeout=5)
            await ensure_stream(js)
            first = (await js.stream_info(STREAM)).state.last_seq + 1
            window = await PublishWindow(nc, 3, ack_timeout=5).open()
            events = outgoing("main", "m", 9)
            expected = await last_on(js, "main")
            for batch in range(3):
                await js.publish("chargeledger.s2.Window.Test.Other", b"{}", headers={"Nats-Msg-Id": f"s2.x:{batch}"})
                expected = await window.publish(events[3 * batch:3 * batch + 3], guard_subject("Window", "main"),
                                                expected, lambda: True, lambda e, s: None)
            return await stored_ids(js, first)
        finally:
            await nc.close()
    ids = asyncio.run(scenario())
    assert [i for i in ids if i.startswith("main.")] == [f"main.m:{i}" for i in range(1, 10)]  # all, once, in order
    assert ids == [name for batch in range(3)
                   for name in [f"s2.x:{batch}", *(f"main.m:{i}" for i in range(3 * batch + 1, 3 * batch + 4))]]


def test_a_relay_whose_publish_is_refused_reads_the_stream_again_and_goes_on(
        ledger: Ledger, database_url: str, nats_url: str, nats_role_urls: dict[str, str]) -> None:
    """Something else publishes on the relay's own guard (its shard's subjects of ``Sessions``: a second
    relay of the shard, a stale leader) after the relay learnt the last sequence there: the relay's next
    batch is refused, stores nothing, and the relay reads the stream again and goes on, its window whole."""
    relay = Relay(ledger.applications, eventsourcing_env(database_url), nats_role_urls[RELAY], window=50,
                  batch_size=100)
    world = build_world(ledger)
    with relay_thread(relay):
        charge_sessions(ledger, world, 2)
        wait_for(relay.caught_up, timeout=60)

        cut_in(nats_url, "chargeledger.Sessions.Other.Happened", "another-ledger:Sessions:1")
        charge_sessions(ledger, world, 2)
        wait_for(relay.caught_up, timeout=60)
    relay.close()
    assert relay.refused >= 1
    ours = [m for m in asyncio.run(read_stream(nats_url)) if m.headers["Nats-Msg-Id"].startswith(relay.ledger_id)]
    assert_stream_is_the_logs(ledger, relay.ledger_id, ours)


def test_a_relay_whose_stream_lost_allow_atomic_sets_it_again_and_goes_on(
        ledger: Ledger, database_url: str, nats_url: str, nats_role_urls: dict[str, str]) -> None:
    """A relay from before the atomic windows, connecting, updates the stream without ``allow_atomic``:
    the next window is refused (``atomic publish is disabled``), the relay reconnects, which makes the
    stream's configuration right again, and publishes everything, in order."""
    relay = Relay(ledger.applications, eventsourcing_env(database_url), nats_role_urls[RELAY], window=100,
                  batch_size=300, retry_first=0.05)
    world = build_world(ledger)

    async def allow_atomic(value: bool | None = None) -> bool:
        nc = await nats.connect(nats_url)
        try:
            js = nc.jetstream()
            config = (await js.stream_info(STREAM)).config
            if value is not None:
                config.allow_atomic = value
                await js.update_stream(config)
            return bool((await js.stream_info(STREAM)).config.allow_atomic)
        finally:
            await nc.close()
    with relay_thread(relay):
        wait_for(relay.caught_up, timeout=60)
        assert asyncio.run(allow_atomic(False)) is False
        backlog(ledger, world, 300)  # one transaction: a window of more than one event
        wait_for(relay.caught_up, timeout=60)
    relay.close()
    assert relay.errors >= 1 and asyncio.run(allow_atomic())
    ours = [m for m in asyncio.run(read_stream(nats_url)) if m.headers["Nats-Msg-Id"].startswith(relay.ledger_id)]
    assert_stream_is_the_logs(ledger, relay.ledger_id, ours)
