"""Every interface of T/CEC 102 we speak: its request and answer models, who may call it, whether a
call may be repeated blindly (note A.6).

Roles are the peer's, seen from us: a **customer** platform (客户归属运营商: its users charge on our
piles; we are its infrastructure operator), a **regulator** (监管平台: reads, and mostly receives our
pushes), an **infrastructure** operator (基础设施运营商: our drivers roam onto its piles; we are its
customer platform). The infrastructure side hosts ``query_*``; the customer side hosts
``notification_*`` and ``check_charge_orders``; either hosts ``query_token``.

``idempotent`` is False only for the calls that change a charge (``query_start_charge``,
``query_stop_charge``): those are never sent twice by the client on its own, whatever the error.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from adapters.interconnect.tcec.models import charge, orders, policy, stations, status, token
from adapters.interconnect.tcec.models.base import Model


class Role(str, Enum):
    CUSTOMER = "customer"
    REGULATOR = "regulator"
    INFRASTRUCTURE = "infrastructure"


ANYONE = frozenset(Role)
READERS = frozenset({Role.CUSTOMER, Role.REGULATOR})
CUSTOMERS = frozenset({Role.CUSTOMER})
INFRASTRUCTURES = frozenset({Role.INFRASTRUCTURE})
TOKEN = "query_token"


@dataclass(frozen=True)
class Interface:
    name: str
    request: type[Model]
    response: type[Model]
    callers: frozenset[Role]
    idempotent: bool = True

    @property
    def needs_token(self) -> bool:
        return self.name != TOKEN


INTERFACES: dict[str, Interface] = {i.name: i for i in (
    Interface(TOKEN, token.TokenRequest, token.TokenResponse, ANYONE),
    # we are the infrastructure operator: our piles, their users (or a regulator reading)
    Interface("query_stations_info", stations.StationsInfoRequest, stations.StationsInfoResponse, READERS),
    Interface("query_station_status", status.StationStatusRequest, status.StationStatusResponse, READERS),
    Interface("query_station_stats", status.StationStatsRequest, status.StationStatsResponse, READERS),
    Interface("query_equip_auth", policy.EquipAuthRequest, policy.EquipAuthResponse, CUSTOMERS),
    Interface("query_equip_business_policy", policy.BusinessPolicyRequest, policy.BusinessPolicyResponse,
              CUSTOMERS),
    Interface("query_start_charge", charge.StartChargeRequest, charge.StartChargeResponse, CUSTOMERS,
              idempotent=False),
    Interface("query_equip_charge_status", charge.ChargeStatusRequest, charge.ChargeStatus, CUSTOMERS),
    Interface("query_stop_charge", charge.StopChargeRequest, charge.StopChargeResponse, CUSTOMERS,
              idempotent=False),
    # we are the customer platform: their piles, our drivers
    Interface("notification_stationStatus", status.StationStatusNotification, status.StationStatusAck,
              INFRASTRUCTURES),
    Interface("notification_stationInfo", stations.StationInfoNotification, stations.StationInfoAck,
              INFRASTRUCTURES),  # the 2021 edition; what regulators ask of us
    Interface("notification_start_charge_result", charge.StartChargeResult, charge.ResultAck, INFRASTRUCTURES),
    Interface("notification_equip_charge_status", charge.ChargeStatus, charge.ResultAck, INFRASTRUCTURES),
    Interface("notification_stop_charge_result", charge.StopChargeResult, charge.ResultAck, INFRASTRUCTURES),
    Interface("notification_charge_order_info", orders.ChargeOrderInfo, orders.ChargeOrderAck, INFRASTRUCTURES),
    Interface("check_charge_orders", orders.CheckChargeOrders, orders.CheckChargeOrdersResponse, INFRASTRUCTURES),
)}
