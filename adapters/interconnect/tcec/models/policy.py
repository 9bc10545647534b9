"""Before a start: ``query_equip_auth`` (is the connector ready) and ``query_equip_business_policy``
(its time-of-use prices, one ``PolicyInfo`` per period, each running until the next ``StartTime``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from adapters.interconnect.tcec.fields import ConnectorId, DayTime, Int, Price, SeqId
from adapters.interconnect.tcec.models import codes
from adapters.interconnect.tcec.models.base import Model, Reason

MAX_PERIODS = 32


class EquipAuthRequest(Model):
    EquipAuthSeq: SeqId
    ConnectorID: ConnectorId


class EquipAuthResponse(Model):
    """FailReason: 0 none, 1 gun not plugged in, 2 equipment check failed, 3..99 custom."""

    EquipAuthSeq: SeqId
    ConnectorID: ConnectorId
    SuccStat: codes.SuccStat
    FailReason: Reason = 0


class PolicyInfo(Model):
    StartTime: DayTime  # HHmmss
    ElecPrice: Price  # yuan/kWh, 4 decimals
    SevicePrice: Price  # sic ("ServicePrice" accepted)


class BusinessPolicyRequest(Model):
    EquipBizSeq: SeqId
    ConnectorID: ConnectorId


class BusinessPolicyResponse(Model):
    """FailReason: 0 none, 1 no policy for this connector, 2..99 custom. ``SumPeriod`` counts the periods."""

    EquipBizSeq: SeqId
    ConnectorID: ConnectorId
    SuccStat: codes.SuccStat
    FailReason: Reason = 0
    SumPeriod: Annotated[Int, Field(ge=0, le=MAX_PERIODS)] = 0
    PolicyInfos: list[PolicyInfo] = Field(default_factory=list, max_length=MAX_PERIODS)

    @model_validator(mode="after")
    def _periods(self) -> BusinessPolicyResponse:
        if self.SumPeriod != len(self.PolicyInfos):
            raise ValueError(f"SumPeriod is {self.SumPeriod} but {len(self.PolicyInfos)} PolicyInfos are given")
        starts = [p.StartTime for p in self.PolicyInfos]
        if starts != sorted(set(starts)):
            raise ValueError("PolicyInfos must be in increasing StartTime order, each start once")
        return self
