"""The pile link's boundary (issue 10, findings 1-3): a pile settles, reads, starts and faults only its own
sessions on its own guns, and its offline records are bound to its number, its guns and its serial prefix.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from domain.errors import WrongPile
from domain.ledger import Ledger, PileGun
from domain.session import ChargingSession
from pile_link.gateway import Gateway
from pile_link.ykc import BmsAbort, RemoteStartReply, TransactionConfirm
from tests.factories import record
from tests.e2e.gateway_harness import CHARGING, PRICE_PER_TIER, Clock, local, run, start_from_app, until
from tests.ykc_pile import ScriptedPile
from tests.e2e.boundary_harness import (
    ONE_GUN_PILE,
    T0,
    alarm_rows,
    handled,
    p_and_a_start_on_q,
    refused_events,
    two_tenants,
)


# ---- finding 1: a pile settles only its own sessions ------------------------------------------------
def test_a_pile_cannot_settle_a_session_of_another_pile_of_another_tenant(ledger: Ledger, database_url: str,
                                                                         nats_url: str) -> None:
    a, b = two_tenants(ledger)

    async def scenario(gateway: Gateway, clock: Clock) -> str:
        p, q, start = await p_and_a_start_on_q(gateway, clock, a, b)
        q.send(q.realtime(1, status=CHARGING, trade_no=start.trade_no, energy=4000))
        await until(lambda: ledger.session(start.trade_no).state == "charging")
        now = local(clock)
        claim = q.record(start.trade_no, 1, (0, 0, 500_000, 0), PRICE_PER_TIER, now - timedelta(hours=1), now)
        for named in (a.pile_no, b.pile_no):  # P's own pile number, then Q's
            p.send(dataclasses.replace(claim, pile_no=named))
            confirm = await p.expect(TransactionConfirm)
            assert (confirm.trade_no, confirm.result) == (start.trade_no, 1)  # refused
        session = ledger.session(start.trade_no)
        assert session.state == "charging" and session.record is None
        # Q's genuine record is then settled and confirmed
        q.send(q.record(start.trade_no, 1, (0, 0, 9000, 0), PRICE_PER_TIER, now - timedelta(minutes=5), now))
        assert (await q.expect(TransactionConfirm)).result == 0
        assert gateway.stats["frames_refused"] == 2
        return start.trade_no

    trade_no = run(ledger, database_url, nats_url, scenario)
    session = ledger.session(trade_no)
    assert session.state == "finished" and session.record["pile_total_energy"] == 9000
    assert ledger.wallet(b.wallet_id).available == 100_00 - session.bill["total_fen"]
    assert ledger.wallet(a.wallet_id).available == 100_00
    # the operator sees it: FrameRefused on the offending pile (aggregated), and an alarm
    events = refused_events(ledger, a.pile_no)
    assert sorted((e.kind, e.frame_type, e.count) for e in events) == [("foreign_session", 0x3B, 1),
                                                                        ("other_pile", 0x3B, 1)]
    assert not refused_events(ledger, b.pile_no)
    assert alarm_rows(ledger, database_url, "frame_refused") == [(a.pile_no, "foreign_session", 1, "major"),
                                                                 (a.pile_no, "other_pile", 1, "major")]


def test_the_ledger_refuses_a_pile_scoped_command_on_another_piles_or_guns_session(ledger: Ledger) -> None:
    a, b = two_tenants(ledger)
    trade_no = ledger.request_start(pile_no=b.pile_no, gun_no=1, wallet_id=b.wallet_id, hold_fen=10_00, at=T0,
                                    author="driver-2")
    ledger.mark_charging(trade_no, at=T0, sent_by=PileGun(b.pile_no, 1))
    before = ledger.session(trade_no).version
    for sent_by in (PileGun(a.pile_no, 1), PileGun(b.pile_no, 2)):
        with pytest.raises(WrongPile):
            ledger.settle(trade_no, record((0, 0, 50_000, 0), T0), T0, pile_no=sent_by.pile_no,
                          gun_no=sent_by.gun_no)
        with pytest.raises(WrongPile):
            ledger.acknowledge_start(trade_no, at=T0, ok=False, sent_by=sent_by)
        [outcome] = ledger.record_readings([{"trade_no": trade_no, "at": T0, "energy": 9000, "sent_by": sent_by}])
        assert isinstance(outcome, WrongPile)
    assert ledger.record_readings([{"trade_no": trade_no, "at": T0, "energy": 100,
                                    "sent_by": PileGun(b.pile_no, 1)}]) == [None]
    session = ledger.session(trade_no)
    assert session.version == before + 1 and session.meter_energy == 100
    assert ledger.wallet(b.wallet_id).held == 10_00


# ---- finding 2: readings, start replies and faults -------------------------------------------------
def test_frames_naming_another_piles_session_or_another_gun_change_nothing(ledger: Ledger, database_url: str,
                                                                          nats_url: str) -> None:
    a, b = two_tenants(ledger)

    async def scenario(gateway: Gateway, clock: Clock) -> None:
        p, q, start = await p_and_a_start_on_q(gateway, clock, a, b, acknowledged=False)  # Q's 0x33 is awaited
        trade_no = start.trade_no
        for named in (a.pile_no, b.pile_no):
            p.send(RemoteStartReply(trade_no, named, "01", 0, 2))  # "failed" from P
        await handled(p, gateway)
        assert ledger.session(trade_no).state == "requested" and ledger.wallet(b.wallet_id).held == 50_00
        q.send(RemoteStartReply(trade_no, b.pile_no, "01", 1, 0))
        q.send(q.realtime(1, status=CHARGING, trade_no=trade_no, energy=1000))
        await handled(q, gateway)
        p.send(p.realtime(1, status=CHARGING, trade_no=trade_no, energy=900_000))
        p.send(BmsAbort(trade_no, a.pile_no, "01", 1, 0, 0))
        await handled(p, gateway)
        session = ledger.session(trade_no)
        assert (session.state, session.readings, session.meter_energy, session.faults) == ("charging", 1, 1000, [])

        # P's own session on gun 2, named with gun 1: refused too (the session is not that gun's)
        _, own = await start_from_app(gateway, clock, a, p, gun_no=2)
        p.send(RemoteStartReply(own.trade_no, a.pile_no, "01", 0, 5))
        p.send(p.realtime(1, status=CHARGING, trade_no=own.trade_no, energy=700))
        await handled(p, gateway)
        assert ledger.session(own.trade_no).state == "requested" and ledger.session(own.trade_no).readings == 0
        p.send(RemoteStartReply(own.trade_no, a.pile_no, "02", 1, 0))
        p.send(p.realtime(2, status=CHARGING, trade_no=own.trade_no, energy=700))
        await handled(p, gateway)
        assert ledger.session(own.trade_no).meter_energy == 700  # its own gun is heard
        assert gateway.stats["frames_refused"] == 6

    run(ledger, database_url, nats_url, scenario)
    assert sum(e.count for e in refused_events(ledger, a.pile_no)) == 6
    assert not refused_events(ledger, b.pile_no)


# ---- finding 3: offline records ----------------------------------------------------------------------
def test_offline_records_are_bound_to_the_pile_its_guns_and_its_serial_prefix(ledger: Ledger, database_url: str,
                                                                             nats_url: str) -> None:
    a, b = two_tenants(ledger)
    ledger.register_pile(a.station_id, ONE_GUN_PILE, "DC", 1, "admin")

    async def scenario(gateway: Gateway, clock: Clock) -> None:
        one = ScriptedPile(ONE_GUN_PILE, gun_count=1)
        await one.login(gateway.port)
        now = local(clock)
        offline = [  # (serial, pile number named, gun)
            (ONE_GUN_PILE + "05" + "261122093000" + "0001", ONE_GUN_PILE, 5),  # no gun 5 on a one-gun pile
            (a.pile_no + "01" + "261122093000" + "0002", a.pile_no, 1),  # another pile's number and serial
            (b.pile_no + "01" + "261122093000" + "0003", ONE_GUN_PILE, 1),  # another pile's serial
        ]
        for serial, named, gun in offline:
            rec = one.record(serial, gun, (0, 0, 20_000, 0), PRICE_PER_TIER, now - timedelta(minutes=30), now)
            one.send(dataclasses.replace(rec, pile_no=named))
            confirm = await one.expect(TransactionConfirm)
            assert (confirm.trade_no, confirm.result) == (serial, 1)
            assert not ledger.sessions.exists(ChargingSession.create_id(serial))
        # a real pile's serial need not spell its gun (verified frame 17): own prefix, own gun, accepted
        serial = ONE_GUN_PILE + "323239000000000000"
        one.send(one.record(serial, 1, (0, 0, 20_000, 0), PRICE_PER_TIER, now - timedelta(minutes=30), now))
        assert (await one.expect(TransactionConfirm)).result == 0
        session = ledger.session(serial)
        assert (session.pile_no, session.gun_no, session.origin, session.state) == (ONE_GUN_PILE, 1, "offline",
                                                                                     "finished")

    run(ledger, database_url, nats_url, scenario)
    kinds = sorted((e.kind, e.count) for e in refused_events(ledger, ONE_GUN_PILE))
    assert kinds == [("foreign_session", 1), ("other_pile", 1), ("unknown_gun", 1)]
