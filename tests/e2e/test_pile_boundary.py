"""The pile link's boundary (issue 10, findings 1-6): every frame a pile sends is bound to the pile that
logged in on its connection, and the gateway sends a pile nothing the ledger does not say it is owed.

Over real TCP, Postgres and NATS with scripted piles (``tests/ykc_pile.py``), as ``tests/e2e/test_gateway.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import nats
import psycopg
import pytest

from adapters.postgres.env import eventsourcing_env
from domain.errors import WrongPile
from domain.ledger import Ledger, PileGun
from domain.registry import Pile
from domain.session import ChargingSession
from pile_link.gateway import Gateway
from pile_link.handlers.records import MAX_SETTLING
from pile_link.owed import COMMISSIONING_BALANCE_FEN
from pile_link.ykc import (
    BillingModelReply,
    BillingModelRequest,
    BmsAbort,
    Heartbeat,
    HeartbeatAck,
    Login,
    Reboot,
    RemoteStart,
    RemoteStartReply,
    StartAuthReply,
    StartRequest,
    TransactionConfirm,
    WorkParams,
)
from projections.runner import Projections
from tests.factories import build_world, record
from tests.e2e.test_gateway import CHARGING, PRICE_PER_TIER, Clock, _events, local, run, start_from_app, started, until
from tests.ykc_pile import ScriptedPile, settlements_done

OTHER_PILE = "55031412782305"  # tenant B's pile
ONE_GUN_PILE = "32010600019237"  # a one-gun pile of tenant A
T0 = datetime(2026, 11, 22, 1, 30, tzinfo=timezone.utc)


def two_tenants(ledger: Ledger) -> tuple[Any, Any]:
    a = build_world(ledger, top_up=100_00)
    b = build_world(ledger, top_up=100_00, pile_no=OTHER_PILE, driver="driver-2")
    return a, b


async def handled(pile: ScriptedPile, gateway: Gateway) -> None:
    """Every frame this pile sent so far has been handled, and its readings written.

    A connection's frames are handled in order, so the answer to a heartbeat sent now means the
    frames before it are done, except a record's settlement, which runs beside the read loop: those
    still under way are waited for. Only this pile's own gun 1 is used, which the boundary accepts."""
    pile.send(Heartbeat(pile.pile_no, "01", 0))
    while (await pile.expect(HeartbeatAck)).gun_no != "01":
        pass
    await settlements_done(gateway)
    await gateway.readings.flush()


def refused_events(ledger: Ledger, pile_no: str) -> list[Any]:
    pile_id = Pile.create_id(pile_no)
    return [e for e in _events(ledger.registry) if type(e).__name__ == "FrameRefused" and e.originator_id == pile_id]


def alarm_rows(ledger: Ledger, database_url: str, kind: str) -> list[tuple[Any, ...]]:
    projections = Projections(ledger.applications, eventsourcing_env(database_url))
    try:
        projections.catch_up()
    finally:
        projections.close()
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT pile_no, code, count, severity FROM alarms WHERE kind = %s ORDER BY pile_no, code",
                            (kind,)).fetchall()


async def p_and_a_start_on_q(gateway: Gateway, clock: Clock, a: Any, b: Any, acknowledged: bool = True
                             ) -> tuple[ScriptedPile, ScriptedPile, RemoteStart]:
    """Tenant A's pile P logged in; a start from the app on tenant B's pile Q, received (and acknowledged)."""
    p = ScriptedPile(a.pile_no)
    await p.login(gateway.port)
    q, start = await started(gateway, clock, b, acknowledged=acknowledged)
    return p, q, start


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


# ---- finding 4: undecodable guns, no login, heartbeats of other piles ---------------------------------
def test_a_record_whose_gun_byte_is_not_bcd_is_answered_refused_without_a_handler_error(
        ledger: Ledger, database_url: str, nats_url: str) -> None:
    a = build_world(ledger, top_up=100_00)

    async def scenario(gateway: Gateway, clock: Clock) -> None:
        p, start = await started(gateway, clock, a)
        now = local(clock)
        rec = p.record(start.trade_no, 1, (0, 0, 9000, 0), PRICE_PER_TIER, now - timedelta(minutes=5), now)
        p.send(dataclasses.replace(rec, gun_no="FF"))
        confirm = await p.expect(TransactionConfirm)
        assert (confirm.trade_no, confirm.result) == (start.trade_no, 1)
        p.send(StartRequest(a.pile_no, "FF", 1, 0, bytes.fromhex("00000000DEADBEEF"), bytes(16), "0" * 17))
        reply = await p.expect(StartAuthReply)
        assert reply.result == 0  # refused, and answered
        assert ledger.session(start.trade_no).state == "starting"
        assert gateway.stats["handler_errors"] == 0 and gateway.stats["refused_unknown_gun"] == 2

    run(ledger, database_url, nats_url, scenario)


def test_a_connection_that_never_logs_in_is_closed_at_the_login_deadline_and_never_answered(
        ledger: Ledger, database_url: str, nats_url: str) -> None:
    a = build_world(ledger)

    async def scenario(gateway: Gateway, clock: Clock) -> None:
        silent = ScriptedPile(a.pile_no)
        await silent.connect(gateway.port)

        async def heartbeats() -> None:
            while True:
                silent.send(Heartbeat(a.pile_no, "01", 0))
                await asyncio.sleep(0.1)

        beating = asyncio.create_task(heartbeats())
        try:
            answered = await asyncio.wait_for(silent.reader.read(), 15)  # everything it is sent, until closed
        finally:
            beating.cancel()
        assert answered == b""  # closed, and not one frame answered
        assert gateway.stats["login_overdue"] == 1 and gateway.stats["before_login"] >= 1

    run(ledger, database_url, nats_url, scenario, login_deadline=1.0)


def test_heartbeats_and_model_requests_naming_another_pile_or_gun_are_not_answered(
        ledger: Ledger, database_url: str, nats_url: str) -> None:
    a, b = two_tenants(ledger)

    async def scenario(gateway: Gateway, clock: Clock) -> None:
        p = ScriptedPile(a.pile_no)
        await p.login(gateway.port)
        p.send(Heartbeat(b.pile_no, "01", 0))
        p.send(Heartbeat(a.pile_no, "09", 0))
        p.send(Heartbeat(a.pile_no, "FF", 0))
        p.send(BillingModelRequest(b.pile_no))
        p.send(Login(b.pile_no, 0, 2, 0x10, "V4.1.50", 0, "0" * 20, 4))  # a second login, as another pile
        p.send(Heartbeat(a.pile_no, "02", 0))
        ack = await p.expect(HeartbeatAck)
        assert (ack.pile_no, ack.gun_no) == (a.pile_no, "02")  # the first answer is to the last frame
        assert not [m for _, m in p.received if isinstance(m, (HeartbeatAck, BillingModelReply))]
        assert gateway.links[a.pile_no] is not None and b.pile_no not in gateway.links
        assert gateway.stats["frames_refused"] == 5

    run(ledger, database_url, nats_url, scenario)
    # throttled: the first refusal of a kind is written at once, the rest of the minute as one event
    # with their count (here when the connection closed)
    assert sorted((e.kind, e.frame_type, e.count) for e in refused_events(ledger, a.pile_no)) == [
        ("other_pile", 0x01, 2), ("other_pile", 0x03, 1), ("unknown_gun", 0x03, 1), ("unknown_gun", 0x03, 1)]


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


def test_records_under_fresh_serials_cannot_pile_up_settlements_on_one_connection(
        ledger: Ledger, database_url: str, nats_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pile (or an attacker holding its connection) sending records under ever new serials of its own
    while the database does not answer: at most MAX_SETTLING are under way, the rest are left unanswered
    (the pile resends them), heartbeats are still answered, and each record is answered once stored."""
    a = build_world(ledger, top_up=100_00)
    stuck = threading.Event()
    settle = ledger.settle

    def waiting_settle(*args: Any, **kwargs: Any) -> Any:
        stuck.wait(30)  # the database away
        return settle(*args, **kwargs)

    monkeypatch.setattr(ledger, "settle", waiting_settle)

    async def scenario(gateway: Gateway, clock: Clock) -> None:
        p = ScriptedPile(a.pile_no)
        await p.login(gateway.port)
        now = local(clock)
        serials = [f"{a.pile_no}01261122093000{n:04d}" for n in range(MAX_SETTLING + 12)]
        for serial in serials:
            p.send(p.record(serial, 1, (0, 0, 1_000, 0), PRICE_PER_TIER, now - timedelta(minutes=30), now))
        p.send(Heartbeat(a.pile_no, "01", 0))
        await p.expect(HeartbeatAck)
        link = gateway.links[a.pile_no]
        assert len(link.settling) == MAX_SETTLING
        assert gateway.stats["records_deferred"] == 12
        stuck.set()
        await settlements_done(gateway)
        confirmed = {(await p.expect(TransactionConfirm)).trade_no for _ in range(MAX_SETTLING)}
        assert confirmed == set(serials[:MAX_SETTLING])
        for serial in serials[MAX_SETTLING:]:  # the pile resends what was not answered
            p.send(p.record(serial, 1, (0, 0, 1_000, 0), PRICE_PER_TIER, now - timedelta(minutes=30), now))
            assert (await p.expect(TransactionConfirm)).trade_no == serial

    run(ledger, database_url, nats_url, scenario)
    assert all(ledger.session(f"{a.pile_no}01261122093000{n:04d}").state == "finished"
               for n in range(MAX_SETTLING + 12))
