"""The value types of T/CEC business fields, each with its rule, shared by every model.

* **Ids are text.** A JSON number where an id belongs is refused, not converted: a number cannot
  carry the leading zeros ids often have, so ``"0012"`` sent as ``12`` would name another connector.
  ``OperatorID`` is 9 letters or digits, a sequence id (``StartChargeSeq``, ``EquipAuthSeq``,
  ``EquipBizSeq``, ``CheckOrderSeq``) 27 ("OperatorID + unique number"), ``StationID`` at most 20,
  ``EquipmentID`` at most 23, ``ConnectorID`` at most 26 characters.
* **Money, prices, energy, measures and coordinates are Decimal**, never float (:mod:`.wire` parses
  numbers that way): money at most 2 decimal places (yuan), prices 4 (yuan/kWh), energy 4 (kWh; the
  standard writes 2, our piles measure 0.0001), measures 4, coordinates 6. A value with more places
  than its field allows is refused, never rounded: rounding someone else's money is not our call.
* **Integers are integers**: ``true`` is not 1; a quoted ``"1"`` is taken, as Java peers send it.
* **Times** are aware instants in Asia/Shanghai on our side and ``yyyy-MM-dd HH:mm:ss`` on the wire;
  a date ``yyyy-MM-dd``; a policy start ``HHmmss``.
* **Text** has no control characters, surrogates or bidirectional overrides (``domain.text``'s rule)
  and at most the field's length.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, PlainSerializer
from pydantic_core import PydanticCustomError

from adapters.interconnect.tcec.envelope import SHANGHAI
from domain.text import REFUSED

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
DATE_FORMAT = "%Y-%m-%d"


def _error(error_type: str, message: str, /, **context: Any) -> PydanticCustomError:
    return PydanticCustomError(error_type, message, context or None)


# ---- ids and text ---------------------------------------------------------------------------------------
def _id(pattern: str, rule: str) -> Any:
    compiled = re.compile(pattern)

    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise _error("tcec_id_type", "ids are JSON strings, not {kind} (leading zeros would be lost)",
                         kind=type(value).__name__)
        if not compiled.fullmatch(value):
            raise _error("tcec_id", "must be " + rule)
        return value

    return Annotated[str, BeforeValidator(check)]


OperatorId = _id(r"[0-9A-Za-z]{9}", "9 letters or digits (an organisation code)")
SeqId = _id(r"[0-9A-Za-z]{27}", "27 letters or digits (OperatorID + a unique number)")
StationId = _id(r"[\x21-\x7e]{1,20}", "1 to 20 visible ASCII characters")
EquipmentId = _id(r"[\x21-\x7e]{1,23}", "1 to 23 visible ASCII characters")
ConnectorId = _id(r"[\x21-\x7e]{1,26}", "1 to 26 visible ASCII characters")
AreaCode = _id(r"\d{6}", "6 digits (GB/T 2260)")
CountryCode = _id(r"[A-Z]{2}", "2 capital letters (CN)")


def Text(limit: int) -> Any:  # noqa: N802 (a type)
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise _error("tcec_text_type", "must be a JSON string")
        found = REFUSED.search(value)
        if found is not None:
            raise _error("tcec_text", "contains U+{code}: control characters, surrogates and bidirectional "
                         "overrides are not allowed", code=f"{ord(found.group()):04X}")
        if len(value) > limit:
            raise _error("tcec_text_length", "has at most {limit} characters", limit=limit)
        return value

    return Annotated[str, BeforeValidator(check)]


# ---- numbers --------------------------------------------------------------------------------------------
def _integer(value: Any) -> Any:
    if isinstance(value, bool):
        raise _error("tcec_int_type", "must be an integer, not true/false")
    return value


Int = Annotated[int, BeforeValidator(_integer)]


def _decimal(places: int, low: Decimal, high: Decimal, what: str) -> Any:
    quantum = Decimal(1).scaleb(-places)

    def before(value: Any) -> Any:
        if isinstance(value, (bool, float)):
            raise _error("tcec_decimal_type", "must be an exact decimal number")
        if isinstance(value, str):
            try:
                return Decimal(value.strip())
            except ArithmeticError:
                raise _error("tcec_decimal_type", "must be a decimal number") from None
        return value

    def after(value: Decimal) -> Decimal:
        if not value.is_finite():
            raise _error("tcec_decimal", "must be a finite number")
        if not low <= value <= high:
            raise _error("tcec_decimal_range", "{what} must be between {low} and {high}", what=what,
                         low=str(low), high=str(high))
        if value.quantize(quantum) != value:
            raise _error("tcec_decimal_places", "{what} has at most {places} decimal places", what=what,
                         places=places)
        return value  # as the sender wrote it (12.3 stays 12.3; equal to 12.30 all the same)

    return Annotated[Decimal, BeforeValidator(before), AfterValidator(after)]


Money = _decimal(2, Decimal(0), Decimal("99999999.99"), "money (yuan)")
SignedMoney = _decimal(2, Decimal("-99999999.99"), Decimal("99999999.99"), "money (yuan)")
Price = _decimal(4, Decimal(0), Decimal("9999.9999"), "a price (yuan/kWh)")
Energy = _decimal(4, Decimal(0), Decimal("99999999.9999"), "energy (kWh)")
Measure = _decimal(4, Decimal("-999999.9999"), Decimal("999999.9999"), "a measure")
Longitude = _decimal(6, Decimal(-180), Decimal(180), "a longitude")
Latitude = _decimal(6, Decimal(-90), Decimal(90), "a latitude")


# ---- times ----------------------------------------------------------------------------------------------
def _parse_time(value: Any) -> Any:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise _error("tcec_time_type", "must be text yyyy-MM-dd HH:mm:ss")
    try:
        return datetime.strptime(value, TIME_FORMAT).replace(tzinfo=SHANGHAI)
    except ValueError:
        raise _error("tcec_time", "must be yyyy-MM-dd HH:mm:ss") from None


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise _error("tcec_time_naive", "needs a time zone")
    return value.astimezone(SHANGHAI).replace(microsecond=0)


Time = Annotated[datetime, BeforeValidator(_parse_time), AfterValidator(_aware),  # (isoformat: 4-digit years)
                 PlainSerializer(lambda v: v.astimezone(SHANGHAI).isoformat(sep=" ")[:19], return_type=str)]


def _parse_date(value: Any) -> Any:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise _error("tcec_date_type", "must be text yyyy-MM-dd")
    try:
        return datetime.strptime(value, DATE_FORMAT).date()
    except ValueError:
        raise _error("tcec_date", "must be yyyy-MM-dd") from None


Date = Annotated[date, BeforeValidator(_parse_date), PlainSerializer(lambda v: v.isoformat(), return_type=str)]


def _day_time(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"([01]\d|2[0-3])[0-5]\d[0-5]\d", value):
        raise _error("tcec_day_time", "must be HHmmss (000000 to 235959)")
    return value


DayTime = Annotated[str, BeforeValidator(_day_time)]
