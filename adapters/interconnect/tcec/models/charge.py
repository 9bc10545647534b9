"""A charge on another platform's behalf: start, its result, the live snapshot, stop, its result.

``StartChargeSeq`` (27 characters, the caller's OperatorID first) names the session on both sides and
is the idempotency key of every call about it. The snapshot is one object for the pull
(``query_equip_charge_status``) and the push (``notification_equip_charge_status``); Xiaoju spells
its ``ElecMoney`` ``ElectMoney`` in the pull (dialect.py).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from adapters.interconnect.tcec.fields import ConnectorId, Energy, Int, Measure, Money, Price, SeqId, Text, Time
from adapters.interconnect.tcec.models import codes
from adapters.interconnect.tcec.models.base import Model, Reason

MAX_PERIODS = 32


class StartChargeRequest(Model):
    StartChargeSeq: SeqId
    ConnectorID: ConnectorId
    QRCode: Text(200) | None = None


class StartChargeResponse(Model):
    """FailReason: 0 none, 1 no such device, 2 device offline, 3..99 custom."""

    StartChargeSeq: SeqId
    StartChargeSeqStat: codes.StartChargeSeqStat
    ConnectorID: ConnectorId
    SuccStat: codes.SuccStat
    FailReason: Reason = 0


class StartChargeResult(Model):
    """``notification_start_charge_result``. IdentCode: the code a user may key in at the pile to stop."""

    StartChargeSeq: SeqId
    StartChargeSeqStat: codes.StartChargeSeqStat
    ConnectorID: ConnectorId
    StartTime: Time
    IdentCode: Text(32) | None = None


class ResultAck(Model):
    """The answer to a start or stop result (and to a snapshot push): FailReason 1 receive failed."""

    StartChargeSeq: SeqId
    SuccStat: codes.SuccStat
    FailReason: Reason = 0


class ChargeStatusRequest(Model):
    StartChargeSeq: SeqId


class ChargeDetail(Model):
    DetailStartTime: Time
    DetailEndTime: Time
    ElecPrice: Price
    SevicePrice: Price  # sic
    DetailPower: Energy
    DetailElecMoney: Money
    DetailSeviceMoney: Money  # sic

    @model_validator(mode="after")
    def _ordered(self) -> ChargeDetail:
        if self.DetailEndTime < self.DetailStartTime:
            raise ValueError("DetailEndTime is before DetailStartTime")
        return self


def check_details(sum_period: int, details: list[ChargeDetail]) -> None:
    if details and sum_period != len(details):
        raise ValueError(f"SumPeriod is {sum_period} but {len(details)} ChargeDetails are given")


class ChargeStatus(Model):
    """The live snapshot of one session (pull answer and periodic push)."""

    StartChargeSeq: SeqId
    StartChargeSeqStat: codes.StartChargeSeqStat
    ConnectorID: ConnectorId
    ConnectorStatus: codes.ConnectorStatus
    CurrentA: Measure  # A; DC output in phase A
    CurrentB: Measure | None = None
    CurrentC: Measure | None = None
    VoltageA: Measure  # V
    VoltageB: Measure | None = None
    VoltageC: Measure | None = None
    Soc: Measure | None = None  # 0..100 or 0..1 by peer: agreed per link
    StartTime: Time
    EndTime: Time  # the last sample's time
    TotalPower: Energy  # kWh
    ElecMoney: Money | None = None  # "ElectMoney" accepted
    SeviceMoney: Money | None = None  # sic
    TotalMoney: Money
    SumPeriod: Annotated[Int, Field(ge=0, le=MAX_PERIODS)] = 0
    ChargeDetails: list[ChargeDetail] = Field(default_factory=list, max_length=MAX_PERIODS)

    @model_validator(mode="after")
    def _consistent(self) -> ChargeStatus:
        if self.EndTime < self.StartTime:
            raise ValueError("EndTime is before StartTime")
        check_details(self.SumPeriod, self.ChargeDetails)
        return self


class StopChargeRequest(Model):
    StartChargeSeq: SeqId
    ConnectorID: ConnectorId


class StopChargeResponse(Model):
    """FailReason: 0 none, 1 no such device, 2 offline, 3 already stopped, 4..99 custom."""

    StartChargeSeq: SeqId
    StartChargeSeqStat: codes.StartChargeSeqStat
    SuccStat: codes.SuccStat
    FailReason: Reason = 0


class StopChargeResult(Model):
    """``notification_stop_charge_result``."""

    StartChargeSeq: SeqId
    StartChargeSeqStat: codes.StartChargeSeqStat
    ConnectorID: ConnectorId
    SuccStat: codes.SuccStat
    FailReason: Reason = 0
