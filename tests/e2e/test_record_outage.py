"""A transaction record that arrives while the database is away must not stall the pile's connection.

Found by the fault suite (tests/e2e/test_fault_suite.py, Postgres stopped 55 s with the fleet draining):
the gateway settled a 0x3B on the connection's read loop, so while the record waited for Postgres
nothing else from that pile was read: its heartbeats went unanswered, the pile dropped the link after
three intervals, and could not log in again until Postgres was back (login reads the registry). The
record waits (unanswered) as before, but off the read loop: heartbeats and readings go on being
answered and read, and resends of a record already being settled are left to that one.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest

from adapters.servers.postgres_server import EmbeddedPostgres
from pile_link.gateway import Gateway
from pile_link.ykc import Heartbeat, HeartbeatAck, TransactionConfirm
from tests.e2e.gateway_harness import CHARGING, PRICE_PER_TIER, Clock, local
from tests.e2e.test_outage import card_start, card_world, fresh, own_dir, own_postgres, until  # noqa: F401


def test_a_record_waiting_for_the_database_does_not_stop_heartbeats_being_answered(
        own_postgres: EmbeddedPostgres, nats_url: str) -> None:
    url, ledger, world = card_world(own_postgres)
    clock = Clock()

    async def main() -> None:
        gateway = Gateway(ledger, database_url=url, nats_url=nats_url, clock=clock, sweep_interval=0.5, owed_wait=0.5)
        await gateway.start()
        try:
            pile, trade_no = await card_start(gateway, world)
            pile.send(pile.realtime(1, status=CHARGING, trade_no=trade_no, energy=1000))
            await until(lambda: fresh(ledger, trade_no).readings == 1)

            await asyncio.to_thread(own_postgres.stop)
            pile.send(pile.realtime(1, status=CHARGING, trade_no=trade_no, energy=2000))  # queued for the database
            now = local(clock)
            record = pile.record(trade_no, 1, (0, 0, 2000, 0), PRICE_PER_TIER, now - timedelta(minutes=5), now)
            pile.send(record)
            started = time.monotonic()
            while time.monotonic() - started < 6:  # the record waits; the heartbeats do not
                pile.send(Heartbeat(world.pile_no, "01", 0))
                await pile.expect(HeartbeatAck, timeout=2)
                pile.send(record)  # the pile resends: left to the settlement already under way
                await asyncio.sleep(0.5)
            with pytest.raises(asyncio.TimeoutError):  # not stored: not answered
                await pile.expect(TransactionConfirm, timeout=0.5)
            await asyncio.to_thread(own_postgres.start)
            for _ in range(60):
                pile.send(record)
                try:
                    confirm = await pile.expect(TransactionConfirm, timeout=2)
                    break
                except asyncio.TimeoutError:
                    continue
            assert (confirm.trade_no, confirm.result) == (trade_no, 0)
            session = fresh(ledger, trade_no)
            assert session.state == "finished" and session.readings == 2
            assert gateway.stats["records_resent_while_settling"] >= 1  # left to the settlement under way
        finally:
            await gateway.stop()

    try:
        asyncio.run(asyncio.wait_for(main(), 120))
        assert ledger.wallet(world.wallet_id).held == 0
    finally:
        ledger.close()
