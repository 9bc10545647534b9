"""The final order (``notification_charge_order_info``) and the daily reconciliation
(``check_charge_orders``: the host answers with the orders it disputes)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from adapters.interconnect.tcec.fields import ConnectorId, Energy, Int, Money, SeqId, Time
from adapters.interconnect.tcec.models.base import Model, Reason
from adapters.interconnect.tcec.models.charge import MAX_PERIODS, ChargeDetail, check_details

MAX_ORDERS = 100_000  # a day's orders with one peer; the HTTP door caps the body (docs/interconnect.md)


class ChargeOrderInfo(Model):
    """StopReason: 0 user, 1 customer platform, 2 BMS, 3 charger fault, 4 connector disconnected, 5..99 custom."""

    StartChargeSeq: SeqId
    ConnectorID: ConnectorId
    StartTime: Time
    EndTime: Time
    TotalPower: Energy
    TotalElecMoney: Money
    TotalSeviceMoney: Money  # sic
    TotalMoney: Money
    StopReason: Reason
    SumPeriod: Annotated[Int, Field(ge=0, le=MAX_PERIODS)] = 0
    ChargeDetails: list[ChargeDetail] = Field(default_factory=list, max_length=MAX_PERIODS)

    @model_validator(mode="after")
    def _consistent(self) -> ChargeOrderInfo:
        if self.EndTime < self.StartTime:
            raise ValueError("EndTime is before StartTime")
        check_details(self.SumPeriod, self.ChargeDetails)
        return self


class ChargeOrderAck(Model):
    """ConfirmResult: 0 agreed, 1 disputed, 2..99 custom. Either stops the pushes of this order."""

    StartChargeSeq: SeqId
    ConnectorID: ConnectorId
    ConfirmResult: Reason


class CheckedOrder(Model):
    StartChargeSeq: SeqId
    TotalPower: Energy
    TotalMoney: Money


class CheckChargeOrders(Model):
    CheckOrderSeq: SeqId
    StartTime: Time
    EndTime: Time
    OrderCount: Annotated[Int, Field(ge=0)]
    TotalOrderPower: Energy
    TotalOrderMoney: Money
    ChargeOrders: list[CheckedOrder] = Field(default_factory=list, max_length=MAX_ORDERS)


class DisputedOrder(Model):
    """DisputeReason: 1 order not found, 2 amount wrong, 3 energy wrong, 4..99 custom."""

    StartChargeSeq: SeqId
    TotalPower: Energy
    TotalMoney: Money
    DisputeReason: Annotated[Int, Field(ge=1, le=99)]


class CheckChargeOrdersResponse(Model):
    CheckOrderSeq: SeqId
    StartTime: Time
    EndTime: Time
    TotalDisputeOrder: Annotated[Int, Field(ge=0)]
    TotalDisputePower: Energy
    TotalDisputeMoney: Money
    DisputeOrders: list[DisputedOrder] = Field(default_factory=list, max_length=MAX_ORDERS)
