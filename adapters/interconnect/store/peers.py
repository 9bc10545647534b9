"""``tcec_peers``: each tenant's peer platforms, with both credential sets sealed at rest.

An operator configures a peer with its OperatorID, base URL, role, dialect and our own OperatorID
as that peer knows us (:meth:`Peers.configure`). The inbound set (what the peer calls us with) is
made by us unless given, and handed to the peer's engineers once; the outbound set (what we call
the peer with) is what the peer issued us (:meth:`Peers.set_outbound`). Both are sealed with the
payment keys' :class:`~adapters.payments.config.SecretBox` (AES-256-GCM with key ids) under this
module's own setting, the associated data binding a sealed set to its tenant, peer and direction,
so a sealed text copied onto another row or direction does not open.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from psycopg.rows import dict_row

from adapters.interconnect.tcec.dialect import Dialect
from adapters.interconnect.tcec.interfaces import Role
from adapters.interconnect.tcec.peer import Credentials, Peer
from adapters.payments.config import SealError, SecretBox
from domain.errors import DomainError, NotFound
from domain.text import checked

KEYS_SETTING = "CHARGELEDGER_INTERCONNECT_KEYS"  # kid=base64 of 32 bytes[,...]: seals peers' secrets
COLUMNS = ("peer_id, tenant_id, operator_id, our_operator_id, name, base_url, role, dialect, token_lifetime, "
           "enabled, inbound_sealed, outbound_sealed, status_interval")
OPERATOR_ID = re.compile(r"[0-9A-Za-z]{9}")
_NAMESPACE = UUID("3f1c2d5e-8b7a-4c21-9d0e-7a6b5c4d3e2f")


class PeerConfigError(DomainError):
    code = "tcec_peer_invalid"


def _context(tenant_id: UUID, peer_id: UUID, direction: str) -> str:
    return f"chargeledger:tcec-peer:{tenant_id}:{peer_id}:{direction}"


def peer_id_for(tenant_id: UUID, operator_id: str) -> UUID:
    return uuid.uuid5(_NAMESPACE, f"{tenant_id}:{operator_id}")


class Peers:
    """Configure and read peers; the only place their credentials are sealed or opened."""

    def __init__(self, pool: Any, box: SecretBox) -> None:
        self.pool, self.box = pool, box  # psycopg ConnectionPool (sync), opened by its owner

    # ---- configuring --------------------------------------------------------------------------------
    def configure(self, tenant_id: UUID, operator_id: str, *, our_operator_id: str, base_url: str, role: Role | str,
                  dialect: Dialect | str = Dialect.TCEC2016, name: str = "", token_lifetime: int = 7200,
                  inbound: Credentials | None = None, outbound: Credentials | None = None,
                  enabled: bool = True, status_interval: int = 60) -> Peer:
        """Create the peer or change it. A new peer gets fresh inbound credentials unless ``inbound``
        is given; an existing one keeps its own unless given. Returns the peer (secrets in memory)."""
        operator_id, our_operator_id = _operator(operator_id, "operator_id"), _operator(our_operator_id,
                                                                                        "our_operator_id")
        try:
            role, dialect = Role(role), Dialect(dialect)
        except ValueError as error:
            raise PeerConfigError(str(error), field="role/dialect") from None
        if not 60 <= int(token_lifetime) <= 7 * 86400:
            raise PeerConfigError("token_lifetime is 60 s to 7 days", field="token_lifetime")
        if not 0 <= int(status_interval) <= 3600:
            raise PeerConfigError("status_interval is 0 (no charge status pushes) to 3600 s", field="status_interval")
        peer_id = peer_id_for(tenant_id, operator_id)
        current = self._peer(peer_id)
        inbound = inbound or (current.inbound if current else Credentials.generate())
        outbound = outbound or (current.outbound if current else None)
        peer = Peer(peer_id, tenant_id, operator_id, our_operator_id, checked(name, "name", 200) or operator_id,
                    _url(base_url), role, dialect, int(token_lifetime), enabled, inbound, outbound,
                    int(status_interval))
        self._refuse_shared_sig_secret(peer)
        with self.pool.connection() as conn:
            conn.execute(
                f"INSERT INTO tcec_peers ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (peer_id) DO UPDATE SET our_operator_id = excluded.our_operator_id, name = excluded.name, "
                "base_url = excluded.base_url, role = excluded.role, dialect = excluded.dialect, "
                "token_lifetime = excluded.token_lifetime, enabled = excluded.enabled, "
                "inbound_sealed = excluded.inbound_sealed, outbound_sealed = excluded.outbound_sealed, "
                "status_interval = excluded.status_interval, updated_at = now()", self._row(peer))
            if current is not None and current.inbound != inbound:  # new secrets: the old tokens go too
                conn.execute("DELETE FROM tcec_tokens_issued WHERE peer_id = %s", (peer_id,))
        return peer

    def set_outbound(self, tenant_id: UUID, operator_id: str, outbound: Credentials) -> Peer:
        """Store what the peer issued us to call it; the token we held with the old set is dropped."""
        peer = self.get(tenant_id, operator_id)
        peer = replace(peer, outbound=outbound)
        with self.pool.connection() as conn:
            conn.execute("UPDATE tcec_peers SET outbound_sealed = %s, updated_at = now() WHERE peer_id = %s",
                         (self._seal(peer, "outbound", outbound), peer.peer_id))
            conn.execute("DELETE FROM tcec_tokens_held WHERE peer_id = %s", (peer.peer_id,))
        return peer

    def mark_inbound(self, peer_id: UUID, at: datetime, every: timedelta) -> None:
        """Note that a call of the peer was answered Ret 0 (its link's health), unless a note within
        ``every`` before ``at`` is there: a busy peer costs one row update a minute, not one a call."""
        with self.pool.connection() as conn:
            conn.execute("UPDATE tcec_peers SET last_inbound_at = %s WHERE peer_id = %s AND "
                         "(last_inbound_at IS NULL OR last_inbound_at <= %s)", (at, peer_id, at - every))

    def _refuse_shared_sig_secret(self, peer: Peer) -> None:
        """Two tenants may link one OperatorID; its SigSecret tells them apart, so each must differ."""
        for other in self.peers_by_operator(peer.operator_id, enabled_only=False):
            if other.peer_id != peer.peer_id and other.inbound.sig_secret == peer.inbound.sig_secret:
                raise PeerConfigError(f"another tenant's link with {peer.operator_id} has this SigSecret: each "
                                      "link needs its own", field="inbound")

    # ---- reading ------------------------------------------------------------------------------------
    def get(self, tenant_id: UUID, operator_id: str) -> Peer:
        peer = self._peer(peer_id_for(tenant_id, operator_id))
        if peer is None:
            raise NotFound(f"no peer {operator_id}", operator_id=operator_id)
        return peer

    def by_id(self, peer_id: UUID) -> Peer:
        peer = self._peer(peer_id)
        if peer is None:
            raise NotFound(f"no peer {peer_id}", peer_id=str(peer_id))
        return peer

    def of_tenant(self, tenant_id: UUID) -> list[Peer]:
        return self._select("WHERE tenant_id = %s ORDER BY operator_id", (tenant_id,))

    def peers_by_operator(self, operator_id: str, *, enabled_only: bool = True) -> list[Peer]:
        """Every peer with this OperatorID, one per tenant linking it (the receive pipeline's step 2)."""
        where = "WHERE operator_id = %s" + (" AND enabled" if enabled_only else "")
        return self._select(where + " ORDER BY tenant_id", (operator_id,))

    def has_operator(self, operator_id: str) -> bool:
        """Whether an enabled peer has this OperatorID here (a shard asked where a caller's link is; no
        secret is opened)."""
        with self.pool.connection() as conn:
            return conn.execute("SELECT 1 FROM tcec_peers WHERE operator_id = %s AND enabled LIMIT 1",
                                (operator_id,)).fetchone() is not None

    def _peer(self, peer_id: UUID) -> Peer | None:
        found = self._select("WHERE peer_id = %s", (peer_id,))
        return found[0] if found else None

    def _select(self, where: str, params: tuple[Any, ...]) -> list[Peer]:
        with self.pool.connection() as conn:
            rows = conn.cursor(row_factory=dict_row).execute(f"SELECT {COLUMNS} FROM tcec_peers {where}",
                                                             params).fetchall()
        return [self._from_row(row) for row in rows]

    # ---- sealing ------------------------------------------------------------------------------------
    def _seal(self, peer: Peer, direction: str, credentials: Credentials) -> str:
        return self.box.seal(json.dumps(credentials.as_dict()).encode(),
                             _context(peer.tenant_id, peer.peer_id, direction))

    def _open(self, row: dict[str, Any], direction: str) -> Credentials | None:
        sealed = row[f"{direction}_sealed"]
        if sealed is None:
            return None
        try:
            raw = self.box.open(sealed, _context(row["tenant_id"], row["peer_id"], direction))
        except SealError:
            raise SealError(f"the sealed {direction} secrets of T/CEC peer {row['operator_id']} do not open: "
                            f"wrong {KEYS_SETTING}, or the row was tampered with") from None
        return Credentials.from_dict(json.loads(raw))

    def _row(self, peer: Peer) -> tuple[Any, ...]:
        outbound = None if peer.outbound is None else self._seal(peer, "outbound", peer.outbound)
        return (peer.peer_id, peer.tenant_id, peer.operator_id, peer.our_operator_id, peer.name, peer.base_url,
                peer.role.value, peer.dialect.value, peer.token_lifetime, peer.enabled,
                self._seal(peer, "inbound", peer.inbound), outbound, peer.status_interval)

    def _from_row(self, row: dict[str, Any]) -> Peer:
        inbound = self._open(row, "inbound")
        assert inbound is not None  # NOT NULL
        return Peer(row["peer_id"], row["tenant_id"], row["operator_id"], row["our_operator_id"], row["name"],
                    row["base_url"], Role(row["role"]), Dialect(row["dialect"]), row["token_lifetime"],
                    row["enabled"], inbound, self._open(row, "outbound"), row["status_interval"])


def _operator(value: Any, what: str) -> str:
    if not isinstance(value, str) or not OPERATOR_ID.fullmatch(value):
        raise PeerConfigError(f"{what} must be 9 letters or digits (an organisation code)", field=what)
    return value


def _url(value: Any) -> str:
    text = checked(value, "base_url", 500, required=True)
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise PeerConfigError("base_url must be http(s)://host[:port]/path, without a query "
                              "(e.g. https://evcs.example.com/evcs/v1)", field="base_url")
    return text.rstrip("/")
