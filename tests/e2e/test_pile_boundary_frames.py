"""The pile link's boundary (issue 10, finding 4): what a pile's frames cannot do: name a gun that does
not decode, come before a login, name another pile or gun in heartbeats and model requests, or pile up
settlements on one connection under ever new serials.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from datetime import timedelta
from typing import Any

import pytest

from domain.ledger import Ledger
from pile_link.gateway import Gateway
from pile_link.handlers.records import MAX_SETTLING
from pile_link.ykc import (
    BillingModelReply,
    BillingModelRequest,
    Heartbeat,
    HeartbeatAck,
    Login,
    StartAuthReply,
    StartRequest,
    TransactionConfirm,
)
from tests.factories import build_world
from tests.e2e.gateway_harness import PRICE_PER_TIER, Clock, local, run, started
from tests.ykc_pile import ScriptedPile, settlements_done
from tests.e2e.boundary_harness import refused_events, two_tenants


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
