"""``tcec_roaming``: our drivers' roaming charges that still wait for the peer (we as customer platform).

The ledger's ``RoamingCharge`` is the record; this table is the reconciler's index of the charges
that are not closed, kept by a follower of the Sessions log (``customer/reconcile.py``) in the same
transaction as its position, so it is exactly the open charges after any crash. A row says when the
charge should next be asked about (``next_check``) and how often it has been (``attempts``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.rows import class_row


@dataclass(frozen=True)
class Waiting:
    charge_id: UUID
    tenant_id: UUID
    peer: str
    start_charge_seq: str
    connector_id: str
    state: str
    changed_at: datetime
    attempts: int


class OpenCharges:
    def __init__(self, pool: Any) -> None:
        self.pool = pool

    @staticmethod
    def upsert(cursor: Any, row: dict[str, Any]) -> None:
        """A charge's new state (its next check and attempts start over)."""
        cursor.execute(
            "INSERT INTO tcec_roaming (charge_id, tenant_id, peer, start_charge_seq, connector_id, state, changed_at, "
            "next_check) VALUES (%(charge_id)s, %(tenant_id)s, %(peer)s, %(start_charge_seq)s, %(connector_id)s, "
            "%(state)s, %(changed_at)s, %(next_check)s) ON CONFLICT (charge_id) DO UPDATE SET state = excluded.state, "
            "changed_at = excluded.changed_at, next_check = excluded.next_check, attempts = 0", row)

    @staticmethod
    def state(cursor: Any, charge_id: UUID) -> dict[str, Any] | None:
        row = cursor.execute("SELECT tenant_id, peer, start_charge_seq, connector_id FROM tcec_roaming "
                             "WHERE charge_id = %s", (charge_id,)).fetchone()
        return None if row is None else dict(zip(("tenant_id", "peer", "start_charge_seq", "connector_id"), row))

    @staticmethod
    def close(cursor: Any, charge_id: UUID) -> None:
        cursor.execute("DELETE FROM tcec_roaming WHERE charge_id = %s", (charge_id,))

    def due(self, now: datetime, limit: int = 100) -> list[Waiting]:
        with self.pool.connection() as conn, conn.cursor(row_factory=class_row(Waiting)) as cursor:
            return cursor.execute(
                "SELECT charge_id, tenant_id, peer, start_charge_seq, connector_id, state, changed_at, attempts "
                "FROM tcec_roaming WHERE next_check <= %s ORDER BY next_check LIMIT %s", (now, limit)).fetchall()

    def checked(self, charge_id: UUID, next_check: datetime | None) -> None:
        """Asked once more: when to ask next (None: stop asking, the charge waits for its order)."""
        with self.pool.connection() as conn:
            conn.execute("UPDATE tcec_roaming SET attempts = attempts + 1, next_check = COALESCE(%s, 'infinity') "
                         "WHERE charge_id = %s", (next_check, charge_id))

    def all(self) -> list[Waiting]:
        with self.pool.connection() as conn, conn.cursor(row_factory=class_row(Waiting)) as cursor:
            return cursor.execute(
                "SELECT charge_id, tenant_id, peer, start_charge_seq, connector_id, state, changed_at, attempts "
                "FROM tcec_roaming ORDER BY changed_at").fetchall()

