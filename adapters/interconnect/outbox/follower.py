"""The outbox's follower: the Registry and Sessions logs into ``tcec_outbox``, exactly once.

Each log is followed with its own position in ``tcec_outbox_tracking`` (``adapters/postgres/following.py``):
a batch's pushes, the state they derive from (``tcec_piles``, ``tcec_starts``, the stations' fold) and the new position
commit in one transaction, so after any crash the follower resumes where it stopped and enqueues
every push once; followers in several processes take turns on the tracking row. Only the events that
can cause a push are read (filtered by topic in Postgres): not the meter readings. The Registry is followed
twice, with two positions: the guns' statuses (guns.py) and the stations' catalogue entries for regulators
(stations.py, ``<registry>:stations``).
"""

from __future__ import annotations

from typing import Any

import psycopg

from adapters.interconnect.outbox import guns, stations
from adapters.interconnect.outbox.sessions import TOPICS as SESSION_TOPICS
from adapters.interconnect.outbox.sessions import SessionPushes
from adapters.postgres.following import follow

TRACKING = "tcec_outbox_tracking"


class Follower:
    def __init__(self, ledger: Any, database_url: str, *, batch_size: int = 500) -> None:
        self.ledger, self.database_url, self.batch_size = ledger, database_url, batch_size
        self.sessions = SessionPushes(ledger)

    def catch_up(self) -> int:
        """Follow the logs to their ends. Returns the events read."""
        with psycopg.connect(self.database_url, connect_timeout=10) as conn:
            read = follow(conn, self.ledger.registry, TRACKING, self.ledger.registry.name, guns.apply,
                          topics=guns.TOPICS, batch_size=self.batch_size)
            read += follow(conn, self.ledger.registry, TRACKING, f"{self.ledger.registry.name}:stations",
                           stations.apply, topics=stations.TOPICS, batch_size=self.batch_size)
            read += follow(conn, self.ledger.sessions, TRACKING, self.ledger.sessions.name, self.sessions.apply,
                           topics=SESSION_TOPICS, batch_size=self.batch_size)
        return read
