"""Issue 11, findings 1 and 6: what a pile is owed reaches it when it is next online, and a pile that
drops while charging gets an offline deadline.

Over real TCP, Postgres and NATS with scripted piles, as the gateway's tests (``tests/e2e/gateway_harness.py``).
The scripted pile answers the gateway's 0x12 (read realtime) only when a test says so: a pile that logs in is sent its
stops and starts once the gun concerned has reported (or ``owed_wait`` passed).
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

from adapters.cli.relay import running_relay
from domain.ledger import Ledger
from domain.pricing import price
from domain.session import OFFLINE_TIMEOUT, RECORD_TIMEOUT, ChargingSession
from pile_link.gateway import Gateway
from pile_link.link import GunReport
from pile_link.owed import owed_for_session
from pile_link.ykc import (
    BillingModelReply,
    BillingModelRequest,
    BillingModelSet,
    BillingModelSetAck,
    Heartbeat,
    HeartbeatAck,
    ReadRealtime,
    RemoteStart,
    RemoteStartReply,
    RemoteStop,
    RemoteStopReply,
    TransactionConfirm,
)
from tests.factories import PRICES, SLOTS, build_world
from tests.e2e.gateway_harness import (
    CHARGING,
    IDLE,
    PRICE_PER_TIER,
    Clock,
    _events,
    local,
    run,
    started,
    until,
)
from tests.ykc_pile import ScriptedPile

OWED_WAIT = 2.0  # seconds a login waits for the guns' reports here (5 s by default)


def fresh(ledger: Ledger, trade_no: str) -> ChargingSession:
    """The session as stored (the gateway's threads write it while the test reads)."""
    return ledger.sessions.get(ChargingSession.create_id(trade_no), ChargingSession, "session", fresh=True)


def session_events(ledger: Ledger, trade_no: str) -> list[str]:
    session_id = ChargingSession.create_id(trade_no)
    return [type(e).__name__ for e in _events(ledger.sessions) if e.originator_id == session_id]


async def charging(gateway: Gateway, clock: Clock, world: Any, readings: int = 3,
                   per_reading: int = 2390) -> tuple[ScriptedPile, str]:
    """A pile charging a session started from the app, with ``readings`` readings written."""
    pile, start = await started(gateway, clock, world)
    for i in range(1, readings + 1):
        clock.now += timedelta(minutes=1)
        pile.send(pile.realtime(1, status=CHARGING, trade_no=start.trade_no, energy=i * per_reading))
    await until(lambda: fresh(gateway.ledger, start.trade_no).readings == readings)
    return pile, start.trade_no


async def gone(gateway: Gateway, pile: ScriptedPile) -> None:
    """The pile's link drops; the gateway records it offline (and its sessions' offline deadline)."""
    await pile.close()
    await until(lambda: not gateway.ledger.registry.pile(pile.pile_no).online)
    await gateway.offline_sessions.flush()


async def owed_delivered(gateway: Gateway, pile_no: str) -> None:
    """What the pile was owed at its login has been delivered (or found not owed)."""
    await until(lambda: pile_no in gateway.links and gateway.links[pile_no].owed_rounds > 0)


async def report(pile: ScriptedPile, gun_no: int, **realtime: Any) -> None:
    """Answer the gateway's 0x12 for this gun with a realtime frame."""
    while (await pile.expect(ReadRealtime)).gun_no != f"{gun_no:02d}":
        pass
    pile.send(pile.realtime(gun_no, **realtime))


async def settle_at_stop(pile: ScriptedPile, clock: Clock, trade_no: str, energy: int) -> None:
    """The pile stops (0x35) and uploads its record of ``energy`` in the current tier; 0x40 comes back."""
    pile.send(RemoteStopReply(pile.pile_no, "01", 1, 0))
    now = local(clock)
    tiers = [0, 0, 0, 0]
    tiers[SLOTS[(now.hour * 60 + now.minute) // 30]] = energy
    record = pile.record(trade_no, 1, tuple(tiers), PRICE_PER_TIER, now - timedelta(minutes=5), now)  # type: ignore[arg-type]
    pile.send(record)
    confirm = await pile.expect(TransactionConfirm)
    assert (confirm.trade_no, confirm.result) == (trade_no, 0)


def model_confirmed(ledger: Ledger, world: Any, clock: Clock) -> None:
    """The pile holds the tariff in force: no tariff push is owed (a login then waits only for the
    guns of sessions owed something)."""
    tariff = ledger.tariff_for(ledger.registry.pile(world.pile_no))
    ledger.confirm_billing_model(world.pile_no, tariff.id, tariff.tariff_version, clock())


async def back_after_a_lost_start_reply(gateway: Gateway, clock: Clock, world: Any) -> tuple[ScriptedPile, Any]:
    """A pile took a start (0x34) and its link dropped before its 0x33 reached the gateway; it logs
    in again. The session is still ``requested``."""
    pile, start = await started(gateway, clock, world, acknowledged=False)
    await gone(gateway, pile)
    assert fresh(gateway.ledger, start.trade_no).state == "requested"
    again = ScriptedPile(world.pile_no)
    await again.login(gateway.port)
    return again, start


# ---- finding 1: stops ----------------------------------------------------------------------------------
def test_a_stop_asked_for_while_the_pile_was_offline_reaches_it_when_it_logs_in_again(
        ledger: Ledger, database_url: str, nats_url: str) -> None:
    """The issue's measured case: a stop the gateway could not send (the pile's link was down) was
    never sent; the pile charged on and the driver paid for 54 kWh instead of 7. Now the pile gets the
    0x36 as soon as it is back, and the session is billed from what the pile measured to the stop."""
    world = build_world(ledger, top_up=200_00)

    async def scenario(gateway: Gateway, clock: Clock) -> None:
        await gateway.run(model_confirmed, ledger, world, clock)  # the wait ends when gun 1 reports
        pile, trade_no = await charging(gateway, clock, world, readings=3, per_reading=23_900)  # 7.17 kWh
        await gone(gateway, pile)
        events = gateway.stats["command_events"]
        await gateway.run(ledger.request_stop, trade_no, "driver-1", "driver", clock())
        assert fresh(ledger, trade_no).state == "stopping"
        await until(lambda: gateway.stats["command_events"] > events)  # NATS brought it: no pile to send it to

        again = ScriptedPile(world.pile_no)
        await again.login(gateway.port)
        await report(again, 1, status=CHARGING, trade_no=trade_no, energy=71_700)  # still charging it
        await again.expect(RemoteStop)
        assert gateway.stats["owed_sent"] == 1
        await until(lambda: fresh(ledger, trade_no).offline_since is None)  # back: the record is due from now
        assert fresh(ledger, trade_no).deadline == clock() + RECORD_TIMEOUT
        await settle_at_stop(again, clock, trade_no, 71_700)
        session = fresh(ledger, trade_no)
        bill = price(tuple(session.record["tier_energy"]), session.schedule)  # type: ignore[index]
        assert session.state == "finished" and bill.energy == 71_700 and session.bill == bill.as_dict()
        assert ledger.wallet(world.wallet_id).available == 200_00 - bill.total_fen
        assert "PileOffline" in session_events(ledger, trade_no)

    run(ledger, database_url, nats_url, scenario, owed_wait=10 * OWED_WAIT)


def test_a_stop_asked_for_while_the_gateway_restarts_reaches_the_pile(ledger: Ledger, database_url: str,
                                                                     nats_url: str) -> None:
    """The gateway process restarts; a stop asked for meanwhile is published while no gateway follows
    NATS. The pile logs in to the new gateway and gets its 0x36 (from what the store says it is owed)."""
    world = build_world(ledger, top_up=100_00)
    clock = Clock()

    async def main() -> None:
        first = Gateway(ledger, database_url=database_url, nats_url=nats_url, clock=clock, sweep_interval=3600)
        await first.start()
        try:
            pile, trade_no = await charging(first, clock, world)
        finally:
            await first.stop()  # the pile's connection goes with it
        await asyncio.to_thread(ledger.request_stop, trade_no, "driver-1", "driver", clock())
        second = Gateway(ledger, database_url=database_url, nats_url=nats_url, clock=clock, sweep_interval=3600,
                         owed_wait=OWED_WAIT)
        await second.start()
        try:
            again = ScriptedPile(world.pile_no)
            await again.login(second.port)
            await again.expect(RemoteStop, timeout=OWED_WAIT + 10)  # the gun does not report: sent after the wait
            await settle_at_stop(again, clock, trade_no, 7170)
            assert fresh(ledger, trade_no).state == "finished"
            assert ledger.wallet(world.wallet_id).held == 0
        finally:
            await second.stop()

    with running_relay(ledger, database_url, nats_url):
        asyncio.run(asyncio.wait_for(main(), 60))


def test_a_gun_charging_another_session_is_sent_neither_the_stop_nor_the_start() -> None:
    """0x36 names no session: sent to a gun that charges another one, it would stop that one."""
    from tests.unit.test_offline_deadline import T0, charging_session

    session = charging_session()
    session.request_stop(T0 + timedelta(minutes=6), "driver", "driver-1")
    other = GunReport("charging", "9" * 32)
    assert owed_for_session(session, T0, report=other) == []
    assert [type(f).__name__ for f in owed_for_session(session, T0, report=GunReport("charging", session.trade_no))
            ] == ["RemoteStop"]
    assert [type(f).__name__ for f in owed_for_session(session, T0, report=GunReport("idle", "0" * 32))] == [
        "RemoteStop"]  # harmless: an idle pile answers 0x35 "not charging"


# ---- finding 1: starts --------------------------------------------------------------------------------
def test_a_start_asked_for_while_the_pile_was_away_is_sent_when_it_logs_in_with_the_commissioning_balance(
        ledger: Ledger, database_url: str, nats_url: str) -> None:
    """A commissioning start (no wallet, nothing held) is told a balance a pile will start on: the
    gateway's ``commissioning_balance_fen`` (``COMMISSIONING_BALANCE_FEN`` unless configured)."""
    world = build_world(ledger)

    async def scenario(gateway: Gateway, clock: Clock) -> None:
        trade_no = await gateway.run(ledger.request_start, pile_no=world.pile_no, gun_no=2, wallet_id=None,
                                     hold_fen=0, at=clock(), author="ops@test", origin="commissioning")
        await until(lambda: gateway.stats["command_events"] == 1)  # NATS brought it: no pile to send it to
        pile = ScriptedPile(world.pile_no)
        await pile.login(gateway.port)
        await report(pile, 2, status=IDLE)
        start = await pile.expect(RemoteStart)
        assert (start.trade_no, start.gun_no, start.balance_fen) == (trade_no, "02", 80_00)  # as configured
        pile.send(RemoteStartReply(trade_no, world.pile_no, "02", 1, 0))
        await until(lambda: fresh(ledger, trade_no).state == "starting")
        assert fresh(ledger, trade_no).hold_fen == 0

    run(ledger, database_url, nats_url, scenario, owed_wait=OWED_WAIT, commissioning_balance_fen=80_00)


def test_a_start_whose_answer_was_lost_is_not_sent_again_to_a_pile_that_reports_it_charging(
        ledger: Ledger, database_url: str, nats_url: str) -> None:
    world = build_world(ledger, top_up=100_00)

    async def scenario(gateway: Gateway, clock: Clock) -> None:
        await gateway.run(model_confirmed, ledger, world, clock)  # the wait ends when gun 1 reports
        again, start = await back_after_a_lost_start_reply(gateway, clock, world)
        await report(again, 1, status=CHARGING, trade_no=start.trade_no, energy=500)
        await owed_delivered(gateway, world.pile_no)
        assert fresh(ledger, start.trade_no).state == "charging"
        assert not [m for _, m in again.received if isinstance(m, RemoteStart)]

    run(ledger, database_url, nats_url, scenario, owed_wait=10 * OWED_WAIT)


def test_a_start_sent_again_and_answered_gun_busy_does_not_fail_the_session_the_pile_is_charging(
        ledger: Ledger, database_url: str, nats_url: str) -> None:
    """A pile that does not answer 0x12 gets the start again after the wait; it is charging that
    session already and answers "gun busy": taken as no answer, not a refusal. A re-sent start
    answered busy by a pile that is not charging it fails only at its deadline."""
    world = build_world(ledger, top_up=100_00)

    async def scenario(gateway: Gateway, clock: Clock) -> None:
        again, start = await back_after_a_lost_start_reply(gateway, clock, world)
        resent = await again.expect(RemoteStart, timeout=OWED_WAIT + 10)
        assert (resent.trade_no, resent.balance_fen) == (start.trade_no, 50_00)
        again.send(RemoteStartReply(start.trade_no, world.pile_no, "01", 0, 2))  # "gun busy": with this very session
        again.send(Heartbeat(world.pile_no, "01", 0))
        await again.expect(HeartbeatAck)  # the 0x33 before it was handled
        assert fresh(ledger, start.trade_no).state == "requested"
        assert ledger.wallet(world.wallet_id).held == 50_00
        again.send(again.realtime(1, status=CHARGING, trade_no=start.trade_no, energy=800))
        await until(lambda: fresh(ledger, start.trade_no).state == "charging")
        assert gateway.stats["repeated_start_busy"] == 1

        # the same answer to a start that was sent once only is a refusal, as before
        second = await gateway.run(ledger.request_start, pile_no=world.pile_no, gun_no=2, wallet_id=world.wallet_id,
                                   hold_fen=10_00, at=clock(), author="driver-1")
        assert (await again.expect(RemoteStart)).trade_no == second
        again.send(RemoteStartReply(second, world.pile_no, "02", 0, 2))
        await until(lambda: fresh(ledger, second).state == "failed")

    run(ledger, database_url, nats_url, scenario, owed_wait=OWED_WAIT)


def test_a_start_sent_again_that_the_pile_never_takes_fails_at_its_deadline_and_releases_the_hold(
        ledger: Ledger, database_url: str, nats_url: str) -> None:
    world = build_world(ledger, top_up=100_00)

    async def scenario(gateway: Gateway, clock: Clock) -> None:
        again, start = await back_after_a_lost_start_reply(gateway, clock, world)
        await again.expect(RemoteStart, timeout=OWED_WAIT + 10)
        again.send(RemoteStartReply(start.trade_no, world.pile_no, "01", 0, 2))  # busy with something else
        clock.now += timedelta(seconds=91)
        await gateway.sweep()
        assert fresh(ledger, start.trade_no).state == "failed"
        assert ledger.wallet(world.wallet_id).held == 0

    run(ledger, database_url, nats_url, scenario, owed_wait=OWED_WAIT)


# ---- finding 1: tariffs --------------------------------------------------------------------------------
def test_a_tariff_revised_while_the_pile_was_away_is_pushed_when_it_logs_in_idle(
        ledger: Ledger, database_url: str, nats_url: str) -> None:
    world = build_world(ledger)

    async def scenario(gateway: Gateway, clock: Clock) -> None:
        pile = ScriptedPile(world.pile_no)
        await pile.login(gateway.port)
        pile.send(BillingModelRequest(world.pile_no))
        await pile.expect(BillingModelReply)
        await until(lambda: ledger.registry.pile(world.pile_no).billing_model is not None)
        await gone(gateway, pile)
        cheaper = {t: {"electricity": p["electricity"] - 1000, "service": p["service"]} for t, p in PRICES.items()}
        await gateway.run(ledger.revise_tariff, world.tariff_id, cheaper, SLOTS, "admin")
        again = ScriptedPile(world.pile_no)
        await again.login(gateway.port)
        await report(again, 1, status=IDLE)
        await report(again, 2, status=IDLE)
        pushed = await again.expect(BillingModelSet)
        assert pushed.model_no == "0002"
        again.send(BillingModelSetAck(world.pile_no, 1))
        await until(lambda: ledger.registry.pile(world.pile_no).billing_model == {
            "tariff_id": str(world.tariff_id), "version": 2})

    run(ledger, database_url, nats_url, scenario, owed_wait=OWED_WAIT)


# ---- finding 6: the offline deadline, end to end ----------------------------------------------------------
def test_a_pile_that_drops_while_charging_and_never_returns_is_abandoned_at_its_offline_deadline(
        ledger: Ledger, database_url: str, nats_url: str) -> None:
    world = build_world(ledger, top_up=100_00)

    async def scenario(gateway: Gateway, clock: Clock) -> str:
        pile, trade_no = await charging(gateway, clock, world, readings=3, per_reading=5000)
        offline_at = clock()
        await gone(gateway, pile)
        # the session's offline mark follows the pile's own (written behind, after the pile's disconnect)
        await until(lambda: fresh(ledger, trade_no).offline_since is not None)
        session = fresh(ledger, trade_no)
        assert (session.state, session.offline_since, session.deadline) == (
            "charging", offline_at, offline_at + OFFLINE_TIMEOUT)
        clock.now = offline_at + OFFLINE_TIMEOUT - timedelta(seconds=1)
        await gateway.sweep()
        assert fresh(ledger, trade_no).state == "charging"
        clock.now = offline_at + OFFLINE_TIMEOUT
        await gateway.sweep()
        session = fresh(ledger, trade_no)
        assert session.state == "abandoned" and session.bill == session.measured_bill().as_dict()
        assert session.bill["energy"] == 15_000  # type: ignore[index]
        wallet = ledger.wallet(world.wallet_id)
        assert (wallet.held, wallet.available) == (0, 100_00 - session.bill["total_fen"])  # type: ignore[index]

        # the pile returns much later with its record: re-priced, the difference charged
        again = ScriptedPile(world.pile_no)
        await again.login(gateway.port)
        now = local(clock)
        tiers = list(fresh(ledger, trade_no).tier_energy)
        tiers[tiers.index(max(tiers))] += 5000
        again.send(again.record(trade_no, 1, tuple(tiers), PRICE_PER_TIER, now, now))  # type: ignore[arg-type]
        assert (await again.expect(TransactionConfirm)).result == 0
        session = fresh(ledger, trade_no)
        assert session.state == "finished" and session.bill["energy"] == 20_000  # type: ignore[index]
        await until(lambda: ledger.wallet(world.wallet_id).available == 100_00 - session.bill["total_fen"])
        return trade_no

    trade_no = run(ledger, database_url, nats_url, scenario, owed_wait=OWED_WAIT)
    assert session_events(ledger, trade_no)[-3:] == ["PileOffline", "Abandoned", "Resettled"]
    from adapters.audit.replay import replay

    report = replay(database_url)  # the auditor's replay, with the domain code alone, agrees
    assert report.ok, report.as_text()


def test_a_pile_that_comes_back_and_reports_the_session_lifts_its_offline_deadline(
        ledger: Ledger, database_url: str, nats_url: str) -> None:
    world = build_world(ledger, top_up=100_00)

    async def scenario(gateway: Gateway, clock: Clock) -> None:
        pile, trade_no = await charging(gateway, clock, world)
        await gone(gateway, pile)
        assert fresh(ledger, trade_no).deadline is not None
        clock.now += timedelta(minutes=10)
        again = ScriptedPile(world.pile_no)
        await again.login(gateway.port)
        again.send(again.realtime(1, status=CHARGING, trade_no=trade_no, energy=9000))
        await until(lambda: fresh(ledger, trade_no).deadline is None)
        clock.now += OFFLINE_TIMEOUT * 3
        await gateway.sweep()
        assert fresh(ledger, trade_no).state == "charging"

    run(ledger, database_url, nats_url, scenario, owed_wait=OWED_WAIT)


def test_a_gateway_run_without_its_watchdog_leaves_deadlines_to_the_watchdog_role(
        ledger: Ledger, database_url: str, nats_url: str) -> None:
    world = build_world(ledger, top_up=100_00)

    async def scenario(gateway: Gateway, clock: Clock) -> None:
        pile, start = await started(gateway, clock, world, acknowledged=False)
        clock.now += timedelta(minutes=5)
        await gateway.sweep()
        assert fresh(ledger, start.trade_no).state == "requested"  # nobody here expires it
        assert gateway.watchdog is None

    run(ledger, database_url, nats_url, scenario, watchdog=False)
    deadline = time.monotonic() + 10
    from adapters.followers.watchdog import Watchdog

    closed = Watchdog(ledger, database_url).sweep(Clock()() + timedelta(minutes=5))
    assert len(closed) == 1 and time.monotonic() < deadline
