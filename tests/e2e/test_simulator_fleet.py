"""Whole simulated fleets against the platform (tests/e2e/simulator_platform.py): load mode, simulated
drivers, and the ``chargeledger simulate`` command line."""

from __future__ import annotations

import argparse
import asyncio
import io
import threading
from datetime import datetime

from pile_link.simulator import Fleet, PileSpec
from pile_link.simulator import cli
from pile_link.simulator.drivers import DriverConfig, Drivers
from pile_link.simulator.load import LoadConfig, LoadFleet
from pile_link.ykc import BillingModelRequest, Heartbeat, Login, RealtimeData
from tests.e2e.simulator_platform import FAST, PILE, Platform, run, trade


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
