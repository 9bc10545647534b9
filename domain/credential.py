"""A charging card or a vehicle VIN bound to a driver's wallet, for starts made at the pile (0x31).

The pile sends only the card number or the VIN, so the aggregate id is derived from them (like a
pile's from its number): the link finds the wallet without an index. One card or VIN belongs to at
most one wallet platform-wide; unbinding keeps the history.
"""

from __future__ import annotations

import re
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import InvalidRegistration
from domain.ids import derived_id

KINDS = ("card", "vin")
_FORMATS = {"card": re.compile(r"^[0-9A-F]{16}$"), "vin": re.compile(r"^[A-HJ-NPR-Z0-9]{17}$")}


def normalise(kind: str, value: str) -> str:
    if kind not in KINDS:
        raise InvalidRegistration(f"credential kind is card or vin, got {kind!r}")
    value = value.strip().upper()
    if not _FORMATS[kind].match(value):
        what = "a card number is 16 hex digits (8 bytes)" if kind == "card" else "a VIN is 17 characters"
        raise InvalidRegistration(f"{what}, got {value!r}")
    return value


class Credential(Aggregate):
    @staticmethod
    def create_id(kind: str, value: str) -> UUID:
        return derived_id("credential", kind, normalise(kind, value))

    @event("Bound")
    def __init__(self, kind: str, value: str, tenant_id: UUID, wallet_id: UUID, author: str) -> None:
        self.kind = kind
        self.value = value
        self.tenant_id = tenant_id
        self.wallet_id: UUID | None = wallet_id

    @classmethod
    def bind(cls, kind: str, value: str, tenant_id: UUID, wallet_id: UUID, author: str) -> Credential:
        return cls(kind=kind, value=normalise(kind, value), tenant_id=tenant_id, wallet_id=wallet_id, author=author)

    @event("Unbound")
    def unbind(self, author: str) -> None:
        self.wallet_id = None
