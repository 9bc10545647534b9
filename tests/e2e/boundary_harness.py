"""What the pile-boundary tests share (tests/e2e/test_pile_boundary_*.py): two tenants' piles, a pile's
frames known handled, the refusals and alarms they leave.

Those tests run over real TCP, Postgres and NATS with scripted piles (``tests/ykc_pile.py``), as the
gateway's tests (``tests/e2e/gateway_harness.py``).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import psycopg

from adapters.postgres.env import eventsourcing_env
from domain.ledger import Ledger
from domain.registry import Pile
from pile_link.gateway import Gateway
from pile_link.ykc import Heartbeat, HeartbeatAck, RemoteStart
from projections.runner import Projections
from tests.factories import build_world
from tests.e2e.gateway_harness import Clock, _events, started
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
