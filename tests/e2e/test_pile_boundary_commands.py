"""The pile link's boundary (issue 10, findings 5-6): the gateway sends a pile nothing the ledger does not
say it is owed: an operator's commissioning start reaches the pile; forged commands on NATS reach none.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import nats

from domain.ledger import Ledger
from domain.session import ChargingSession
from pile_link.gateway import Gateway
from pile_link.owed import COMMISSIONING_BALANCE_FEN
from pile_link.ykc import Reboot, RemoteStart, RemoteStartReply, WorkParams
from tests.factories import build_world
from tests.e2e.gateway_harness import CHARGING, Clock, run, started
from tests.ykc_pile import ScriptedPile
from tests.e2e.boundary_harness import handled, two_tenants


# ---- finding 5: operator starts reach the pile ------------------------------------------------------------
def test_a_commissioning_start_reaches_the_pile(ledger: Ledger, database_url: str, nats_url: str) -> None:
    a = build_world(ledger)

    async def scenario(gateway: Gateway, clock: Clock) -> None:
        p = ScriptedPile(a.pile_no)
        await p.login(gateway.port)
        # what POST /operator/v1/piles/{no}/start calls
        trade_no = await gateway.run(ledger.request_start, pile_no=a.pile_no, gun_no=2, wallet_id=None, hold_fen=0,
                                     at=clock(), author="ops@test", origin="commissioning", tenant_id=a.tenant_id)
        start = await p.expect(RemoteStart)
        # no wallet, nothing held: the pile is told the gateway's commissioning balance (issue 11, finding 1)
        assert (start.trade_no, start.pile_no, start.gun_no, start.balance_fen) == (
            trade_no, a.pile_no, "02", COMMISSIONING_BALANCE_FEN)
        assert ledger.session(trade_no).hold_fen == 0
        p.send(RemoteStartReply(trade_no, a.pile_no, "02", 1, 0))
        p.send(p.realtime(2, status=CHARGING, trade_no=trade_no, energy=500))
        await handled(p, gateway)
        assert ledger.session(trade_no).state == "charging"

    run(ledger, database_url, nats_url, scenario)


# ---- finding 6: the gateway acts on no NATS message without the store ------------------------------------
def forged(ledger: Ledger, event: Any, application: Any, subject: str, version: int | None = None
           ) -> tuple[str, bytes, dict[str, str]]:
    stored = application.mapper.to_stored_event(event)
    headers = {"Nats-Msg-Id": f"forged:{uuid.uuid4()}", "Chargeledger-Application": application.name,
               "Chargeledger-Notification-Id": "999999", "Chargeledger-Originator-Id": str(stored.originator_id),
               "Chargeledger-Originator-Version": str(version or stored.originator_version),
               "Chargeledger-Topic": stored.topic}
    return f"chargeledger.{subject}", stored.state, headers


def test_forged_commands_on_nats_send_nothing_to_any_pile(ledger: Ledger, database_url: str, nats_url: str) -> None:
    a, b = two_tenants(ledger)

    async def scenario(gateway: Gateway, clock: Clock) -> None:
        p, start = await started(gateway, clock, a)  # a genuine start, acknowledged: "starting"
        q = ScriptedPile(b.pile_no)
        await q.login(gateway.port)
        # a session that does not exist: opened in memory, never saved
        pile, station = ledger.registry.pile(a.pile_no), ledger.registry.station(a.station_id)
        ghost = Ledger._new_session(a.pile_no + "01" + "261122093000" + "0042", pile, station,
                                    ledger.tariff_for(pile), 1, a.wallet_id, 999_99, "app", clock(), "mallory")
        ghost_opened = ghost.collect_events()[0]
        # the genuine session's Opened, altered: another hold, and pile Q
        genuine = ledger.sessions.recorder.select_events(ChargingSession.create_id(start.trade_no), lte=1)[0]
        opened = ledger.sessions.mapper.to_domain_event(genuine)
        altered = dataclasses.replace(opened, hold_fen=999_99)
        moved = dataclasses.replace(opened, pile_no=b.pile_no)
        # a pile command the store does not hold at that version (version 1 is the pile's Registered)
        copy = ledger.registry.pile(a.pile_no)
        copy.request_command("set_parameters", {"disabled": True}, clock(), "mallory")
        command = copy.collect_events()[0]
        messages = [forged(ledger, ghost_opened, ledger.sessions, "Sessions.ChargingSession.Opened"),
                    forged(ledger, altered, ledger.sessions, "Sessions.ChargingSession.Opened"),
                    forged(ledger, moved, ledger.sessions, "Sessions.ChargingSession.Opened"),
                    forged(ledger, command, ledger.registry, "Registry.Pile.CommandRequested", version=1),
                    forged(ledger, command, ledger.registry, "Registry.Pile.CommandRequested")]
        nc = await nats.connect(nats_url)
        try:
            js = nc.jetstream()
            for subject, body, headers in messages:
                await js.publish(subject, body, headers=headers)
        finally:
            await nc.close()
        # then genuine commands on the same subjects: they arrive after the forged ones
        second = await gateway.run(ledger.request_start, pile_no=b.pile_no, gun_no=1, wallet_id=b.wallet_id,
                                   hold_fen=10_00, at=clock(), author="driver-2")
        await gateway.run(ledger.reboot_pile, a.pile_no, author="ops", at=clock())
        assert (await q.expect(RemoteStart)).trade_no == second
        await p.expect(Reboot)
        assert not [m for _, m in p.received + q.received if isinstance(m, (RemoteStart, WorkParams, Reboot))]
        assert gateway.stats["commands_unverified"] == 3  # the ghost, and the two commands the store does not hold

    run(ledger, database_url, nats_url, scenario)
