"""A, B and R: the roaming pair (roaming_harness.py) and R, a provincial regulator's platform, a third API app on
its own database serving the production handlers (tests/integration/test_interconnect_regulator.py).

A links R as a ``regulator`` peer and knows itself to R as ``MA2OURS01`` (not the OperatorID B knows it by:
what R is told must say the name R knows); R links A as an ``infrastructure`` peer under that name, one
credential set per direction. A's outbox (in process) reaches B through B's app and R through R's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from adapters.interconnect.handlers import handlers
from adapters.interconnect.handlers.notifications import ORDER, check_answer
from adapters.interconnect.outbox.role import OutboxRole
from adapters.interconnect.tcec import wire
from adapters.interconnect.tcec.interfaces import Role
from adapters.interconnect.tcec.models.orders import (ChargeOrderAck, ChargeOrderInfo, CheckChargeOrders,
                                                      CheckChargeOrdersResponse, CheckedOrder)
from adapters.interconnect.tcec.peer import Peer
from adapters.interconnect.tcec.routing import Call, Handlers
from adapters.payments.config import SecretBox
from tests.integration.roaming_harness import BASE_URL, Roaming, Side, _side, roaming  # noqa: F401

R_ID = "RREGULATE"  # the regulator's OperatorID
A_FOR_R = "MA2OURS01"  # A's OperatorID as R knows it


@dataclass
class Regulated:
    roaming: Roaming
    r: Side
    r_on_a: Peer  # how A knows R
    a_on_r: Peer  # how R knows A

    @property
    def a(self) -> Side:
        return self.roaming.a

    def http(self, peer: Peer) -> httpx.Client:
        return self.r.client if peer.operator_id == R_ID else self.roaming.http_to_b(peer)

    def outbox(self) -> OutboxRole:
        return OutboxRole(self.a.ledger, self.a.database_url, self.a.store, http_for=self.http)

    def received(self, interface: str) -> list[dict[str, Any]]:
        """What R received from A, in order of arrival."""
        return [{**row, "data": wire.loads(row["payload"])}
                for row in self.r.store.received.of(self.a_on_r.peer_id, interface)]

    def pushes(self, interface: str, peer: Peer | None = None) -> list[dict[str, Any]]:
        """A's outbox rows of ``interface`` for ``peer`` (R by default), with what each carries."""
        with psycopg.connect(self.a.database_url, row_factory=dict_row) as conn:
            return conn.execute("SELECT key, state, answer, payload FROM tcec_outbox WHERE peer_id = %s "
                                "AND interface = %s ORDER BY id", ((peer or self.r_on_a).peer_id, interface)).fetchall()


def regulator_handlers() -> Handlers:
    """R's door: our production handlers, but a regulator records orders instead of settling them (no driver of
    its own started them): every order is agreed as it arrives, and the daily check is held against the orders
    recorded (not found 1, money 2, energy 3), as a regulator's platform does."""
    table = Handlers()
    for name in handlers:
        if name not in (ORDER, "check_charge_orders"):
            table.handles(name, handlers[name])(handlers.handler(name))

    @table.handles(ORDER)
    def order_info(call: Call) -> ChargeOrderAck:
        call.services.store.received.record(call.peer.peer_id, ORDER, call.request.StartChargeSeq,
                                            wire.dumps(call.request.to_wire()), call.now)
        return ChargeOrderAck(StartChargeSeq=call.request.StartChargeSeq, ConnectorID=call.request.ConnectorID,
                              ConfirmResult=0)

    @table.handles("check_charge_orders")
    def check(call: Call) -> CheckChargeOrdersResponse:
        request: CheckChargeOrders = call.request
        call.services.store.received.record(call.peer.peer_id, "check_charge_orders", request.CheckOrderSeq,
                                            wire.dumps(request.to_wire()), call.now)
        kept = call.services.store.received.payloads(call.peer.peer_id, ORDER,
                                                     [o.StartChargeSeq for o in request.ChargeOrders])

        def reason_of(order: CheckedOrder) -> int:
            if order.StartChargeSeq not in kept:
                return 1
            mine = ChargeOrderInfo.from_wire(wire.loads(kept[order.StartChargeSeq]))
            return 2 if mine.TotalMoney != order.TotalMoney else 3 if mine.TotalPower != order.TotalPower else 0
        return check_answer(request, reason_of)

    return table


@pytest.fixture
def regulated(roaming: Roaming, servers: tuple[str, str]) -> Iterator[Regulated]:  # noqa: F811
    r_gen = _side(servers[0], "r", SecretBox.generate_setting("r1"), handlers=regulator_handlers())
    r = next(r_gen)
    a = roaming.a
    r_on_a = a.store.peers.configure(a.tenant_id, R_ID, our_operator_id=A_FOR_R, base_url=BASE_URL,
                                     role=Role.REGULATOR, name="省监管平台")
    a_on_r = r.store.peers.configure(r.tenant_id, A_FOR_R, our_operator_id=R_ID, base_url=BASE_URL,
                                     role=Role.INFRASTRUCTURE, outbound=r_on_a.inbound)
    r_on_a = a.store.peers.set_outbound(a.tenant_id, R_ID, a_on_r.inbound)
    yield Regulated(roaming, r, r_on_a, a_on_r)
    r_gen.close()
