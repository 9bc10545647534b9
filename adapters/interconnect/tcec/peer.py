"""A peer platform as the protocol needs it: who it is, what it may call, and the secrets of each direction.

T/CEC has each side issue credentials to the other (note A.1), so a link holds two sets:

* ``inbound``: what the peer uses to call **us**; we issued all four secrets (``OperatorSecret``
  buys its token at our ``query_token``; ``DataSecret``/``DataSecretIV`` encrypt, ``SigSecret``
  signs its requests and our answers to them);
* ``outbound``: what **we** use to call the peer, as it issued them to us (None until it has).

The store (``adapters.interconnect.store``) keeps both sealed at rest; in memory they live here.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from adapters.interconnect.tcec.codec import KeySet
from adapters.interconnect.tcec.dialect import Dialect
from adapters.interconnect.tcec.interfaces import Role

_ALPHABET = string.ascii_letters + string.digits


def random_secret(length: int = 16) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


@dataclass(frozen=True)
class Credentials:
    """One direction's four secrets (16 ASCII characters each when we make them)."""

    operator_secret: str = field(repr=False)
    data_secret: str = field(repr=False)
    data_iv: str = field(repr=False)
    sig_secret: str = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.operator_secret, str) or not 1 <= len(self.operator_secret) <= 64:
            raise ValueError("operator_secret must be 1 to 64 characters")
        self.keys  # noqa: B018 (checks the AES key, IV and signing secret)

    @property
    def keys(self) -> KeySet:
        return KeySet(self.data_secret, self.data_iv, self.sig_secret)

    @classmethod
    def generate(cls) -> Credentials:
        return cls(random_secret(), random_secret(), random_secret(), random_secret())

    def as_dict(self) -> dict[str, str]:
        """The names the standard gives them (what an operator hands to the peer's engineers)."""
        return {"OperatorSecret": self.operator_secret, "DataSecret": self.data_secret,
                "DataSecretIV": self.data_iv, "SigSecret": self.sig_secret}

    @classmethod
    def from_dict(cls, value: Any) -> Credentials:
        names = ("OperatorSecret", "DataSecret", "DataSecretIV", "SigSecret")
        if not isinstance(value, dict) or any(not isinstance(value.get(n), str) for n in names):
            raise ValueError("credentials are a JSON object with the strings " + ", ".join(names))
        return cls(*(value[n] for n in names))


@dataclass(frozen=True)
class Peer:
    peer_id: UUID
    tenant_id: UUID
    operator_id: str  # the peer's OperatorID
    our_operator_id: str  # ours, as this peer knows us (the OperatorID of our envelopes to it)
    name: str
    base_url: str  # e.g. https://evcs.example.com/evcs/v1 (the interface name is appended)
    role: Role
    dialect: Dialect  # the spelling we send it
    token_lifetime: int  # seconds, for the tokens we issue it
    enabled: bool
    inbound: Credentials
    outbound: Credentials | None
    status_interval: int = 60  # seconds between notification_equip_charge_status pushes (0: none)

    def url(self, interface: str) -> str:
        return f"{self.base_url.rstrip('/')}/{interface}"
