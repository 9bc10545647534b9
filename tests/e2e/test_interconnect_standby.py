"""The interconnect role twice: two `chargeledger tcec-outbox` processes on A's database push to B (uvicorn on
loopback); one is killed with kill -9 and the other goes on at once. Every connector status change reaches B
exactly once, those before the kill and those after it (issue 15: every follower runnable twice, a standby
taking over within seconds).
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from pathlib import Path

from psycopg_pool import ConnectionPool

from adapters.interconnect.mapping import connector_code
from adapters.interconnect.store.directory import Store
from adapters.interconnect.store.schema import create_schema
from adapters.interconnect.tcec import wire
from adapters.payments.config import SecretBox
from domain.ledger import Ledger
from tests.e2e.gateway_harness import until
from tests.e2e.roaming_deployment import OutboxProcess, Served, b_side, free_port, link_a_and_b, rows  # noqa: F401
from tests.factories import build_world



def statuses(b_url: str, connector: str) -> list[int]:
    """The statuses B received for ``connector``, in arrival order."""
    received = [wire.loads(p) for (p,) in rows(b_url, "SELECT payload FROM tcec_received WHERE interface = "
                                                      "'notification_stationStatus' ORDER BY id")]
    return [r["ConnectorStatusInfo"]["Status"] for r in received
            if r["ConnectorStatusInfo"]["ConnectorID"] == connector]


def test_a_second_outbox_goes_on_at_once_when_the_first_is_killed(
        ledger: Ledger, database_url: str, nats_url: str, b_side: tuple[str, Ledger, ConnectionPool],  # noqa: F811
        tmp_path: Path) -> None:
    b_url, b_ledger, b_pool = b_side
    keys_a, keys_b = SecretBox.generate_setting("a1"), SecretBox.generate_setting("b1")
    world = build_world(ledger, top_up=0)
    with ConnectionPool(database_url, min_size=1, max_size=2, open=True) as a_pool:
        a_store = Store(a_pool, SecretBox.from_setting(keys_a))
        create_schema(a_pool)
        port = free_port()
        b_served = Served(b_ledger, b_url, keys_b, port)
        b_served.start()
        b_store = Store(b_pool, SecretBox.from_setting(keys_b))
        link_a_and_b(a_store, b_store, world.tenant_id, port, status_interval=0, a_url="http://unused/evcs/v1")
        first = OutboxProcess(database_url, nats_url, keys_a, tmp_path / "first.log")
        second = OutboxProcess(database_url, nats_url, keys_a, tmp_path / "second.log")
        gun = connector_code(world.pile_no, 1)
        try:
            first.start()
            second.start()
            ledger.pile_connected(world.pile_no, _now(), "test-gateway", 0x10, "V1")
            ledger.report_gun(world.pile_no, 1, "idle", False, {}, _now())
            asyncio.run(until(lambda: statuses(b_url, gun) == [1], 60))
            # and its answer recorded: a push whose answer the killed process never wrote waits for its lease
            # (2 min) and holds back its connector's later statuses, as docs/interconnect.md says
            asyncio.run(until(lambda: not rows(database_url, "SELECT 1 FROM tcec_outbox WHERE state = 'pending' "
                                                             "AND interface = 'notification_stationStatus'"), 60))
            first.kill()  # kill -9, whatever it was doing
            killed = time.monotonic()
            ledger.report_gun(world.pile_no, 1, "idle", True, {}, _now())  # plugged in: occupied
            asyncio.run(until(lambda: len(statuses(b_url, gun)) >= 2, 60))
            taken_over = time.monotonic() - killed
            ledger.report_gun(world.pile_no, 1, "charging", True, {}, _now())
            asyncio.run(until(lambda: len(statuses(b_url, gun)) >= 3, 60))
            assert second.alive()
        finally:
            for process in (first, second):
                process.stop()
            b_served.stop()
    assert statuses(b_url, gun) == [1, 2, 3]  # each change once, in order, across the kill
    print(f"RECOVERY interconnect first push after the kill -9 delivered in {taken_over:.2f} s")
    assert "Traceback" not in (tmp_path / "second.log").read_text()


def _now() -> datetime:
    return datetime.now(timezone.utc)
