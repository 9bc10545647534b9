"""What the HTTP API accepts, and what it answers when it refuses: shared by every router.

Every string a request carries (a body field, a query or path parameter) is one of the types built by
:func:`text` or :func:`identifier`, so one rule holds everywhere and is checked once, by pydantic,
before an endpoint runs: a refusal is ``422 validation_error`` naming the field.

* No control characters: C0 (U+0000-U+001F) and DEL, except tab, LF and CR in the fields that are free
  text over several lines (an address, a note); C1 (U+0080-U+009F); the Unicode line and paragraph
  separators in one-line fields; bidi embeddings, overrides and isolates (U+202A-U+202E,
  U+2066-U+2069), which make text display as something other than what it is; lone surrogates
  (JSON can carry ``\\ud800``; no database can store it).
* A length bound on every string (none is unbounded), and a character set where the value is an id.
* Integers bounded by what Postgres ``bigint`` holds where they reach a query; instants within years
  1970-2999; a time zone one the IANA database has.

Also here: the error body every refusal has (:class:`ErrorBody`) and :func:`responses`, which documents
in OpenAPI each status a route can answer with a real example of that status's body.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Annotated, Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StringConstraints,
)
from pydantic_core import PydanticCustomError, core_schema

BIGINT_MAX = 2**63 - 1  # the largest value a Postgres bigint holds
MULTILINE = "\t\n\r"
# one-line text: everything but these (JSON Schema / ECMA regex syntax, for the OpenAPI document)
_REFUSED = r"\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_REFUSED_MULTILINE = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069"
_BIDI = set(range(0x202A, 0x202F)) | set(range(0x2066, 0x206A))


def refused_character(value: str, allowed: str = "") -> tuple[int, str] | None:
    """The first character of ``value`` no API string may hold (position, character), or None."""
    for i, ch in enumerate(value):
        c = ord(ch)
        if ch in allowed:
            continue
        if c < 0x20 or 0x7F <= c <= 0x9F or c in (0x2028, 0x2029) or c in _BIDI or 0xD800 <= c <= 0xDFFF:
            return i, ch
    return None


@dataclass(frozen=True)
class NoControlCharacters:
    """Pydantic metadata: refuse control, bidi and surrogate characters; say so in the JSON schema."""

    multiline: bool = False

    def check(self, value: str) -> str:
        found = refused_character(value, MULTILINE if self.multiline else "")
        if found is not None:
            raise PydanticCustomError("control_character",
                                      "must not contain control or bidi characters (found U+{code:04X} at {at})",
                                      {"code": ord(found[1]), "at": found[0]})
        return value

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler) -> Any:
        out = handler(schema)
        out.setdefault("pattern", f"^[^{_REFUSED_MULTILINE if self.multiline else _REFUSED}]*$")
        return out


def text(max_length: int, *, min_length: int = 0, multiline: bool = False) -> Any:
    """A string of free text (a name, a reason, a note): bounded, no control characters (see module doc)."""
    return Annotated[str, StringConstraints(min_length=min_length, max_length=max_length),
                     NoControlCharacters(multiline)]


def identifier(pattern: str = r"^[A-Za-z0-9_.:@-]+$", max_length: int = 128) -> Any:
    """An id a client passes back (an order, an alarm, a refund...): a safe character set, bounded."""
    return Annotated[str, StringConstraints(min_length=1, max_length=max_length, pattern=pattern)]


def _known_time_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise PydanticCustomError("unknown_time_zone", "not a time zone of the IANA database: {name}",
                                  {"name": name}) from None
    return name


EARLIEST, LATEST = datetime(1970, 1, 1, tzinfo=timezone.utc), datetime(2999, 12, 31, tzinfo=timezone.utc)


def _instant(value: datetime) -> datetime:
    """An instant within 1970-2999 (UTC when no offset is given), so any zone's local time of it exists."""
    value = value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
    if not EARLIEST <= value <= LATEST:
        raise PydanticCustomError("instant_out_of_range", "must be between 1970 and 2999")
    return value


ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _iso_text(value: Any) -> Any:
    """Only ISO 8601 text (``2026-11-22``, ``2026-11-22T08:00:00+08:00``): pydantic would also read a bare
    number as a Unix time, which the OpenAPI document (``format: date-time``) does not promise."""
    if isinstance(value, str | bytes) and not ISO_DATE.match(value if isinstance(value, str) else value.decode()):
        raise PydanticCustomError("iso_format", "an ISO 8601 date or instant, e.g. 2026-11-22T08:00:00+08:00")
    return value


UUID_TEXT = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
DECIMAL = re.compile(r"-?[0-9]{1,19}")


def _uuid_text(value: Any) -> Any:
    """Only the hyphenated form the OpenAPI document promises (``format: uuid``), not pydantic's other readings."""
    if isinstance(value, str) and not UUID_TEXT.fullmatch(value):
        raise PydanticCustomError("uuid_format", "a UUID, e.g. 3fa85f64-5717-4562-b3fc-2c963f66afa6")
    return value


def _decimal_text(value: Any) -> Any:
    """Only decimal digits for an integer given as text (a query parameter): not ``1.0``, ``+5``, ``5_000``."""
    if isinstance(value, str) and not DECIMAL.fullmatch(value):
        raise PydanticCustomError("int_format", "an integer in decimal digits")
    return value


def _day(value: date) -> date:
    if not EARLIEST.date() <= value <= LATEST.date():
        raise PydanticCustomError("date_out_of_range", "must be between 1970 and 2999")
    return value


# ---- the types the routers use ----------------------------------------------------------------------
Name = text(200, min_length=1)
Address = text(500, multiline=True)
Reason = text(500)
RequiredReason = text(500, min_length=1)
Note = text(500, multiline=True)
TimeZone = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_+\-/]+$"),
                     AfterValidator(_known_time_zone)]
PileNo = identifier(r"^\d{14}$", 14)  # a YKC pile number
TradeNo = identifier(max_length=64)  # an order (trade serial); a top-up's out_trade_no
AlarmId = identifier(max_length=200)
AlarmKind = identifier(r"^[a-z_]+$", 64)
DriverId = identifier(max_length=200)  # "<provider>:<channel>:<openid>", or an operator's own id
RefundId = identifier(r"^[A-Za-z0-9_-]+$", 64)
ChannelName = identifier(r"^[A-Za-z0-9_-]+$", 32)
Uuid = Annotated[UUID, BeforeValidator(_uuid_text)]
Int = Annotated[int, BeforeValidator(_decimal_text)]
Cursor = Annotated[int, BeforeValidator(_decimal_text), Field(ge=1, le=BIGINT_MAX)]
Fen = Annotated[int, Field(gt=0, le=10**10)]  # at most 100 million yuan in one request
Instant = Annotated[datetime, BeforeValidator(_iso_text), AfterValidator(_instant)]
Day = Annotated[date, BeforeValidator(_iso_text), AfterValidator(_day)]


# ---- what a refusal looks like -----------------------------------------------------------------------
class ErrorBody(BaseModel):
    """Every refusal: a stable code, a message for people, and details (the fields, for a 422)."""

    code: str
    message: str
    details: Any = None


def error(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"code": code, "message": message, **({"details": details} if details else {})}


DESCRIPTIONS = {400: "the body could not be read (not UTF-8 JSON)", 401: "no token, or a bad or expired one", 403: "this role or token may not do this",
                404: "not found, or not in your scope", 409: "refused by a domain rule", 413: "body too large",
                422: "invalid input (details name the fields)", 429: "too many requests; try again later"}
EXAMPLES = {
    400: error("http_error", "There was an error parsing the body"),
    401: error("missing_token", "send Authorization: Bearer <token>"),
    403: error("forbidden_role", "a agent may not do this"),
    404: error("not_found", "no pile 32010600019236", {"pile_no": "32010600019236"}),
    409: error("invalid_state_transition", "session is finished; cannot request_stop"),
    413: error("body_too_large", "the request body is larger than 8192 bytes"),
    422: error("validation_error", "the request is not valid",
               [{"field": "body.name", "message": "must not contain control or bidi characters (found U+0000 at 4)"}]),
    429: error("too_many_requests", "too many requests; try again later"),
}


def responses(body: Any = None, status: int = 200, *errors: int, media_type: str = "application/json",
              **examples: dict[str, Any]) -> dict[int | str, Any]:
    """OpenAPI ``responses``: the success example and, per error status, the body that status really has.

    ``examples`` override a status's example by name, e.g. ``e409=error("insufficient_funds", ...)``.
    """
    out: dict[int | str, Any] = {}
    if body is not None:
        out[status] = {"content": {media_type: {"example": body}}}
    for code in errors:
        example = examples.get(f"e{code}", EXAMPLES[code])
        out[code] = {"description": DESCRIPTIONS[code], "model": ErrorBody,
                     "content": {"application/json": {"example": example}}}
    return out


BAD_BODY = responses(None, 200, 400)  # on a router: a body that is not UTF-8 JSON, before any validation
WRONG_ROLE = error("wrong_token_role", "a tenant_admin token is not accepted here")
