"""We as customer platform, what an infrastructure operator pushes us: every ``notification_*`` is kept as it
arrived (``store/received.py``) and acknowledged; ``check_charge_orders`` is answered from the orders
kept. This is the recording end a customer platform's settlement (issue 13, item 4) builds on: it
takes every push the peer's contract allows and disputes nothing it has the order for.

Each push is keyed by what the standard dedups it by (its StartChargeSeq), so a push resent after a
lost answer is acknowledged again and counted, not recorded twice.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from adapters.interconnect.handlers.table import handlers
from adapters.interconnect.tcec import wire
from adapters.interconnect.tcec.models.base import Model
from adapters.interconnect.tcec.models.charge import ChargeStatus, ResultAck, StartChargeResult, StopChargeResult
from adapters.interconnect.tcec.models.codes import ConfirmResult, NotificationStatus, SuccStat
from adapters.interconnect.tcec.models.orders import (ChargeOrderAck, ChargeOrderInfo, CheckChargeOrders,
                                                      CheckChargeOrdersResponse, DisputedOrder)
from adapters.interconnect.tcec.models.status import StationStatusAck, StationStatusNotification
from adapters.interconnect.tcec.routing import Call

ORDER = "notification_charge_order_info"
NOT_FOUND, AMOUNT_WRONG, ENERGY_WRONG = 1, 2, 3  # DisputeReason


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


@handlers.handles("notification_start_charge_result")
def start_result(call: Call) -> ResultAck:
    request: StartChargeResult = call.request
    return _result(call, request.StartChargeSeq)


@handlers.handles("notification_equip_charge_status")
def charge_status(call: Call) -> ResultAck:
    request: ChargeStatus = call.request
    return _result(call, f"{request.StartChargeSeq}:{request.EndTime:%Y%m%d%H%M%S}")


@handlers.handles("notification_stop_charge_result")
def stop_result(call: Call) -> ResultAck:
    request: StopChargeResult = call.request
    return _result(call, request.StartChargeSeq)


@handlers.handles(ORDER)
def order_info(call: Call) -> ChargeOrderAck:
    """The first copy of an order is the one kept (a resent one cannot change it); agreed."""
    request: ChargeOrderInfo = call.request
    keep(call, request.StartChargeSeq)
    return ChargeOrderAck(StartChargeSeq=request.StartChargeSeq, ConnectorID=request.ConnectorID,
                          ConfirmResult=ConfirmResult.AGREED)


@handlers.handles("check_charge_orders")
def check_orders(call: Call) -> CheckChargeOrdersResponse:
    """Each listed order against the order info kept: not found (1), its money (2) or energy (3) differs."""
    request: CheckChargeOrders = call.request
    keep(call, request.CheckOrderSeq)
    kept = call.services.store.received.payloads(call.peer.peer_id, ORDER,
                                                 [o.StartChargeSeq for o in request.ChargeOrders])
    disputed = []
    for order in request.ChargeOrders:
        mine = ChargeOrderInfo.from_wire(wire.loads(kept[order.StartChargeSeq])) if order.StartChargeSeq in kept \
            else None
        reason = (NOT_FOUND if mine is None else AMOUNT_WRONG if mine.TotalMoney != order.TotalMoney
                  else ENERGY_WRONG if mine.TotalPower != order.TotalPower else 0)
        if reason:
            disputed.append(DisputedOrder(StartChargeSeq=order.StartChargeSeq, TotalPower=order.TotalPower,
                                          TotalMoney=order.TotalMoney, DisputeReason=reason))
    return CheckChargeOrdersResponse(
        CheckOrderSeq=request.CheckOrderSeq, StartTime=request.StartTime, EndTime=request.EndTime,
        TotalDisputeOrder=len(disputed), TotalDisputePower=sum((d.TotalPower for d in disputed), Decimal(0)),
        TotalDisputeMoney=sum((d.TotalMoney for d in disputed), Decimal(0)), DisputeOrders=disputed)
