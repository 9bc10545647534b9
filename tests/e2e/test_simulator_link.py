"""The pile simulator's link against the platform (tests/e2e/simulator_platform.py), over real TCP: login,
billing model, heartbeats and time sync; a refused login; a dropped link and lost heartbeats reconnected."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest

from pile_link.simulator import Fleet, PileConfig, PileSpec, SimulatorError
from pile_link.ykc import BillingModelRequest, Heartbeat, Login, ReadRealtime, RealtimeData, TimeSync, TimeSyncAck
from tests.e2e.simulator_platform import FAST, PILE, SLOTS, Platform, run


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
