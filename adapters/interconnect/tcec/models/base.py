"""What every T/CEC business model shares: field names as on the wire, unknown fields ignored.

Attributes carry the standard's 2016 names (``StationID``, ``SevicePrice`` with its typo), so a
model reads like the interface table it implements; :mod:`..dialect` renames other spellings on the
way in and the peer's spelling on the way out. Unknown fields (vendor extensions) are ignored.
Fields we do not have are left out of what we send (``None`` is never written as ``null``).
"""

from __future__ import annotations

from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from adapters.interconnect.tcec.dialect import DialectError, canonical, spelled

Reason = Annotated[int, Field(ge=0, le=99)]  # FailReason and friends: 0 none, then the standard's, then custom


class DataError(ValueError):
    """Business ``Data`` that does not fit its interface's model (Ret 4004); the message names the field."""


class Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, validate_default=False, populate_by_name=True,
                              hide_input_in_errors=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans(cls, value: Any) -> Any:
        """No T/CEC field is a boolean: ``true`` is not 1 (pydantic would take it for one)."""
        if isinstance(value, bool):
            raise PydanticCustomError("tcec_bool", "must be a number or text, not true/false")
        return value

    @classmethod
    def from_wire(cls, value: Any) -> Self:
        """A decoded JSON object (either spelling) as this model, or :class:`DataError` naming the field."""
        if not isinstance(value, dict):
            raise DataError(f"Data must be a JSON object for {cls.__name__}")
        try:
            return cls.model_validate(canonical(value))
        except DialectError as error:
            raise DataError(str(error)) from None
        except ValidationError as error:
            raise DataError(describe(error)) from None

    def to_wire(self, names: dict[str, str] | None = None) -> dict[str, Any]:
        """The JSON object to send, spelled with ``names`` (``Dialect.renames(interface)``)."""
        return spelled(self.model_dump(mode="python", exclude_none=True), names or {})


def describe(error: ValidationError, limit: int = 3) -> str:
    """``Field.path: reason`` for the first few problems, in the peer's field names."""
    parts = []
    for problem in error.errors(include_url=False)[:limit]:
        where = ".".join(str(p) for p in problem["loc"]) or "Data"
        parts.append(f"{where}: {problem['msg']}")
    more = error.error_count() - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")
