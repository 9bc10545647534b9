"""The YKC gateway end to end: real TCP, real Postgres, real NATS (through the relay), a scripted pile.

What the platform tells a pile: a revised tariff pushed (0x58) and a reboot (0x92) reaching it, and the
billing model a pile verifies (0x05) told apart from another tariff's at the same version."""

from __future__ import annotations

from domain.ledger import Ledger
from domain.session import ChargingSession
from pile_link.gateway import Gateway
from pile_link.ykc import (
    BillingModelReply,
    BillingModelRequest,
    BillingModelSet,
    BillingModelSetAck,
    BillingModelVerify,
    BillingModelVerifyAck,
    Reboot,
    RebootAck,
)
from tests.factories import PRICES, SLOTS, build_world
from tests.ykc_pile import ScriptedPile
from tests.e2e.gateway_harness import Clock, _events, run, until


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


def test_a_gateway_reads_nothing_for_a_session_or_a_command_of_a_pile_it_does_not_hold(
        ledger: Ledger, database_url: str, nats_url: str) -> None:
    """With several gateways each follows every command: only the one holding the pile reads the session.
    A pile held elsewhere: its session's Opened is read once (to learn its pile, from the store), its stop
    and its pile's commands not at all; a pile held here still gets its start and its stop."""
    from tests.e2e.boundary_harness import two_tenants
    from tests.e2e.gateway_harness import started
    from pile_link.ykc import RemoteStop

    a, b = two_tenants(ledger)  # a's pile logs in here, b's is held by no one here

    async def scenario(gateway: Gateway, clock: Clock) -> None:
        read: list[tuple[str, object]] = []
        stored_event, fresh_session = gateway.stored_event, gateway.fresh_session
        gateway.stored_event = lambda app, oid, version, qualname: (  # type: ignore[method-assign]
            read.append((qualname, oid)), stored_event(app, oid, version, qualname))[1]
        gateway.fresh_session = lambda sid: (read.append(("session", sid)), fresh_session(sid))[1]  # type: ignore[method-assign]
        pile, start = await started(gateway, clock, a)
        elsewhere = await gateway.run(ledger.request_start, pile_no=b.pile_no, gun_no=1, wallet_id=b.wallet_id,
                                      hold_fen=10_00, at=clock(), author="driver-2")
        await until(lambda: gateway.stats["commands_elsewhere"] == 1)  # its Opened: read, not for here
        await gateway.run(ledger.acknowledge_start, elsewhere, at=clock(), ok=True)  # as its gateway would
        await gateway.run(ledger.mark_charging, elsewhere, at=clock())
        await gateway.run(ledger.request_stop, elsewhere, "driver-2", "driver", clock())
        await gateway.run(ledger.reboot_pile, b.pile_no, author="ops", at=clock())
        await until(lambda: gateway.stats["commands_elsewhere"] == 3)  # the stop and the reboot: nothing read
        b_session = ChargingSession.create_id(elsewhere)
        assert [what for what, oid in read if oid == b_session] == ["ChargingSession.Opened"]
        assert not [oid for _, oid in read if oid == ledger.registry.pile(b.pile_no).id]
        await gateway.run(ledger.request_stop, start.trade_no, "driver-1", "driver", clock())
        assert (await pile.expect(RemoteStop)).pile_no == a.pile_no  # the held pile's stop still goes

    run(ledger, database_url, nats_url, scenario)
