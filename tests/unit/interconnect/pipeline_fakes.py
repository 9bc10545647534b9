"""An in-memory directory and envelope maker for the receive pipeline's unit tests."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

from adapters.interconnect.tcec import wire
from adapters.interconnect.tcec.dialect import Dialect
from adapters.interconnect.tcec.envelope import format_timestamp
from adapters.interconnect.tcec.interfaces import Role
from adapters.interconnect.tcec.peer import Credentials, Peer

NOW = datetime(2026, 3, 1, 4, 0, 0, tzinfo=timezone.utc)  # 12:00 in Shanghai


def make_peer(operator_id: str = "MA1G55M8X", role: Role = Role.CUSTOMER, tenant: UUID | None = None,
              credentials: Credentials | None = None) -> Peer:
    return Peer(uuid.uuid4(), tenant or uuid.uuid4(), operator_id, "OURS00001", operator_id, "http://peer/evcs/v1",
                role, Dialect.TCEC2016, 7200, True, credentials or Credentials.generate(), None)


@dataclass
class MemoryDirectory:
    peers: list[Peer] = field(default_factory=list)
    tokens: dict[str, tuple[UUID, datetime]] = field(default_factory=dict)
    seen: set[tuple[UUID, bytes]] = field(default_factory=set)

    def peers_by_operator(self, operator_id: str) -> Sequence[Peer]:
        return [p for p in self.peers if p.operator_id == operator_id and p.enabled]

    def token_owner(self, token: str, now: datetime) -> UUID | None:
        owner = self.tokens.get(token)
        return owner[0] if owner and owner[1] > now else None

    def first_sight(self, peer: Peer, fingerprint: bytes, keep_until: datetime) -> bool:
        if (peer.peer_id, fingerprint) in self.seen:
            return False
        self.seen.add((peer.peer_id, fingerprint))
        return True

    def forget(self, peer: Peer, fingerprint: bytes) -> None:
        self.seen.discard((peer.peer_id, fingerprint))


def envelope(peer: Peer, data: Any, *, at: datetime = NOW, seq: str = "0001", raw_data: str | None = None,
             sig: str | None = None, operator_id: str | None = None) -> dict[str, str]:
    """A request body signed with the peer's inbound set (what the peer calls us with)."""
    keys = peer.inbound.keys
    text = raw_data if raw_data is not None else keys.encrypt(wire.dumps(data).encode("utf-8"))
    timestamp = format_timestamp(at)
    operator = operator_id or peer.operator_id
    return {"OperatorID": operator, "Data": text, "TimeStamp": timestamp, "Seq": seq,
            "Sig": sig or keys.request_sig(operator, text, timestamp, seq)}


def body(value: Any) -> bytes:
    return wire.dumps(value).encode("utf-8")
