"""The receive pipeline's :class:`~adapters.interconnect.tcec.receive.Directory` on the tables."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from adapters.interconnect.store.outbox import Outbox
from adapters.interconnect.store.peer_catalogue import PeerCatalogue
from adapters.interconnect.store.peers import Peers
from adapters.interconnect.store.profiles import Profiles
from adapters.interconnect.store.received import Received
from adapters.interconnect.store.roaming import OpenCharges
from adapters.interconnect.store.seen import EnvelopesSeen
from adapters.interconnect.store.starts import Starts
from adapters.interconnect.store.tokens import HeldTokens, IssuedTokens
from adapters.interconnect.tcec.peer import Peer
from adapters.payments.config import SecretBox


class Store:
    """Every interconnect table over one psycopg ``ConnectionPool``; also the pipeline's directory."""

    def __init__(self, pool: Any, box: SecretBox) -> None:
        self.pool = pool
        self.peers = Peers(pool, box)
        self.issued = IssuedTokens(pool, box)
        self.held = HeldTokens(pool, box)
        self.seen = EnvelopesSeen(pool)
        self.starts = Starts(pool)
        self.profiles = Profiles(pool)
        self.outbox = Outbox(pool)
        self.received = Received(pool)
        self.peer_catalogue = PeerCatalogue(pool)
        self.roaming = OpenCharges(pool)

    def peers_by_operator(self, operator_id: str) -> list[Peer]:
        return self.peers.peers_by_operator(operator_id)

    def token_owner(self, token: str, now: datetime) -> UUID | None:
        return self.issued.owner(token, now)

    def first_sight(self, peer: Peer, fingerprint: bytes, keep_until: datetime) -> bool:
        return self.seen.first_sight(peer.peer_id, fingerprint, keep_until)

    def forget(self, peer: Peer, fingerprint: bytes) -> None:
        self.seen.forget(peer.peer_id, fingerprint)
