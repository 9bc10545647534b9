"""The YKC pile simulator against a small YKC platform written here with our codec, over real TCP.

The platform (``Platform``) answers login, heartbeats and the billing model, authorises card
starts, confirms transaction records, and lets a test send 0x34/0x36/0x12/0x56/0x58. It checks
every frame's CRC strictly unless the pile is expected to be quirky, and keeps what it received.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import random
import threading
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from pile_link.simulator import (
    BillingModel,
    ChargeCurve,
    Fleet,
    PileConfig,
    PileSpec,
    SimulatorError,
    TierMeter,
    Vehicle,
    generate_specs,
)
from pile_link.simulator import cli
from pile_link.simulator.drivers import DriverConfig, Drivers
from pile_link.simulator.load import LoadConfig, LoadFleet
from pile_link.ykc import (
    BillingModelReply,
    BillingModelRequest,
    BillingModelSet,
    BillingModelSetAck,
    BillingModelVerify,
    BillingModelVerifyAck,
    DecodeError,
    Frame,
    FrameDecoder,
    Heartbeat,
    HeartbeatAck,
    Login,
    LoginAck,
    Message,
    ReadRealtime,
    RealtimeData,
    RemoteStart,
    RemoteStartReply,
    RemoteStop,
    RemoteStopReply,
    SequenceCounter,
    StartAuthReply,
    StartRequest,
    TierRate,
    TimeSync,
    TimeSyncAck,
    TransactionConfirm,
    TransactionRecord,
    decode_message,
    encode_message,
    encode_reply,
)

# sharp 1.20 + 0.60, peak 1.00 + 0.50, flat 0.70 + 0.40, valley 0.30 + 0.20 yuan/kWh
TIER_RATES = (TierRate(120000, 60000), TierRate(100000, 50000), TierRate(70000, 40000), TierRate(30000, 20000))
# valley 00-08, flat 08-10, peak 10-12, sharp 12-14, flat 14-18, peak 18-22, valley 22-24
SLOTS = (3,) * 16 + (2,) * 4 + (1,) * 4 + (0,) * 4 + (2,) * 8 + (1,) * 8 + (3,) * 4
PILE = "32010600019236"
# Link timers are real seconds. Heartbeats and record retries are fast so tests are short; how long
# the pile tolerates silence (heartbeat_misses x interval, reply_timeout) is generous, so a stalled
# event loop on a loaded machine does not drop the link in tests that are not about that.
FAST = PileConfig(heartbeat_interval=0.5, heartbeat_misses=20, reply_timeout=10.0, record_retry=0.4,
                  reconnect_delay=0.1)


def run(coro_fn: Callable[[], Awaitable[Any]], timeout: float = 60.0) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro_fn(), timeout)

    return asyncio.run(bounded())


class Connection:
    def __init__(self, platform: Platform, writer: asyncio.StreamWriter) -> None:
        self.platform = platform
        self.writer = writer
        self.pile_no: str | None = None
        self.seq = SequenceCounter()
        self.crc_orders: set[str] = set()

    def send(self, msg: Message) -> bytes:
        seq = self.seq.next()
        self.writer.write(encode_message(msg, seq))
        return seq

    def reply(self, frame: Frame, msg: Message) -> None:
        self.writer.write(encode_reply(frame, msg))


class Platform:
    """A YKC server good enough to exercise a pile: what the real gateway does, minus the ledger."""

    def __init__(self, *, lenient_crc: bool = False, refuse: set[str] | None = None) -> None:
        self.lenient_crc = lenient_crc
        self.refuse = refuse or set()
        self.model = BillingModelReply(PILE, "0001", TIER_RATES, 0, SLOTS)
        self.received: list[tuple[str | None, Frame, Message]] = []
        self.errors: list[DecodeError] = []
        self.connections: dict[str, Connection] = {}
        self.records: dict[str, list[TransactionRecord]] = defaultdict(list)
        self.drop_confirms = 0  # ignore this many 0x3B before confirming (to see the pile retry)
        self.answer_heartbeats = True
        self.card_balance_fen: dict[bytes, int] = {}
        self.logins = 0
        self.changed = asyncio.Condition()
        self._server: asyncio.base_events.Server | None = None
        self.port = 0

    async def __aenter__(self) -> Platform:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for conn in list(self.connections.values()):
            conn.writer.close()

    def of(self, cls: type[Message], pile_no: str | None = None) -> list[Message]:
        return [m for p, _, m in self.received if isinstance(m, cls) and (pile_no is None or p == pile_no)]

    async def wait(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        async def until() -> Any:
            async with self.changed:
                while not (result := predicate()):
                    await self.changed.wait()
                return result

        return await asyncio.wait_for(until(), timeout)

    def kick(self, pile_no: str) -> None:
        self.connections[pile_no].writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Connection(self, writer)
        decoder = FrameDecoder(lenient_crc=self.lenient_crc)
        try:
            while chunk := await reader.read(4096):
                for item in decoder.feed(chunk):
                    if isinstance(item, DecodeError):
                        self.errors.append(item)
                        continue
                    msg = decode_message(item)
                    conn.crc_orders.add(item.crc_order)
                    self.received.append((conn.pile_no, item, msg))
                    self._handle(conn, item, msg)
                    async with self.changed:
                        self.changed.notify_all()
        except ConnectionError:
            pass
        finally:
            writer.close()
            if conn.pile_no and self.connections.get(conn.pile_no) is conn:
                del self.connections[conn.pile_no]
            async with self.changed:
                self.changed.notify_all()

    def _handle(self, conn: Connection, frame: Frame, msg: Message) -> None:
        if isinstance(msg, Login):
            self.logins += 1
            ok = msg.pile_no not in self.refuse
            conn.reply(frame, LoginAck(msg.pile_no, 0 if ok else 1))
            if ok:
                conn.pile_no = msg.pile_no
                self.connections[msg.pile_no] = conn
            self.received[-1] = (msg.pile_no, frame, msg)
        elif isinstance(msg, Heartbeat) and self.answer_heartbeats:
            conn.reply(frame, HeartbeatAck(msg.pile_no, msg.gun_no))
        elif isinstance(msg, BillingModelVerify):
            conn.reply(frame, BillingModelVerifyAck(msg.pile_no, msg.model_no, 0 if msg.model_no == self.model.model_no else 1))
        elif isinstance(msg, BillingModelRequest):
            m = self.model
            conn.reply(frame, BillingModelReply(msg.pile_no, m.model_no, m.tiers, m.loss_ratio, m.slots))
        elif isinstance(msg, TransactionRecord):
            self.records[msg.trade_no].append(msg)
            if self.drop_confirms > 0:
                self.drop_confirms -= 1
            else:
                conn.reply(frame, TransactionConfirm(msg.trade_no, 0))
        elif isinstance(msg, StartRequest):
            balance = self.card_balance_fen.get(msg.card_no)
            trade = f"{msg.pile_no}{msg.gun_no}240601120000{len(self.records) + 1:04d}"
            conn.reply(frame, StartAuthReply(trade, msg.pile_no, msg.gun_no, "1000000000000573",
                                             balance or 0, 1 if balance else 0, 0 if balance else 1))

    async def remote_start(self, pile_no: str, gun: str, trade_no: str, balance_fen: int) -> bytes:
        return self.connections[pile_no].send(
            RemoteStart(trade_no, pile_no, gun, "1000000000000573", bytes(8), balance_fen))

    async def remote_start_at(self, at: datetime, pile_no: str, gun: str, trade_no: str, balance_fen: int) -> bytes:
        """Set the pile's clock to ``at`` (0x56), then start (0x34), in one write: the charge starts at
        ``at`` in simulated time however long the login took in real time (the sim clock runs from the
        first connect, so at x600 a one-second stall would otherwise move the start by ten minutes)."""
        self.connections[pile_no].send(TimeSync(pile_no, at))
        return await self.remote_start(pile_no, gun, trade_no, balance_fen)


def trade(n: int, gun: str = "01", pile: str = PILE) -> str:
    return f"{pile}{gun}240601120000{n:04d}"


# -- pure parts ----------------------------------------------------------------------------------


def test_the_charging_curve_ramps_holds_then_tapers_and_replays_from_a_seed() -> None:
    def charge(seed: int) -> list[tuple[int, int, int]]:
        rng = random.Random(seed)
        vehicle = Vehicle.draw(rng)
        curve = ChargeCurve(vehicle, 120_000, rng)
        out = []
        for _ in range(2000):
            r = curve.step(5.0)
            out.append((r.power_w, r.soc_pct, r.energy_delta))
            if r.full:
                break
        return out

    a, b = charge(11), charge(11)
    assert a == b  # same seed, same curve
    assert a != charge(12)
    powers = [p for p, _, _ in a]
    peak = max(powers)
    assert powers[0] < peak / 2  # ramp-up
    assert powers[-1] < peak * 0.5  # taper at high SOC
    socs = [s for _, s, _ in a]
    assert socs == sorted(socs)
    assert sum(e for _, _, e in a) > 0


def test_the_tier_meter_splits_energy_by_the_model_and_stops_within_the_balance() -> None:
    model = BillingModel("0001", tuple(t.electricity_price for t in TIER_RATES),
                         tuple(t.service_price for t in TIER_RATES), SLOTS)
    assert model.tier_at(datetime(2024, 6, 1, 7, 59)) == 3
    assert model.tier_at(datetime(2024, 6, 1, 8, 0)) == 2
    assert model.tier_at(datetime(2024, 6, 1, 12, 30)) == 0
    meter = TierMeter(model)
    meter.add(3, 10_000)  # 1 kWh valley at 0.50 yuan/kWh
    meter.add(2, 5_000)  # 0.5 kWh flat at 1.10
    assert meter.amount == 5_000 + 5_500  # 0.0001 yuan
    budget = 12_000
    fit = meter.affordable(0, 10_000, budget)  # sharp at 1.80 yuan/kWh: 1500 left -> 0.0833 kWh
    assert fit == 833
    meter.add(0, fit)
    assert meter.amount <= budget
    meter.add(0, 1)
    assert meter.amount > budget  # one more 0.0001 kWh would not fit


# -- the simulator over TCP ----------------------------------------------------------------------


def test_login_model_heartbeats_and_time_sync() -> None:
    async def scenario() -> None:
        async with Platform() as platform:
            async with Fleet("127.0.0.1", platform.port, [PileSpec(PILE, guns=2)], seed=1, speed=60,
                             config=FAST) as fleet:
                pile = fleet.pile(PILE)
                await fleet.events.wait_for("model_received", pile=PILE, via="0x0A")
                assert pile.model is not None and pile.model.slots == SLOTS and pile.model_no == "0001"
                await platform.wait(lambda: len(platform.of(Heartbeat, PILE)) >= 4)
                assert {m.gun_no for m in platform.of(Heartbeat, PILE)} == {"01", "02"}
                login = platform.of(Login, PILE)[0]
                assert (login.gun_count, login.protocol_version) == (2, 0x10)
                # the pile numbers its own frames 0, 1, 2 ... from each login
                seqs = [int.from_bytes(f.seq, "big") for p, f, m in platform.received if p == PILE][:4]
                assert seqs == [0, 1, 2, 3]
                # time sync: the pile adopts the platform's clock and echoes it
                conn = platform.connections[PILE]
                noon = datetime(2024, 6, 1, 12, 0, 0)
                loop = asyncio.get_running_loop()
                sent_at = loop.time()
                seq = conn.send(TimeSync(PILE, noon))
                await platform.wait(lambda: platform.of(TimeSyncAck, PILE))
                assert platform.of(TimeSyncAck, PILE)[0].time == noon
                assert [f.seq for p, f, m in platform.received if isinstance(m, TimeSyncAck)] == [seq]
                # since the 0x56 the pile's clock ran from 12:00:00 at x60 (+ < 1 s: it keeps whole seconds)
                ran = timedelta(seconds=(loop.time() - sent_at) * 60 + 1)
                assert noon <= pile.now() <= noon + ran
                # idle realtime on request
                seq = conn.send(ReadRealtime(PILE, "02"))
                await platform.wait(lambda: [f for p, f, m in platform.received if f.seq == seq and
                                             isinstance(m, RealtimeData)])
                rt = [m for p, f, m in platform.received if isinstance(m, RealtimeData) and f.seq == seq][0]
                assert (rt.gun_no, rt.status, rt.trade_no) == ("02", 2, "0" * 32)
                assert not platform.errors

    run(scenario)


def test_a_refused_login_stops_that_pile_only() -> None:
    async def scenario() -> None:
        bad = "32010600019999"
        async with Platform(refuse={bad}) as platform:
            fleet = Fleet("127.0.0.1", platform.port, [PileSpec(PILE), PileSpec(bad)], seed=1, config=FAST)
            await fleet.start(wait=False)
            await fleet.events.wait_for("login_failed", pile=bad)
            await fleet.pile(PILE).wait_online()
            with pytest.raises(SimulatorError):
                await fleet.pile(bad).wait_online(1)
            await asyncio.sleep(0.5)
            assert fleet.pile(bad).stopped and not fleet.pile(bad).online
            assert len(platform.of(Login, bad)) == 1  # it did not try again
            await fleet.close()

    run(scenario)


def test_remote_start_charges_on_a_curve_and_remote_stop_settles_with_a_tiered_record() -> None:
    async def scenario() -> None:
        async with Platform() as platform:
            start = datetime(2024, 6, 1, 7, 50)  # crosses valley -> flat at 08:00
            async with Fleet("127.0.0.1", platform.port, [PileSpec(PILE, guns=2, plugged=True)], seed=3,
                             speed=600, start=start, config=FAST) as fleet:
                pile = fleet.pile(PILE)
                await fleet.events.wait_for("model_received", pile=PILE)
                seq = await platform.remote_start_at(start, PILE, "01", trade(1), balance_fen=100_000)
                await platform.wait(lambda: platform.of(RemoteStartReply, PILE))
                reply = platform.of(RemoteStartReply, PILE)[0]
                assert (reply.result, reply.fail_reason, reply.trade_no) == (1, 0, trade(1))
                assert [f.seq for p, f, m in platform.received if isinstance(m, RemoteStartReply)] == [seq]
                # charging: realtime frames with rising energy and SOC, status 3
                await platform.wait(lambda: len([m for m in platform.of(RealtimeData, PILE)
                                                 if m.trade_no == trade(1) and m.energy > 0]) >= 5, 20)
                frames = [m for m in platform.of(RealtimeData, PILE) if m.trade_no == trade(1)]
                assert all(m.status == 3 for m in frames)
                energies = [m.energy for m in frames]
                assert energies == sorted(energies)
                assert frames[-1].voltage_dv > 3000 and frames[-1].current_da > 0 and frames[-1].soc_pct > 0
                # let the charge itself pass 08:05 (15 min after its 07:50 start) so two tiers are
                # used, then stop it from the platform
                await platform.wait(lambda: [m for m in platform.of(RealtimeData, PILE)
                                             if m.trade_no == trade(1) and m.elapsed_min >= 15], 20)
                platform.connections[PILE].send(RemoteStop(PILE, "01"))
                await platform.wait(lambda: platform.records.get(trade(1)))
                stop = platform.of(RemoteStopReply, PILE)[0]
                assert (stop.result, stop.fail_reason) == (1, 0)
                record = platform.records[trade(1)][0]
                assert record.stop_reason == 0x40 and record.trade_type == 0x01
                valley, flat = record.tiers[3], record.tiers[2]
                assert valley.energy > 0 and flat.energy > 0
                assert record.tiers[0].energy == record.tiers[1].energy == 0
                assert (valley.price, flat.price) == (50000, 110000)
                assert record.energy == valley.energy + flat.energy == record.meter_end - record.meter_start
                assert record.amount == valley.amount + flat.amount
                assert valley.amount == (valley.energy * 50000 + 50000) // 100000
                assert record.start_time < datetime(2024, 6, 1, 8, 0) < record.end_time
                await fleet.events.wait_for("record_confirmed", pile=PILE, trade_no=trade(1))
                assert not pile.records
                # a second 0x36 finds nothing charging
                platform.connections[PILE].send(RemoteStop(PILE, "01"))
                await platform.wait(lambda: len(platform.of(RemoteStopReply, PILE)) == 2)
                assert platform.of(RemoteStopReply, PILE)[1].fail_reason == 2
                assert not platform.errors

    run(scenario)


def test_a_start_on_an_unplugged_gun_fails_then_succeeds_when_plugged_within_60_s() -> None:
    async def scenario() -> None:
        async with Platform() as platform:
            async with Fleet("127.0.0.1", platform.port, [PileSpec(PILE)], seed=2, speed=1,
                             config=FAST) as fleet:
                pile = fleet.pile(PILE)
                await fleet.events.wait_for("model_received", pile=PILE)
                await platform.remote_start(PILE, "01", trade(7), balance_fen=5_000)
                await platform.wait(lambda: platform.of(RemoteStartReply, PILE))
                first = platform.of(RemoteStartReply, PILE)[0]
                assert (first.result, first.fail_reason) == (0, 5)  # not plugged
                assert not pile.gun(1).charging
                pile.plug(1)
                await platform.wait(lambda: len(platform.of(RemoteStartReply, PILE)) == 2)
                second = platform.of(RemoteStartReply, PILE)[1]
                assert (second.result, second.fail_reason, second.trade_no) == (1, 0, trade(7))
                assert pile.gun(1).charging
                # a second start on the busy gun is refused "gun busy"
                await platform.remote_start(PILE, "01", trade(8), balance_fen=5_000)
                await platform.wait(lambda: len(platform.of(RemoteStartReply, PILE)) == 3)
                assert platform.of(RemoteStartReply, PILE)[2].fail_reason == 2

    run(scenario)


def test_the_pile_stops_by_itself_when_the_balance_is_used_up() -> None:
    async def scenario() -> None:
        async with Platform() as platform:
            async with Fleet("127.0.0.1", platform.port, [PileSpec(PILE, plugged=True, max_power_w=120_000)],
                             seed=4, speed=600, start=datetime(2024, 6, 1, 12, 10), config=FAST) as fleet:
                await fleet.events.wait_for("model_received", pile=PILE)
                await platform.remote_start_at(datetime(2024, 6, 1, 12, 10), PILE, "01", trade(2),
                                               balance_fen=500)  # 5.00 yuan at 1.80/kWh
                stopped = await fleet.events.wait_for("charging_stopped", pile=PILE, timeout=30)
                assert stopped["stop_reason"] == 0x6E
                await platform.wait(lambda: platform.records.get(trade(2)))
                record = platform.records[trade(2)][0]
                assert record.stop_reason == 0x6E
                assert 0 < record.amount <= 500 * 100
                assert record.amount > 500 * 100 - 180  # used up to within 0.01 kWh's worth
                assert record.tiers[0].energy == record.energy  # all sharp (12:00-14:00)

    run(scenario)


def test_an_unconfirmed_record_is_retried_and_survives_going_offline() -> None:
    async def scenario() -> None:
        async with Platform() as platform:
            async with Fleet("127.0.0.1", platform.port, [PileSpec(PILE, plugged=True)], seed=5, speed=300,
                             config=FAST) as fleet:
                pile = fleet.pile(PILE)
                await fleet.events.wait_for("model_received", pile=PILE)
                await platform.remote_start(PILE, "01", trade(3), balance_fen=100_000)
                await fleet.events.wait_for("realtime", pile=PILE, trade_no=trade(3), timeout=10)
                # the pile goes offline mid-charge; the platform cannot stop it; it stops locally
                mark = fleet.events.mark()
                await pile.disconnect()
                await fleet.events.wait_for("disconnected", pile=PILE, after=mark)
                # charging goes on offline (wait for the charge itself to advance, not for a fixed real
                # time: at x300 a stall could otherwise let the car fill up and stop by itself)
                session = pile.gun(1).session
                assert session is not None
                offline_energy = session.meter.total_energy
                while pile.gun(1).session is session and session.meter.total_energy <= offline_energy:
                    await asyncio.sleep(0.005)
                pile.press_stop(1)
                assert trade(3) in pile.records and not platform.records.get(trade(3))
                # back online: it logs in and uploads the record before verifying its model
                platform.drop_confirms = 1  # and the first upload goes unanswered
                await pile.reconnect()
                confirmed = await fleet.events.wait_for("record_confirmed", pile=PILE, trade_no=trade(3), timeout=10)
                # the unanswered upload was sent again: twice in all, or more if a stall held the confirm
                # past another record_retry; every copy reaches the platform and a retry is the same record
                assert confirmed["attempts"] >= 2
                await platform.wait(lambda: len(platform.records[trade(3)]) == confirmed["attempts"])
                copies = platform.records[trade(3)]
                assert all(copy == copies[0] for copy in copies)
                assert copies[0].stop_reason == 0x45 and copies[0].energy > 0
                after_login = [type(m).__name__ for p, f, m in platform.received if p == PILE]
                second_login = len(after_login) - after_login[::-1].index("Login") - 1
                assert after_login[second_login + 1] == "TransactionRecord"
                assert not pile.records

    run(scenario)


def test_a_platform_that_drops_the_link_is_reconnected_to_automatically() -> None:
    async def scenario() -> None:
        async with Platform() as platform:
            async with Fleet("127.0.0.1", platform.port, [PileSpec(PILE)], seed=6, config=FAST) as fleet:
                await fleet.events.wait_for("model_received", pile=PILE)
                mark, logins = fleet.events.mark(), platform.logins
                platform.kick(PILE)
                await fleet.events.wait_for("disconnected", pile=PILE, after=mark)
                await fleet.events.wait_for("login_ok", pile=PILE, after=mark)
                assert platform.logins == logins + 1
                # the model is kept across the reconnect: verified, not requested again
                await fleet.events.wait_for("model_verified", pile=PILE, after=mark, matches=True)
                assert len(platform.of(BillingModelRequest, PILE)) == 1

    run(scenario)


def test_a_platform_that_stops_answering_heartbeats_is_dropped_and_logged_into_again() -> None:
    async def scenario() -> None:
        async with Platform() as platform:
            config = PileConfig(heartbeat_interval=0.2, reply_timeout=10.0, reconnect_delay=0.1)
            async with Fleet("127.0.0.1", platform.port, [PileSpec(PILE)], seed=6, config=config) as fleet:
                await fleet.events.wait_for("model_received", pile=PILE)
                mark = fleet.events.mark()
                platform.answer_heartbeats = False
                lost = await fleet.events.wait_for("heartbeat_lost", pile=PILE, after=mark)
                assert lost["missed"] >= 3  # three unanswered heartbeats, as the protocol says
                platform.answer_heartbeats = True
                await fleet.events.wait_for("login_ok", pile=PILE, after=lost.index)
                # it logged in again, once, and the platform saw each login the pile made; counted from
                # the drop, not from the start: a stall of 3 intervals (0.6 s) before the platform went
                # quiet would itself have dropped the link once more
                assert len(fleet.events.find("login_ok", pile=PILE, after=lost.index)) == 1
                assert platform.logins == len(fleet.events.find("login_ok", pile=PILE))

    run(scenario)


def test_card_start_pushed_model_fault_and_quirky_crc() -> None:
    async def scenario() -> None:
        card = bytes.fromhex("00000000D14B0A54")
        async with Platform(lenient_crc=True) as platform:
            platform.card_balance_fen[card] = 20_000
            specs = [PileSpec(PILE, guns=2, crc_order="be", plugged=True)]
            async with Fleet("127.0.0.1", platform.port, specs, seed=8, speed=300, config=FAST) as fleet:
                pile = fleet.pile(PILE)
                await fleet.events.wait_for("model_received", pile=PILE)
                assert platform.connections[PILE].crc_orders == {"be"}
                # a pushed model (0x58) is taken and acknowledged (0x57 result 1)
                new = BillingModelSet(PILE, "0002", (TierRate(100000, 0),) * 4, 0, (2,) * 48)
                platform.connections[PILE].send(new)
                await platform.wait(lambda: platform.of(BillingModelSetAck, PILE))
                assert platform.of(BillingModelSetAck, PILE)[0].result == 1
                assert pile.model_no == "0002" and pile.model.price(2) == 100000
                # a refused card, then an accepted one
                refused = await pile.swipe_card(2, "0000000000000001")
                assert refused.kind == "card_refused" and refused["fail_reason"] == 1
                accepted = await pile.swipe_card(2, card)
                assert accepted.kind == "card_accepted" and accepted["balance_fen"] == 20_000
                await fleet.events.wait_for("realtime", pile=PILE, gun=2, trade_no=accepted["trade_no"], timeout=10)
                # an emergency stop: fault bit in 0x13, the charge ends with reason 0x72
                pile.fault(2, 0)
                await platform.wait(lambda: platform.records.get(accepted["trade_no"]))
                record = platform.records[accepted["trade_no"]][0]
                assert (record.stop_reason, record.trade_type, record.physical_card) == (0x72, 0x02, card)
                assert record.tiers[2].price == 100000 and record.tiers[2].energy == record.energy
                faulted = [m for m in platform.of(RealtimeData, PILE) if m.gun_no == "02"][-1]
                assert (faulted.status, faulted.hw_faults) == (1, 1)
                await platform.wait(lambda: [m for m in platform.of(Heartbeat, PILE) if m.gun_no == "02"
                                             and m.gun_status == 1])
                # a faulted gun refuses a remote start with "device fault"
                await platform.remote_start(PILE, "02", trade(9, "02"), balance_fen=1_000)
                await platform.wait(lambda: platform.of(RemoteStartReply, PILE))
                assert platform.of(RemoteStartReply, PILE)[0].fail_reason == 3
                with pytest.raises(SimulatorError):
                    await pile.swipe_card(3, card)
            assert not platform.errors

    run(scenario)


def test_a_seed_replays_the_same_charge() -> None:
    async def one_run() -> list[tuple[int, int, int]]:
        async with Platform() as platform:
            async with Fleet("127.0.0.1", platform.port, [PileSpec(PILE, plugged=True)], seed=42, speed=1200,
                             start=datetime(2024, 6, 1, 9, 0), config=FAST) as fleet:
                await fleet.events.wait_for("model_received", pile=PILE)
                # the charge (about half an hour) starts at 09:00 sharp, far from the 10:00 tier edge
                await platform.remote_start_at(datetime(2024, 6, 1, 9, 0), PILE, "01", trade(1), balance_fen=3_000)
                await fleet.events.wait_for("record_confirmed", pile=PILE, timeout=30)
                return [(t.energy, t.amount, t.price) for t in platform.records[trade(1)][0].tiers]

    async def both() -> None:
        assert await one_run() == await one_run()

    run(both)


def test_generated_specs_are_seeded() -> None:
    specs = generate_specs(200, guns=2, seed=9, quirky=0.25)
    assert [s.crc_order for s in specs] == [s.crc_order for s in generate_specs(200, guns=2, seed=9, quirky=0.25)]
    assert 20 < sum(s.crc_order == "be" for s in specs) < 80
    assert specs[0].pile_no == "99000000000001" and specs[-1].pile_no == "99000000000200"
    with pytest.raises(ValueError):
        PileSpec("123")


# -- load mode -----------------------------------------------------------------------------------


def test_load_mode_logs_in_many_connections_and_measures_heartbeat_latency() -> None:
    async def scenario() -> None:
        async with Platform() as platform:
            config = LoadConfig(connections=200, guns=1, heartbeat_interval=0.2, realtime_interval=0.5,
                                duration=2.0, connect_rate=2000.0, seed=3)
            load = LoadFleet("127.0.0.1", platform.port, config)
            report = await load.run()
            assert report.logged_in == 200 and report.login_failed == 0
            assert report.login.count == 200
            assert report.heartbeats_sent >= 200 * 5 and report.realtime_sent >= 200 * 2
            # every heartbeat sent is matched to its 0x04 by sequence number, or still pending when the
            # run closed its connections (how many depends on the machine: after a stall the scheduler
            # catches up in a burst the close can cut off); most are answered
            assert report.heartbeat.count + report.unanswered == report.heartbeats_sent
            assert report.heartbeat.count > report.unanswered
            # latency is per frame, write -> reply: typically well under a millisecond here; the median
            # shrugs off a stall, the tail only has to be bounded (bench/ measures speed)
            assert 0 < report.heartbeat.percentile(50) < 0.5
            assert report.heartbeat.percentile(50) <= report.heartbeat.percentile(99) < 5.0
            assert len(platform.of(Login)) == 200
            # every frame counted as sent arrives (the last ones may still be in flight at the close)
            await platform.wait(lambda: len(platform.of(RealtimeData)) == report.realtime_sent
                                and len(platform.of(Heartbeat)) == report.heartbeats_sent)

    run(scenario)


def test_drivers_arrive_plug_in_swipe_cards_and_leave() -> None:
    async def scenario() -> None:
        card = bytes.fromhex("00000000D14B0A54")
        async with Platform() as platform:
            platform.card_balance_fen[card] = 150  # 1.50 yuan: a short charge
            async with Fleet("127.0.0.1", platform.port, [PileSpec(PILE, guns=2)], seed=10, speed=600,
                             start=datetime(2024, 6, 1, 9, 0), config=FAST) as fleet:
                drivers = Drivers(fleet, DriverConfig(mean_arrival=60, patience=60, cards=(card,), card_share=1.0))
                drivers.start()
                for gun in (1, 2):
                    confirmed = await fleet.events.wait_for("record_confirmed", pile=PILE, gun=gun, timeout=30)
                    record = platform.records[confirmed["trade_no"]][0]
                    assert (record.trade_type, record.physical_card, record.stop_reason) == (0x02, card, 0x6E)
                await fleet.events.wait_for("unplugged", pile=PILE, timeout=30)
                await drivers.stop()
            assert not platform.errors

    run(scenario)


def test_the_cli_prints_a_readable_log_and_succeeds_when_every_record_is_confirmed() -> None:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    platform = Platform()
    asyncio.run_coroutine_threadsafe(platform.__aenter__(), loop).result(5)
    pile_no = "99000000000002"
    # --duration is real seconds in which both piles log in and pile 2 charges until its 2 yuan are
    # used up and its record is confirmed (well under a second here): 10 s leaves room for a slow
    # machine. --heartbeat 2: a pile drops the link after three unanswered intervals, 6 s, so a stalled
    # loop does not cause a third login, while a pile ignoring the answers would still do so within 10 s.

    async def start_when_logged_in() -> None:
        await platform.wait(lambda: pile_no in platform.connections and platform.of(BillingModelRequest, pile_no))
        await platform.remote_start(pile_no, "02", trade(5, "02", pile_no), balance_fen=200)

    starter = asyncio.run_coroutine_threadsafe(start_when_logged_in(), loop)
    try:
        parser = argparse.ArgumentParser()
        cli.add_arguments(parser)
        args = parser.parse_args(["--port", str(platform.port), "--piles", "2", "--guns", "2", "--seed", "3",
                                  "--speed", "600", "--plugged", "--duration", "10", "--quirky", "0",
                                  "--heartbeat", "2", "--progress", "1", "--start", "2024-06-01T10:00"])
        out = io.StringIO()
        assert cli.run(args, out) == 0
        starter.result(1)
    finally:
        asyncio.run_coroutine_threadsafe(platform.__aexit__(None, None, None), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
    text = out.getvalue()
    lines = text.splitlines()
    assert lines[0].startswith("simulating 2 piles x 2 guns") and "seed 3, speed x600" in lines[0]
    assert sum("logged in (V1.6, 2 guns, CRC low byte first)" in line for line in lines) == 2
    assert "99000000000002-02  remote start" in text
    assert "billing model 0001 via 0x0A: sharp 1.8000, peak 1.5000, flat 1.1000, valley 0.5000 yuan/kWh" in text
    assert " kW " in text and "SOC" in text
    assert "stopped (balance used up)" in text
    assert f"record {trade(5, '02', pile_no)} confirmed" in text
    assert lines[-1].startswith("summary: login ok 2, login failed 0, charging started 1")
    assert "records unconfirmed 0" in lines[-1]


def test_the_cli_reports_a_failure_when_the_platform_refuses_the_login() -> None:
    async def scenario() -> tuple[int, str]:
        async with Platform(refuse={"99000000000001"}) as platform:
            parser = argparse.ArgumentParser()
            cli.add_arguments(parser)
            args = parser.parse_args(["--port", str(platform.port), "--duration", "3"])
            out = io.StringIO()
            rc = await cli._simulate(args, out)
            return rc, out.getvalue()

    rc, text = run(scenario)
    assert rc == 1
    assert "LOGIN REFUSED (result 1): pile stopped" in text
