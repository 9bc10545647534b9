"""``query_token``: a caller trades the ``OperatorSecret`` we issued it for a Bearer token."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from adapters.interconnect.tcec.fields import Int, OperatorId, Text
from adapters.interconnect.tcec.models import codes
from adapters.interconnect.tcec.models.base import Model, Reason


class TokenFailReason:
    NONE = 0
    UNKNOWN_OPERATOR = 1  # 无此运营商
    WRONG_SECRET = 2  # 密钥错误


class TokenRequest(Model):
    OperatorID: OperatorId
    OperatorSecret: Annotated[Text(64), Field(min_length=1, repr=False)]


class TokenResponse(Model):
    OperatorID: OperatorId
    SuccStat: codes.SuccStat
    AccessToken: Annotated[Text(256), Field(repr=False)] = ""
    TokenAvailableTime: Annotated[Int, Field(ge=0)] = 0  # seconds
    FailReason: Reason = 0
