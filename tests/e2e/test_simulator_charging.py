"""The pile simulator charging against the platform (tests/e2e/simulator_platform.py), over real TCP:
remote and card starts, tiered records, records retried across going offline, faults, quirky CRCs, seeds."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from pile_link.simulator import Fleet, PileSpec, SimulatorError
from pile_link.ykc import (
    BillingModelSet,
    BillingModelSetAck,
    Heartbeat,
    RealtimeData,
    RemoteStartReply,
    RemoteStop,
    RemoteStopReply,
    TierRate,
)
from tests.e2e.simulator_platform import FAST, PILE, Platform, run, trade


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
