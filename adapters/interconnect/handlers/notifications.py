"""We as customer platform, what an infrastructure operator pushes us: every ``notification_*`` is kept as it
arrived (``store/received.py``), then does to our drivers' roaming charges what ``customer/arrivals.py``
says (a start result moves the charge on, an order settles it against the driver's hold, owed to the
peer), and is acknowledged; ``check_charge_orders`` is answered from the charges' settled bills.

Each push is keyed by what the standard dedups it by (its StartChargeSeq), so a push resent after a
lost answer is acknowledged again and counted, not recorded twice; the ledger's commands are
idempotent too, so a resent order settles nothing twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from decimal import Decimal

from adapters.interconnect.customer.arrivals import Arrivals
from adapters.interconnect.handlers.table import handlers
from adapters.interconnect.tcec import wire
from adapters.interconnect.tcec.models.base import Model
from adapters.interconnect.tcec.models.charge import ChargeStatus, ResultAck, StartChargeResult, StopChargeResult
from adapters.interconnect.tcec.models.codes import NotificationStatus, SuccStat
from adapters.interconnect.tcec.models.orders import (ChargeOrderAck, ChargeOrderInfo, CheckChargeOrders,
                                                      CheckChargeOrdersResponse, CheckedOrder, DisputedOrder)
from adapters.interconnect.tcec.models.status import StationStatusAck, StationStatusNotification
from adapters.interconnect.tcec.routing import Call

ORDER = "notification_charge_order_info"


def keep(call: Call, key: str) -> int:
    request: Model = call.request
    return call.services.store.received.record(call.peer.peer_id, call.interface.name, key,
                                               wire.dumps(request.to_wire()), call.now)


@handlers.handles("notification_stationStatus")
def station_status(call: Call) -> StationStatusAck:
    """Every status is news (a connector may go idle, busy, idle again): each arrival is its own row. It is
    also the connector's status in the peer's catalogue our drivers browse, unless a status that arrived
    later is kept there already (arrival order: T/CEC's status has no time; store/peer_catalogue.py)."""
    keep(call, uuid.uuid4().hex)
    info = call.request.ConnectorStatusInfo
    call.services.store.peer_catalogue.save_status(call.peer.peer_id, [(info.ConnectorID, int(info.Status))],
                                                   call.now)
    return StationStatusAck(Status=NotificationStatus.RECEIVED)


def _result(call: Call, key: str) -> ResultAck:
    keep(call, key)
    return ResultAck(StartChargeSeq=call.request.StartChargeSeq, SuccStat=SuccStat.SUCCESS)


def arrivals(call: Call) -> Arrivals:
    return Arrivals(call.services.ledger)


@handlers.handles("notification_start_charge_result")
def start_result(call: Call) -> ResultAck:
    request: StartChargeResult = call.request
    answer = _result(call, request.StartChargeSeq)
    arrivals(call).started(call.peer, request, call.now)
    return answer


@handlers.handles("notification_equip_charge_status")
def charge_status(call: Call) -> ResultAck:
    request: ChargeStatus = call.request
    answer = _result(call, f"{request.StartChargeSeq}:{request.EndTime:%Y%m%d%H%M%S}")
    arrivals(call).started(call.peer, request, call.now)
    return answer


@handlers.handles("notification_stop_charge_result")
def stop_result(call: Call) -> ResultAck:
    request: StopChargeResult = call.request
    return _result(call, request.StartChargeSeq)


@handlers.handles(ORDER)
def order_info(call: Call) -> ChargeOrderAck:
    """The first copy of an order is the one kept as it arrived; the charge is settled with it (a resent
    copy settles nothing again, one with other amounts is disputed)."""
    request: ChargeOrderInfo = call.request
    keep(call, request.StartChargeSeq)
    return ChargeOrderAck(StartChargeSeq=request.StartChargeSeq, ConnectorID=request.ConnectorID,
                          ConfirmResult=arrivals(call).order(call.peer, request, call.now))


@handlers.handles("check_charge_orders")
def check_orders(call: Call) -> CheckChargeOrdersResponse:
    """Each listed order against the charge's settled bill: not found (1), its money (2) or energy (3) differs."""
    request: CheckChargeOrders = call.request
    keep(call, request.CheckOrderSeq)
    check = arrivals(call)
    return check_answer(request, lambda order: check.dispute_reason(call.peer, order))


def check_answer(request: CheckChargeOrders, reason_of: Callable[[CheckedOrder], int]) -> CheckChargeOrdersResponse:
    """The answer to a daily check: the listed orders ``reason_of`` disputes (a DisputeReason; 0: agreed), totalled."""
    disputed = []
    for order in request.ChargeOrders:
        reason = reason_of(order)
        if reason:
            disputed.append(DisputedOrder(StartChargeSeq=order.StartChargeSeq, TotalPower=order.TotalPower,
                                          TotalMoney=order.TotalMoney, DisputeReason=reason))
    return CheckChargeOrdersResponse(
        CheckOrderSeq=request.CheckOrderSeq, StartTime=request.StartTime, EndTime=request.EndTime,
        TotalDisputeOrder=len(disputed), TotalDisputePower=sum((d.TotalPower for d in disputed), Decimal(0)),
        TotalDisputeMoney=sum((d.TotalMoney for d in disputed), Decimal(0)), DisputeOrders=disputed)
