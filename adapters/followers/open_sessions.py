"""The open sessions of every pile, and their deadlines: an index kept from the Sessions log.

``open_sessions(session_id, trade_no, pile_no, gun_no, state, pile_offline, deadline)`` holds one row
per session that is not closed yet. It is built by a tracked follower of the Sessions notification
log: each batch of index changes commits in one transaction with the follower's position (a row of
``watchdog_tracking``, locked ``FOR UPDATE`` for the batch), so catching up is idempotent, resumes
exactly where it stopped after any crash, and any number of processes may catch up at once (they
take turns on the row lock; none applies a batch twice). Only the events that change a session's
state or deadline are read (the log is filtered by topic in Postgres: meter readings, most of the
log, never leave the database).

Two readers, and neither trusts the index beyond "where to look":

* the gateway, when a pile logs in, asks which sessions of that pile are open (:meth:`of_pile`),
  then reads each aggregate and sends what it is owed (:mod:`pile_link.owed`);
* the watchdog asks which deadlines passed (:meth:`due`) and sends each session ``expire(now)``,
  which re-checks the deadline on the aggregate itself.

Whoever reads it first brings it up to date (:meth:`catch_up`), so neither depends on another
process running.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import psycopg

from domain.errors import DomainError
from eventsourcing.utils import get_topic

from adapters.followers.log_follower import follow, tracking_ddl
from adapters.postgres.env import create_tables
from domain.session import ChargingSession

log = logging.getLogger("chargeledger.watchdog")

TRACKING_TABLE = "watchdog_tracking"  # one row per follower of the Sessions log (the index, the follow-ups)
TRACKING = tracking_ddl(TRACKING_TABLE)
SCHEMA = """
CREATE TABLE IF NOT EXISTS open_sessions (
    session_id uuid PRIMARY KEY,
    trade_no text NOT NULL,
    pile_no text NOT NULL,
    gun_no integer NOT NULL,
    state text NOT NULL,
    pile_offline boolean NOT NULL DEFAULT false,
    deadline timestamptz
);
CREATE INDEX IF NOT EXISTS open_sessions_pile ON open_sessions (pile_no);
CREATE INDEX IF NOT EXISTS open_sessions_due ON open_sessions (deadline) WHERE deadline IS NOT NULL;
"""
INDEX_FOLLOWER = "open_sessions"  # its row in watchdog_tracking

# What each session event does to the index: (statement, its parameters from the event).
# StopRequested mirrors the aggregate: a pile that is offline keeps the later of its two deadlines.
CHANGES: dict[str, tuple[str, Callable[[Any], tuple[Any, ...]]]] = {
    "Opened": ("INSERT INTO open_sessions (session_id, trade_no, pile_no, gun_no, state, deadline) "
               "VALUES (%s, %s, %s, %s, 'requested', %s) ON CONFLICT (session_id) DO NOTHING",
               lambda e: (e.originator_id, e.trade_no, e.pile_no, e.gun_no, e.start_deadline)),
    "StartAcknowledged": ("UPDATE open_sessions SET state = 'starting' WHERE session_id = %s",
                          lambda e: (e.originator_id,)),
    "Charging": ("UPDATE open_sessions SET state = 'charging', deadline = NULL WHERE session_id = %s",
                 lambda e: (e.originator_id,)),
    "StopRequested": ("UPDATE open_sessions SET state = 'stopping', deadline = CASE WHEN pile_offline "
                      "THEN GREATEST(%s, deadline) ELSE %s END WHERE session_id = %s",
                      lambda e: (e.record_deadline, e.record_deadline, e.originator_id)),
    "PileOffline": ("UPDATE open_sessions SET pile_offline = true, deadline = %s WHERE session_id = %s",
                    lambda e: (e.deadline, e.originator_id)),
    "PileOnline": ("UPDATE open_sessions SET pile_offline = false, deadline = %s WHERE session_id = %s",
                   lambda e: (e.deadline, e.originator_id)),
    **{closing: ("DELETE FROM open_sessions WHERE session_id = %s", lambda e: (e.originator_id,))
       for closing in ("Failed", "Settled", "Resettled", "Abandoned")},
}


def session_topics(names: Sequence[str]) -> list[str]:
    """The stored topics of these ChargingSession events (``domain.session:ChargingSession.Opened``)."""
    return [f"{get_topic(ChargingSession)}.{name}" for name in names]


class OpenSessions:
    """The ``open_sessions`` index: catch it up, ask it which sessions of a pile are open, which are due."""

    def __init__(self, ledger: Any, database_url: str, *, batch_size: int = 1000) -> None:
        self.ledger = ledger
        self.database_url = database_url
        self.batch_size = batch_size
        self.topics = session_topics(list(CHANGES))
        with psycopg.connect(database_url, autocommit=True, connect_timeout=10) as conn:
            create_tables(conn, TRACKING, SCHEMA)  # under the schema lock: concurrent CREATE IF NOT EXISTS collide

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.database_url, connect_timeout=10)

    def catch_up(self) -> int:
        """Bring the index up to the end of the Sessions log. Returns the events applied."""
        with self.connect() as conn:
            return follow(conn, self.ledger.sessions, TRACKING_TABLE, INDEX_FOLLOWER, self.apply, topics=self.topics,
                          batch_size=self.batch_size)

    @staticmethod
    def apply(cur: psycopg.Cursor, events: list[Any]) -> None:
        with cur.connection.pipeline():  # in order, without a round trip per statement
            for event in events:
                statement, parameters = CHANGES[type(event).__name__]
                cur.execute(statement, parameters(event))

    def trade_nos(self, query: str, parameters: tuple[Any, ...]) -> list[str]:
        """The ``trade_no`` column of a query, on a pooled connection of the Sessions Application
        (a query a login makes should not open a connection of its own)."""
        with self.ledger.sessions.recorder.datastore.get_connection() as conn:
            return [row["trade_no"] for row in conn.execute(query, parameters).fetchall()]

    def of_pile(self, pile_no: str) -> list[str]:
        """The trade serials of the pile's open sessions, as far as the index has caught up."""
        return self.trade_nos("SELECT trade_no FROM open_sessions WHERE pile_no = %s ORDER BY gun_no, trade_no",
                              (pile_no,))

    def record_pile_offline(self, pile_no: str, at: datetime) -> Exception | None:
        """Give each open session of a pile recorded offline at ``at`` its offline deadline
        (``ChargingSession.pile_offline``: charging and stopping ones; the others are unchanged), as far
        as the index has caught up. Returns None, or the last domain error a session refused it with."""
        refused = None
        for trade_no in self.of_pile(pile_no):
            try:
                self.ledger.session_pile_offline(trade_no, at=at)
            except DomainError as error:
                refused = error
        return refused

    def open_piles(self) -> list[str]:
        """The piles with a session charging or stopping that is not recorded offline."""
        with self.ledger.sessions.recorder.datastore.get_connection() as conn:
            return [row["pile_no"] for row in conn.execute(
                "SELECT DISTINCT pile_no FROM open_sessions WHERE state IN ('charging', 'stopping') "
                "AND NOT pile_offline ORDER BY pile_no").fetchall()]

    def due(self, now: datetime, limit: int = 10_000) -> list[str]:
        """The trade serials whose deadline passed, earliest first."""
        return self.trade_nos("SELECT trade_no FROM open_sessions WHERE deadline <= %s ORDER BY deadline LIMIT %s",
                              (now, limit))

    def correct(self, trade_no: str, deadline: datetime | None) -> None:
        """The aggregate's own deadline, where the index's was earlier (the aggregate decides)."""
        with self.connect() as conn:
            conn.execute("UPDATE open_sessions SET deadline = %s WHERE session_id = %s",
                         (deadline, ChargingSession.create_id(trade_no)))
