"""The relay's publish window (adapters/followers/relay/window.py) against a real NATS: an event whose
predecessor is not the stream's last is refused, not stored ahead of it; the caller is told of the
acknowledged events in order; a relay whose window is refused re-reads the stream and goes on."""

from __future__ import annotations

import asyncio

import nats
import pytest

from adapters.followers.relay.publisher import Relay
from adapters.followers.relay.stream import ensure_stream
from adapters.followers.relay.window import Outgoing, PublishWindow, Refused
from adapters.postgres.env import eventsourcing_env
from adapters.servers.nats_users import RELAY, STREAM, connect_options, server_options
from domain.ledger import Ledger
from tests.e2e.relay_harness import relay_thread
from tests.factories import build_world
from tests.integration.test_relay import assert_stream_is_the_logs, charge_sessions, read_stream, wait_for


def outgoing(prefix: str, count: int) -> list[Outgoing]:
    return [Outgoing(f"chargeledger.Window.Test.E{i}", f"body {i}".encode(), {"Nats-Msg-Id": f"{prefix}:{i}"}, i)
            for i in range(1, count + 1)]


def test_a_window_expecting_the_wrong_predecessor_stores_nothing_and_a_right_one_keeps_order(
        nats_url: str, nats_role_urls: dict[str, str]) -> None:
    async def scenario() -> None:
        nc = await nats.connect(**server_options(nats_role_urls[RELAY]), **connect_options(RELAY))
        try:
            js = nc.jetstream(timeout=5)
            await ensure_stream(js)
            window = await PublishWindow(nc, 4, ack_timeout=5).open()
            last = (await js.stream_info(STREAM)).state.last_seq
            taken: list[tuple[int, int]] = []

            def took(event: Outgoing, sequence: int) -> None:
                taken.append((event.notification_id, sequence))

            with pytest.raises(Refused) as refused:  # as if an event before them had been lost in flight
                await window.publish(outgoing("gap", 10), last + 1, lambda: True, took)
            assert refused.value.code == 10071, refused.value  # wrong last sequence
            assert taken == [] and (await js.stream_info(STREAM)).state.last_seq == last  # none stored
            assert await window.publish(outgoing("ok", 10), last, lambda: True, took) == last + 10
            assert taken == [(i, last + i) for i in range(1, 11)]  # in order, each right after the one before
            assert window.waiting == {}
        finally:
            await nc.close()
    asyncio.run(scenario())


def test_a_relay_whose_publish_is_refused_reads_the_stream_again_and_goes_on(
        ledger: Ledger, database_url: str, nats_url: str, nats_role_urls: dict[str, str]) -> None:
    """Another publisher appends to the stream after the relay learnt its last sequence (a second
    ledger's relay on the same NATS): the relay's next publish is refused, and it goes on from there.
    With ``RELAY_WINDOW=1``: a window of more would have sent the events after the refused one expecting
    sequences the foreign message makes right, and they would be stored ahead of it (the window needs
    the relay to be the stream's only publisher; docs/operations.md, "The NATS cluster")."""
    relay = Relay(ledger.applications, eventsourcing_env(database_url), nats_role_urls[RELAY], window=1,
                  batch_size=100)
    world = build_world(ledger)
    with relay_thread(relay):
        charge_sessions(ledger, world, 2)
        wait_for(relay.caught_up, timeout=60)

        async def cut_in() -> None:
            nc = await nats.connect(nats_url)
            try:
                await nc.jetstream().publish("chargeledger.Other.Thing.Happened", b"{}",
                                             headers={"Nats-Msg-Id": "another-ledger:Other:1"})
            finally:
                await nc.close()
        asyncio.run(cut_in())
        charge_sessions(ledger, world, 2)
        wait_for(relay.caught_up, timeout=60)
    relay.close()
    assert relay.refused >= 1
    ours = [m for m in asyncio.run(read_stream(nats_url)) if m.headers["Nats-Msg-Id"].startswith(relay.ledger_id)]
    assert_stream_is_the_logs(ledger, relay.ledger_id, ours)


def test_a_foreign_publish_mid_window_would_reorder_which_is_why_the_window_needs_one_publisher(
        nats_url: str, nats_role_urls: dict[str, str]) -> None:
    """The limit the window documents, shown: a message from another publisher between the relay's
    learning the last sequence and its window lets the window's later events through ahead of the
    refused first one. (With one publisher, the relay alone, this cannot happen.)"""
    async def scenario() -> list[int]:
        nc = await nats.connect(**server_options(nats_role_urls[RELAY]), **connect_options(RELAY))
        admin = await nats.connect(nats_url)
        try:
            js = nc.jetstream(timeout=5)
            await ensure_stream(js)
            last = (await js.stream_info(STREAM)).state.last_seq
            await admin.jetstream().publish("chargeledger.Other.Thing.Happened", b"{}")
            window = await PublishWindow(nc, 5, ack_timeout=5).open()
            with pytest.raises(Refused):
                await window.publish(outgoing("foreign", 5), last, lambda: True, lambda e, s: None)
            info = await js.stream_info(STREAM)
            return [(await js.get_msg(STREAM, seq)).headers["Nats-Msg-Id"]
                    for seq in range(last + 2, info.state.last_seq + 1)]
        finally:
            await nc.close()
            await admin.close()
    stored = asyncio.run(scenario())
    assert stored and "foreign:1" not in stored  # the first refused, later ones stored: order broken
