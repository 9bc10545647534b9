"""The YKC gateway end to end: real TCP, real Postgres, real NATS (through the relay), scripted piles.

The link: unknown and disabled piles refused at login, quirky CRCs answered their way, garbage and fuzzed
streams skipped without stopping the gateway serving other piles, missed heartbeats taking a pile offline."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from domain.ledger import Ledger
from pile_link.gateway import Gateway
from pile_link.ykc import BillingModelRequest, BillingModelVerify, Heartbeat, HeartbeatAck, encode_message
from tests.factories import build_world
from tests.ykc_pile import ScriptedPile
from tests.e2e.gateway_harness import Clock, _events, run, until


def test_unknown_and_disabled_piles_are_refused_at_login_and_closed(ledger: Ledger, database_url: str,
                                                                    nats_url: str) -> None:
    world = build_world(ledger)
    ledger.register_pile(world.station_id, "32010600019299", "DC", 1, "admin")
    ledger.set_pile_enabled("32010600019299", False, "admin", "unpaid")

    async def scenario(gateway: Gateway, clock: Clock) -> None:
        for pile_no in ("99999999999999", "32010600019299"):
            pile = ScriptedPile(pile_no)
            await pile.login(gateway.port, expect_ok=False)
            assert await pile.closed_by_peer()
        assert gateway.stats["logins_refused"] == 2

    run(ledger, database_url, nats_url, scenario)
    assert not ledger.registry.pile("32010600019299").online


def test_a_high_byte_first_crc_pile_is_understood_and_answered_its_way(ledger: Ledger, database_url: str,
                                                                       nats_url: str) -> None:
    world = build_world(ledger)

    async def scenario(gateway: Gateway, clock: Clock) -> None:
        pile = ScriptedPile(world.pile_no, crc_order="be")
        await pile.login(gateway.port)
        pile.send(Heartbeat(world.pile_no, "01", 0))
        await pile.expect(HeartbeatAck)
        assert pile.crc_orders_seen == {"be"}

    run(ledger, database_url, nats_url, scenario)


def test_garbage_is_skipped_a_garbage_only_peer_is_closed_and_other_piles_are_served(
        ledger: Ledger, database_url: str, nats_url: str) -> None:
    world = build_world(ledger)
    rng = random.Random(7)

    async def scenario(gateway: Gateway, clock: Clock) -> None:
        pile = ScriptedPile(world.pile_no)
        await pile.login(gateway.port)
        noise = ScriptedPile("00000000000000")
        await noise.connect(gateway.port)
        good = encode_message(Heartbeat(world.pile_no, "01", 0), b"\x00\x01")
        for i in range(40):
            # a logged-in pile's stream with mutated frames and noise between good heartbeats
            mutated = bytearray(good)
            mutated[rng.randrange(2, len(mutated))] ^= 1 + rng.randrange(255)
            pile.send_raw(bytes(mutated) + bytes(rng.randrange(256) for _ in range(rng.randrange(8))) + good)
            await pile.expect(HeartbeatAck)
            noise.send_raw(bytes([0x68]) + bytes(rng.randrange(256) for _ in range(30)))
        assert await noise.closed_by_peer()
        assert gateway.stats["bad_frames"] >= 8
        pile.send(Heartbeat(world.pile_no, "02", 0))
        assert (await pile.expect(HeartbeatAck)).gun_no == "02"

    run(ledger, database_url, nats_url, scenario)


def test_three_missed_heartbeats_take_the_pile_offline(ledger: Ledger, database_url: str, nats_url: str) -> None:
    world = build_world(ledger)

    async def scenario(gateway: Gateway, clock: Clock) -> None:
        pile = ScriptedPile(world.pile_no)
        await pile.login(gateway.port)
        await until(lambda: ledger.registry.pile(world.pile_no).online)
        await asyncio.sleep(0.6)
        await gateway.sweep()
        assert await pile.closed_by_peer()
        await until(lambda: not ledger.registry.pile(world.pile_no).online)

    run(ledger, database_url, nats_url, scenario, heartbeat_timeout=0.5)
    names = [type(e).__name__ for e in _events(ledger.registry)]
    assert names[-2:] == ["Connected", "Disconnected"]


def test_fuzzed_streams_never_stop_the_gateway_serving_other_piles(ledger: Ledger, database_url: str,
                                                                   nats_url: str) -> None:
    """Random bytes and mutated frames on one connection (hypothesis), while a logged-in pile on
    another keeps getting its heartbeats answered; the gateway ends with no handler error."""
    import socket
    import threading

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from pile_link.ykc import FrameDecoder, Login, decode_message

    world = build_world(ledger)
    noisy_pile = "32010600019237"  # the fuzzed connection may log in, as a pile of its own
    ledger.register_pile(world.station_id, noisy_pile, "DC", 2, "admin")
    good_login = encode_message(Login(world.pile_no, 0, 2, 0x10, "V1", 0, "0" * 20, 4), b"\x00\x01")
    good_heartbeat = encode_message(Heartbeat(world.pile_no, "01", 0), b"\x00\x02")
    frames = [encode_message(m, b"\x00\x07") for m in (
        Heartbeat(noisy_pile, "01", 0), Login(noisy_pile, 0, 2, 0x10, "V1", 0, "0" * 20, 4),
        BillingModelRequest(noisy_pile), BillingModelVerify(noisy_pile, "0001"))]
    mutated = st.tuples(st.sampled_from(frames), st.lists(st.tuples(st.integers(0, 80), st.integers(1, 255)),
                                                          max_size=4)).map(
        lambda fm: bytes(b ^ dict(fm[1]).get(i, 0) for i, b in enumerate(fm[0])))
    stream = st.lists(st.one_of(st.binary(max_size=64), mutated, st.sampled_from(frames)), min_size=1, max_size=12)

    loop = asyncio.new_event_loop()
    gateway = Gateway(ledger, database_url=database_url, nats_url=nats_url, sweep_interval=3600)
    loop.run_until_complete(gateway.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    good = socket.create_connection(("127.0.0.1", gateway.port), timeout=5)
    decoder = FrameDecoder()

    def answer_to(data: bytes) -> Any:
        good.sendall(data)
        while True:
            chunk = good.recv(4096)
            assert chunk, "the gateway closed the good pile's connection"
            for item in decoder.feed(chunk):
                msg = decode_message(item)
                if type(msg).__name__ in ("LoginAck", "HeartbeatAck"):
                    return msg

    try:
        assert answer_to(good_login).result == 0

        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
        @given(stream)
        def fuzz(chunks: list[bytes]) -> None:
            with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as noisy:
                for chunk in chunks:
                    try:
                        noisy.sendall(chunk)
                    except OSError:
                        break  # the gateway closed a garbage-only peer: allowed
                assert isinstance(answer_to(good_heartbeat), HeartbeatAck)  # the other pile is still served

        fuzz()
        assert gateway.stats["handler_errors"] == 0
    finally:
        good.close()
        asyncio.run_coroutine_threadsafe(gateway.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
