"""``tcec_envelopes_seen``: the authenticated envelopes received within the time window, per peer.

An envelope is recorded when it passes its signature, token and time checks (an insert that does
nothing if the fingerprint is there: atomic across every process); a second copy within the window
is a replay. A row is kept until its TimeStamp leaves the window, after which the time check refuses
the copy anyway; expired rows are swept now and then by whoever records.
"""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

SWEEP_EVERY = 500  # recordings per process between two sweeps of expired rows


class EnvelopesSeen:
    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self._lock = threading.Lock()
        self._since_sweep = 0

    def first_sight(self, peer_id: UUID, fingerprint: bytes, keep_until: datetime) -> bool:
        with self.pool.connection() as conn:
            inserted = conn.execute(
                "INSERT INTO tcec_envelopes_seen (peer_id, fingerprint, keep_until) VALUES (%s, %s, %s) "
                "ON CONFLICT DO NOTHING RETURNING 1", (peer_id, fingerprint, keep_until)).fetchone()
            if self._sweep_due():
                conn.execute("DELETE FROM tcec_envelopes_seen WHERE keep_until < %s", (datetime.now(timezone.utc),))
        return inserted is not None

    def forget(self, peer_id: UUID, fingerprint: bytes) -> None:
        with self.pool.connection() as conn:
            conn.execute("DELETE FROM tcec_envelopes_seen WHERE peer_id = %s AND fingerprint = %s",
                         (peer_id, fingerprint))

    def _sweep_due(self) -> bool:
        with self._lock:
            self._since_sweep += 1
            if self._since_sweep < SWEEP_EVERY:
                return False
            self._since_sweep = 0
            return True
