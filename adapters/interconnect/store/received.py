"""``tcec_received``: what infrastructure peers pushed to us (we as customer platform), as it arrived.

One row per (peer, interface, key): the key is what the peer dedups by too (the StartChargeSeq of a
session's push; its StartChargeSeq and EndTime for a charge status snapshot; a fresh one for each
connector status, every one of which is news). A push that arrives again counts ``times`` and keeps
its first payload, so a resent order cannot change what we recorded. These rows are the record a
customer platform's settlement reads (issue 13, item 4 builds on them); here they answer
``check_charge_orders``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.rows import dict_row


class Received:
    def __init__(self, pool: Any) -> None:
        self.pool = pool

    def record(self, peer_id: UUID, interface: str, key: str, payload: str, now: datetime) -> int:
        """Keep one arrival; returns how many times this (interface, key) has now arrived."""
        with self.pool.connection() as conn:
            return int(conn.execute(
                "INSERT INTO tcec_received (peer_id, interface, key, payload, first_at, last_at) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (peer_id, interface, key) DO UPDATE SET "
                "times = tcec_received.times + 1, last_at = excluded.last_at RETURNING times",
                (peer_id, interface, key, payload, now, now)).fetchone()[0])

    def of(self, peer_id: UUID, interface: str) -> list[dict[str, Any]]:
        """Every (key, payload, times, first_at) of an interface from the peer, in order of arrival."""
        with self.pool.connection() as conn:
            return conn.cursor(row_factory=dict_row).execute(
                "SELECT key, payload, times, first_at, last_at FROM tcec_received WHERE peer_id = %s "
                "AND interface = %s ORDER BY id", (peer_id, interface)).fetchall()

    def payloads(self, peer_id: UUID, interface: str, keys: list[str]) -> dict[str, str]:
        with self.pool.connection() as conn:
            rows = conn.execute("SELECT key, payload FROM tcec_received WHERE peer_id = %s AND interface = %s "
                                "AND key = ANY(%s)", (peer_id, interface, keys)).fetchall()
        return dict(rows)

    def latest(self, peer_id: UUID, interface: str, key_prefix: str) -> str | None:
        """The payload with the greatest key under ``key_prefix`` (a session's charge status snapshots are
        keyed ``<StartChargeSeq>:<EndTime yyyyMMddHHmmss>``: the newest), or None."""
        with self.pool.connection() as conn:
            row = conn.execute("SELECT payload FROM tcec_received WHERE peer_id = %s AND interface = %s AND "
                               "key LIKE %s ORDER BY key DESC LIMIT 1",
                               (peer_id, interface, key_prefix.replace("%", r"\%").replace("_", r"\_") + "%")
                               ).fetchone()
        return None if row is None else str(row[0])
