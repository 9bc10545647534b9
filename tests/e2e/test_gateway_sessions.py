"""The YKC gateway end to end: real TCP, real Postgres, real NATS (through the relay), a scripted pile.

Sessions: a start from the app or a card at the pile, charging, stopping (by the driver or by the platform
before the hold is spent), the record settled once and confirmed; starts that fail or are never answered."""

from __future__ import annotations

from datetime import timedelta

from domain.ledger import Ledger
from domain.pricing import price
from pile_link.gateway import Gateway
from pile_link.ykc import (
    BillingModelReply,
    BillingModelRequest,
    BillingModelVerify,
    BillingModelVerifyAck,
    RemoteStartReply,
    RemoteStop,
    RemoteStopReply,
    StartAuthReply,
    StartRequest,
    TimeSync,
    TransactionConfirm,
)
from tests.factories import PRICES, SLOTS, build_world
from tests.ykc_pile import ScriptedPile
from tests.e2e.gateway_harness import (
    CHARGING,
    PRICE_PER_TIER,
    Clock,
    _events,
    local,
    run,
    start_from_app,
    started,
    until,
)


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
