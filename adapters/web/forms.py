"""Forms validated by the API's own request models, and their errors shown at the field."""

from __future__ import annotations

from typing import Any, TypeVar
from uuid import UUID

from pydantic import BaseModel, ValidationError

from domain.errors import NotFound

Model = TypeVar("Model", bound=BaseModel)


class Invalid(Exception):
    """A form the model refused: ``fields`` maps each field to its message."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()))
        self.fields = fields


def validated(model: type[Model], form: dict[str, str], fields: tuple[str, ...]) -> Model:
    """``model`` from the form's ``fields`` (an empty optional field is left to the model's default)."""
    values: dict[str, Any] = {name: form[name] for name in fields if name in form and form[name] != ""}
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        errors: dict[str, str] = {}
        for e in exc.errors():
            name = str(e["loc"][0]) if e["loc"] else "form"
            errors.setdefault(name, e["msg"])
        raise Invalid(errors) from None


def path_id(value: str, what: str) -> UUID:
    """An id from a page's path; a malformed one is a page that does not exist (404)."""
    try:
        return UUID(value)
    except ValueError:
        raise NotFound(f"no {what} {value[:40]}") from None
