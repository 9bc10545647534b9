"""We as infrastructure operator, what a customer platform does for its users: check a connector
(``query_equip_auth``), read its prices (``query_equip_business_policy``), start, watch and stop a charge
(``query_start_charge``, ``query_equip_charge_status``, ``query_stop_charge``; roaming.py).
"""

from __future__ import annotations

from adapters.interconnect.amounts import Unrepresentable, policy_infos
from adapters.interconnect.handlers.stations import bad
from adapters.interconnect.handlers.table import handlers
from adapters.interconnect.roaming import Roaming, gun_of
from adapters.interconnect.tcec.models.charge import (ChargeStatus, ChargeStatusRequest, StartChargeRequest,
                                                      StartChargeResponse, StopChargeRequest, StopChargeResponse)
from adapters.interconnect.tcec.models.codes import SuccStat
from adapters.interconnect.tcec.models.policy import (BusinessPolicyRequest, BusinessPolicyResponse, EquipAuthRequest,
                                                      EquipAuthResponse)
from adapters.interconnect.tcec.routing import Call
from domain.errors import InvalidTariff

NOT_PLUGGED, CHECK_FAILED = 1, 2  # query_equip_auth FailReason (the standard's)
NO_POLICY, PRICES_NEED_FIVE_DECIMALS = 1, 2  # query_equip_business_policy FailReason: the standard's, then ours


def roaming(call: Call) -> Roaming:
    return Roaming(call.services.ledger, call.services.store)


@handlers.handles("query_equip_auth")
def equip_auth(call: Call) -> EquipAuthResponse:
    """Ready to start: the tenant's gun, its pile online and enabled, no fault, not charging (else 2,
    equipment check failed), and a plug in (else 1), as the pile link last reported it."""
    request: EquipAuthRequest = call.request

    def answer(reason: int) -> EquipAuthResponse:
        return EquipAuthResponse(EquipAuthSeq=request.EquipAuthSeq, ConnectorID=request.ConnectorID,
                                 SuccStat=SuccStat.FAILURE if reason else SuccStat.SUCCESS, FailReason=reason)

    gun = gun_of(call.services.ledger, call.peer.tenant_id, request.ConnectorID)
    if gun is None or gun.pile.not_ready_because(gun.gun_no):
        return answer(CHECK_FAILED)
    return answer(0 if gun.pile.guns[str(gun.gun_no)]["plugged"] else NOT_PLUGGED)


@handlers.handles("query_equip_business_policy")
def business_policy(call: Call) -> BusinessPolicyResponse:
    """The tariff in force on the connector's pile as PolicyInfos (amounts.policy_infos): FailReason 1 for
    a connector that is not ours or has no tariff, 2 for prices with a fifth decimal (never rounded)."""
    request: BusinessPolicyRequest = call.request

    def failed(reason: int) -> BusinessPolicyResponse:
        return BusinessPolicyResponse(EquipBizSeq=request.EquipBizSeq, ConnectorID=request.ConnectorID,
                                      SuccStat=SuccStat.FAILURE, FailReason=reason)

    ledger = call.services.ledger
    gun = gun_of(ledger, call.peer.tenant_id, request.ConnectorID)
    if gun is None:
        return failed(NO_POLICY)
    try:
        infos = policy_infos(ledger.tariff_for(gun.pile).schedule)
    except InvalidTariff:
        return failed(NO_POLICY)
    except Unrepresentable:
        return failed(PRICES_NEED_FIVE_DECIMALS)
    return BusinessPolicyResponse(EquipBizSeq=request.EquipBizSeq, ConnectorID=request.ConnectorID,
                                  SuccStat=SuccStat.SUCCESS, SumPeriod=len(infos), PolicyInfos=infos)


@handlers.handles("query_start_charge")
def start_charge(call: Call) -> StartChargeResponse:
    request: StartChargeRequest = call.request
    return roaming(call).start(call.peer, request.StartChargeSeq, request.ConnectorID, call.now)


@handlers.handles("query_equip_charge_status")
def charge_status(call: Call) -> ChargeStatus:
    """The session's snapshot (charges.snapshot); a StartChargeSeq the peer never started here is 4004."""
    request: ChargeStatusRequest = call.request
    start = call.services.store.starts.find(call.peer.peer_id, request.StartChargeSeq)
    if start is None:
        raise bad(f"no charge {request.StartChargeSeq} was started here by {call.peer.operator_id}")
    return roaming(call).status(start)


@handlers.handles("query_stop_charge")
def stop_charge(call: Call) -> StopChargeResponse:
    request: StopChargeRequest = call.request
    return roaming(call).stop(call.peer, request.StartChargeSeq, request.ConnectorID, call.now)
