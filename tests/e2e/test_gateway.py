"""The YKC gateway end to end: real TCP, real Postgres, real NATS (through the relay), a scripted pile."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from adapters.cli.relay import running_relay
from domain.ledger import Ledger
from domain.pricing import price
from pile_link.gateway import Gateway
from pile_link.ykc import (
    BillingModelReply,
    BillingModelRequest,
    BillingModelSet,
    BillingModelSetAck,
    BillingModelVerify,
    BillingModelVerifyAck,
    Heartbeat,
    HeartbeatAck,
    Reboot,
    RebootAck,
    RemoteStart,
    RemoteStartReply,
    RemoteStop,
    RemoteStopReply,
    StartAuthReply,
    StartRequest,
    TimeSync,
    TransactionConfirm,
    encode_message,
)
from tests.factories import PRICES, SLOTS, build_world
from tests.ykc_pile import ScriptedPile

PRICE_PER_TIER = tuple(PRICES[t]["electricity"] + PRICES[t]["service"] for t in ("sharp", "peak", "flat", "valley"))
CHARGING, IDLE = 3, 2


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


def run(ledger: Ledger, database_url: str, nats_url: str,
        scenario: Callable[[Gateway, Clock], Awaitable[Any]], **options: Any) -> Any:
    clock = Clock()
    with running_relay(ledger, database_url, nats_url) as relay:
        deadline = time.monotonic() + 30
        while not relay.caught_up():  # the world's events published before the gateway follows only new ones
            assert time.monotonic() < deadline, "relay did not catch up"
            time.sleep(0.02)

        async def main() -> Any:
            gateway = Gateway(ledger, database_url=database_url, nats_url=nats_url, clock=clock,
                              sweep_interval=3600, **options)
            await gateway.start()
            try:
                return await asyncio.wait_for(scenario(gateway, clock), 60)
            finally:
                await gateway.stop()
        return asyncio.run(main())


async def start_from_app(gateway: Gateway, clock: Clock, world: Any, pile: ScriptedPile, hold: int = 50_00,
                         gun_no: int = 1) -> tuple[Any, RemoteStart]:
    trade_no = await gateway.run(gateway.ledger.request_start, pile_no=pile.pile_no, gun_no=gun_no,
                                 wallet_id=world.wallet_id, hold_fen=hold, at=clock(), author="driver-1")
    frame, start = await pile.expect_frame(RemoteStart)
    assert (start.trade_no, start.gun_no, start.balance_fen) == (trade_no, f"{gun_no:02d}", hold)
    return frame, start


def local(clock: Clock) -> datetime:
    """The pile's wall clock (naive China time), as it writes times into its frames."""
    return clock().astimezone(ZoneInfo("Asia/Shanghai")).replace(tzinfo=None)


async def started(gateway: Gateway, clock: Clock, world: Any, hold: int = 50_00,
                  acknowledged: bool = True) -> tuple[ScriptedPile, RemoteStart]:
    """A pile logged in, a start from the app received (0x34) and, unless told otherwise, accepted (0x33)."""
    pile = ScriptedPile(world.pile_no)
    await pile.login(gateway.port)
    _, start = await start_from_app(gateway, clock, world, pile, hold=hold)
    if acknowledged:
        pile.send(RemoteStartReply(start.trade_no, world.pile_no, "01", 1, 0))
    return pile, start


async def until(predicate: Callable[[], Any], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


def test_remote_start_charge_stop_record_confirm_settles_and_captures(ledger: Ledger, database_url: str,
                                                                      nats_url: str) -> None:
    world = build_world(ledger, top_up=100_00)

    async def scenario(gateway: Gateway, clock: Clock) -> None:
        pile = ScriptedPile(world.pile_no)
        await pile.login(gateway.port)
        assert (await pile.expect(TimeSync)).pile_no == world.pile_no  # clock set after login
        pile.send(BillingModelVerify(world.pile_no, "0000"))
        assert (await pile.expect(BillingModelVerifyAck)).result == 1  # differs: the pile asks for it
        pile.send(BillingModelRequest(world.pile_no))
        model = await pile.expect(BillingModelReply)
        assert model.model_no == "0001" and list(model.slots) == SLOTS
        assert [(t.electricity_price, t.service_price) for t in model.tiers] == [
            (PRICES[t]["electricity"], PRICES[t]["service"]) for t in ("sharp", "peak", "flat", "valley")]
        pile.send(BillingModelVerify(world.pile_no, "0001"))
        assert (await pile.expect(BillingModelVerifyAck)).result == 0  # now it holds the right model

        _, start = await start_from_app(gateway, clock, world, pile, hold=50_00)
        trade_no = start.trade_no
        pile.send(RemoteStartReply(trade_no, world.pile_no, "01", 1, 0))
        for i in range(1, 4):
            clock.now += timedelta(minutes=1)
            pile.send(pile.realtime(1, status=CHARGING, trade_no=trade_no, energy=i * 2500))
        await until(lambda: ledger.session(trade_no).readings == 3)
        session = ledger.session(trade_no)
        assert session.state == "charging" and session.meter_energy == 7500

        await gateway.run(ledger.request_stop, trade_no, "driver-1", "driver", clock())
        await pile.expect(RemoteStop)
        pile.send(RemoteStopReply(world.pile_no, "01", 1, 0))
        now = local(clock)
        tier = SLOTS[(now.hour * 60 + now.minute) // 30]
        energy = [0, 0, 0, 0]
        energy[tier] = 7600
        pile.send(pile.record(trade_no, 1, tuple(energy), PRICE_PER_TIER,  # type: ignore[arg-type]
                              now - timedelta(minutes=3), now))
        confirm = await pile.expect(TransactionConfirm)
        assert (confirm.trade_no, confirm.result) == (trade_no, 0)

        session = ledger.session(trade_no)
        bill = price(tuple(energy), session.schedule)  # type: ignore[arg-type]
        assert session.state == "finished" and session.bill == bill.as_dict()
        wallet = ledger.wallet(world.wallet_id)
        assert (wallet.available, wallet.held) == (100_00 - bill.total_fen, 0)
        await until(lambda: ledger.registry.pile(world.pile_no).guns["1"]["status"] == "charging")  # written behind
        await pile.close()
        await until(lambda: not ledger.registry.pile(world.pile_no).online)

    run(ledger, database_url, nats_url, scenario)


def test_the_same_record_three_times_settles_once_and_is_confirmed_each_time(ledger: Ledger, database_url: str,
                                                                            nats_url: str) -> None:
    world = build_world(ledger, top_up=100_00)

    async def scenario(gateway: Gateway, clock: Clock) -> None:
        pile, start = await started(gateway, clock, world)
        now = local(clock)
        rec = pile.record(start.trade_no, 1, (0, 0, 12000, 0), PRICE_PER_TIER, now, now + timedelta(minutes=20))
        for _ in range(3):
            pile.send(rec)
            assert (await pile.expect(TransactionConfirm)).result == 0
        return start.trade_no

    trade_no = run(ledger, database_url, nats_url, scenario)
    names = [type(e).__name__ for e in _events(ledger.sessions) if getattr(e, "originator_id", None)
             == ledger.session(trade_no).id]
    assert names.count("Settled") == 1
    captures = [e for e in _events(ledger.wallets) if type(e).__name__ == "Captured"]
    assert len(captures) == 1
    assert ledger.wallet(world.wallet_id).available == 100_00 - price((0, 0, 12000, 0),
                                                                       ledger.session(trade_no).schedule).total_fen


def _events(app: Any) -> list[Any]:
    from adapters.followers.log_follower import iter_events
    return list(iter_events(app))


def test_pile_that_drops_mid_charge_uploads_its_record_after_logging_in_again(ledger: Ledger, database_url: str,
                                                                              nats_url: str) -> None:
    world = build_world(ledger, top_up=100_00)

    async def scenario(gateway: Gateway, clock: Clock) -> None:
        pile, start = await started(gateway, clock, world)
        pile.send(pile.realtime(1, status=CHARGING, trade_no=start.trade_no, energy=4000))
        await until(lambda: ledger.session(start.trade_no).state == "charging")
        await pile.close()  # the 4G link drops; the pile keeps charging and buffers its record
        await until(lambda: not ledger.registry.pile(world.pile_no).online)
        assert ledger.session(start.trade_no).state == "charging"

        again = ScriptedPile(world.pile_no)
        await again.login(gateway.port)
        await until(lambda: ledger.registry.pile(world.pile_no).online)
        now = local(clock)
        again.send(again.record(start.trade_no, 1, (0, 0, 9000, 0), PRICE_PER_TIER, now, now))
        assert (await again.expect(TransactionConfirm)).result == 0
        session = ledger.session(start.trade_no)
        assert session.state == "finished"
        assert ledger.wallet(world.wallet_id).available == 100_00 - session.bill["total_fen"]

    run(ledger, database_url, nats_url, scenario)


def test_start_on_an_unplugged_gun_fails_and_releases_the_hold(ledger: Ledger, database_url: str,
                                                               nats_url: str) -> None:
    world = build_world(ledger, top_up=100_00)

    async def scenario(gateway: Gateway, clock: Clock) -> None:
        pile, start = await started(gateway, clock, world, hold=80_00, acknowledged=False)
        assert ledger.wallet(world.wallet_id).held == 80_00
        pile.send(RemoteStartReply(start.trade_no, world.pile_no, "01", 0, 5))  # 5: gun not plugged
        await until(lambda: ledger.session(start.trade_no).state == "failed")
        assert ledger.session(start.trade_no).reason == "gun not plugged"
        await until(lambda: ledger.wallet(world.wallet_id).held == 0)
        assert ledger.wallet(world.wallet_id).available == 100_00

    run(ledger, database_url, nats_url, scenario)


def test_a_pile_that_never_answers_a_start_fails_when_the_deadline_passes(ledger: Ledger, database_url: str,
                                                                          nats_url: str) -> None:
    world = build_world(ledger, top_up=100_00)

    async def scenario(gateway: Gateway, clock: Clock) -> None:
        pile, start = await started(gateway, clock, world, acknowledged=False)  # ... and the pile says nothing
        clock.now += timedelta(seconds=89)
        await gateway.sweep()
        assert ledger.session(start.trade_no).state == "requested"
        clock.now += timedelta(seconds=2)  # 91 s after the start: the deadline in Opened has passed
        await gateway.sweep()
        session = ledger.session(start.trade_no)
        assert session.state == "failed" and "deadline" in session.reason
        assert (ledger.wallet(world.wallet_id).available, ledger.wallet(world.wallet_id).held) == (100_00, 0)
        await gateway.sweep()  # a second sweep changes nothing
        assert ledger.session(start.trade_no).version == session.version

    run(ledger, database_url, nats_url, scenario)


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


def test_card_start_at_the_pile_is_authorised_against_the_wallet(ledger: Ledger, database_url: str,
                                                                 nats_url: str) -> None:
    world = build_world(ledger, top_up=60_00)
    ledger.bind_credential(world.wallet_id, "card", "00000000DEADBEEF", "driver-1")

    async def scenario(gateway: Gateway, clock: Clock) -> None:
        pile = ScriptedPile(world.pile_no)
        await pile.login(gateway.port)
        pile.send(StartRequest(world.pile_no, "02", 1, 0, bytes.fromhex("00000000DEADBEEF"), bytes(16), "0" * 17))
        reply = await pile.expect(StartAuthReply)
        assert (reply.result, reply.balance_fen) == (1, 60_00)
        assert ledger.session(reply.trade_no).origin == "card"
        assert ledger.wallet(world.wallet_id).held == 60_00
        pile.send(StartRequest(world.pile_no, "01", 1, 0, bytes.fromhex("00000000CAFEBABE"), bytes(16), "0" * 17))
        refused = await pile.expect(StartAuthReply)
        assert (refused.result, refused.fail_reason) == (0, 1)  # no such account

    run(ledger, database_url, nats_url, scenario)


def test_tariff_revision_is_pushed_to_an_idle_pile_and_reboot_reaches_it(ledger: Ledger, database_url: str,
                                                                         nats_url: str) -> None:
    world = build_world(ledger)

    async def scenario(gateway: Gateway, clock: Clock) -> None:
        pile = ScriptedPile(world.pile_no)
        await pile.login(gateway.port)
        cheaper = {t: {"electricity": p["electricity"] - 1000, "service": p["service"]} for t, p in PRICES.items()}
        await gateway.run(ledger.revise_tariff, world.tariff_id, cheaper, SLOTS, "admin")
        pushed = await pile.expect(BillingModelSet)
        assert pushed.model_no == "0002" and pushed.tiers[0].electricity_price == PRICES["sharp"]["electricity"] - 1000
        pile.send(BillingModelSetAck(world.pile_no, 1))
        await gateway.run(ledger.reboot_pile, world.pile_no, author="ops", at=clock())
        assert (await pile.expect(Reboot)).exec_control == 1
        pile.send(RebootAck(world.pile_no, 1))
        await until(lambda: [type(e).__name__ for e in _events(ledger.registry)].count("CommandAnswered") == 2)

    run(ledger, database_url, nats_url, scenario)
    answered = [e for e in _events(ledger.registry) if type(e).__name__ == "CommandAnswered"]
    assert [(e.command, e.ok) for e in answered] == [("push_tariff", True), ("reboot", True)]
    assert ledger.registry.pile(world.pile_no).billing_model == {"tariff_id": str(world.tariff_id), "version": 2}


def test_a_pile_holding_another_tariff_at_the_same_version_is_told_its_model_differs(
        ledger: Ledger, database_url: str, nats_url: str) -> None:
    world = build_world(ledger)
    other = ledger.create_tariff(world.tenant_id, "night", PRICES, [3] * 48, "admin")

    async def scenario(gateway: Gateway, clock: Clock) -> None:
        pile = ScriptedPile(world.pile_no)
        await pile.login(gateway.port)
        pile.send(BillingModelRequest(world.pile_no))
        await pile.expect(BillingModelReply)
        await pile.close()
        await gateway.run(ledger.assign_tariff, other, "admin", pile_no=world.pile_no)  # while it is away
        again = ScriptedPile(world.pile_no)
        await again.login(gateway.port)
        again.send(BillingModelVerify(world.pile_no, "0001"))  # both tariffs are at version 1
        assert (await again.expect(BillingModelVerifyAck)).result == 1

    run(ledger, database_url, nats_url, scenario)


def test_the_platform_stops_a_session_before_it_spends_more_than_the_hold(ledger: Ledger, database_url: str,
                                                                          nats_url: str) -> None:
    world = build_world(ledger, top_up=100_00)

    async def scenario(gateway: Gateway, clock: Clock) -> None:
        pile, start = await started(gateway, clock, world, hold=5_00)  # 5 yuan: ~3 kWh at most
        trade_no = start.trade_no
        for n in range(1, 21):  # 0.5 kWh a reading, at most 0.90 yuan in the dearest tier
            pile.send(pile.realtime(1, status=CHARGING, trade_no=trade_no, energy=n * 5000))
            await until(lambda: ledger.session(trade_no).readings >= n)  # written behind
            await gateway.readings.flush()  # and the balance check that follows each write has run
            if ledger.session(trade_no).state == "stopping":
                break
        else:
            raise AssertionError("never stopped")
        assert n > 1  # it charged for a while first
        await pile.expect(RemoteStop)
        session = ledger.session(trade_no)
        assert session.state == "stopping" and session.reason == "balance used up"
        assert session.measured_bill().total_fen <= 5_00

    run(ledger, database_url, nats_url, scenario)


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


def test_a_batch_whose_write_fails_stays_queued_and_is_written_by_the_next_flush() -> None:
    """A write-behind batch whose transaction fails (a lock timeout under load) is not lost: it is
    written, in order, by the next flush; one that keeps failing is dropped after a bounded number
    of attempts (logged, counted), so it never holds back what is queued behind it for ever."""
    from collections import Counter

    from pile_link.write_behind import MAX_WRITE_ATTEMPTS, WriteBehind

    class Pool:
        stats: Counter[str] = Counter()

        async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
            return fn(*args)

    written: list[int] = []
    failures = [OSError("lock timeout")]

    def write(batch: list[int]) -> list[Exception | None]:
        if failures:
            raise failures.pop()
        written.extend(batch)
        return [None] * len(batch)

    def always_fails(batch: list[int]) -> list[Exception | None]:
        raise OSError("down")

    async def scenario() -> None:
        behind = WriteBehind(Pool(), "things", write)  # type: ignore[arg-type]
        behind.add(1)
        behind.add(2)
        try:
            await behind.flush()
        except OSError:
            pass
        behind.add(3)
        await behind.flush()
        assert written == [1, 2, 3]
        stuck = WriteBehind(Pool(), "stuck", always_fails)  # type: ignore[arg-type]
        stuck.add(1)
        for _ in range(MAX_WRITE_ATTEMPTS):
            try:
                await stuck.flush()
            except OSError:
                pass
        assert stuck.pending == [] and Pool.stats["stuck_dropped"] == 1

    asyncio.run(scenario())
