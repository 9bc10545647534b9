"""One leader among processes of the same role: the holder of a Postgres session-level advisory lock.

A follower that is safe to run twice (compare-and-set on its tracking rows) is still no faster for it:
two would only redo each other's batches. So a role like ``projections run`` leads only while it holds
its lock, on a connection of its own, and stands by otherwise, trying the lock every
``standby_interval``. A leader killed with kill -9 (or its host lost) has its session ended by Postgres,
which releases the lock, and a standby takes it at its next try: within ``standby_interval`` plus the
time Postgres takes to see the socket gone (at once for a dead process; TCP keepalives, 5 s idle and
3 × 2 s, for a lost host).

This is the synchronous twin of the relay's election (``adapters/followers/relay/leader.py``, which
runs in asyncio): the leader confirms its session (``SELECT 1``) at most every ``check_interval``
between batches, and from the moment that fails it no longer leads. The rows a leader writes are
still compare-and-set, so a leader that has lost its lock without knowing it yet doubles nothing.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import psycopg

log = logging.getLogger(__name__)

DATABASE_OUTAGE = (psycopg.OperationalError, psycopg.InterfaceError)  # the session is gone, not refused
PROJECTIONS_LOCK = 7_402_003  # whose holder is the one `projections run` that applies batches
HOLDER = ("SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
          "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0 AND l.objid = %s "
          "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())")


def holder_name(conn: Any, key: int) -> str | None:
    """The ``application_name`` of the session holding advisory lock ``key`` in this database (a leader names
    itself ``chargeledger <role> <pid>``), or None: nobody leads."""
    row = conn.execute(HOLDER, (key,)).fetchone()
    return str(row[0]) if row else None


def holder_pid(database_url: str, key: int) -> int | None:
    """The pid of the process leading by advisory lock ``key`` (from its ``application_name``), or None."""
    with psycopg.connect(database_url) as conn:
        name = holder_name(conn, key)
    return int(name.rsplit(" ", 1)[-1]) if name else None


class LeaderLock:
    """A session-level advisory lock ``key`` on ``database_url``, held by at most one process."""

    def __init__(self, database_url: str, key: int, role: str, *, check_interval: float = 0.5) -> None:
        self.database_url = database_url
        self.key = key
        self.role = role  # for pg_stat_activity.application_name: "chargeledger <role> <pid>"
        self.check_interval = check_interval
        self.conn: psycopg.Connection[Any] | None = None
        self.confirmed_at = 0.0
        self.leading = False
        self.takeovers = 0  # times this process became the leader

    def try_acquire(self) -> bool:
        """Take the lock if it is free (True), else False: another process leads, or the database is
        away (then the next try connects again)."""
        try:
            if self.conn is None:
                self.conn = psycopg.connect(self.database_url, autocommit=True, connect_timeout=5,
                                            application_name=f"chargeledger {self.role} {os.getpid()}",
                                            keepalives=1, keepalives_idle=5, keepalives_interval=2,
                                            keepalives_count=3)
            row = self.conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
        except DATABASE_OUTAGE as error:
            log.debug("%s: cannot try the leader's lock (%s)", self.role, error)
            self.release()
            return False
        if row is None or not row[0]:
            return False
        self.confirmed_at = time.monotonic()
        self.leading = True
        self.takeovers += 1
        return True

    def held(self) -> bool:
        """Whether this process still leads: its lock's session confirmed within ``check_interval``."""
        if self.conn is None or not self.leading:
            return False
        if time.monotonic() - self.confirmed_at < self.check_interval:
            return True
        try:
            self.conn.execute("SELECT 1")
        except DATABASE_OUTAGE as error:
            log.warning("%s: the leader's lock connection failed (%s); standing by", self.role, error)
            self.release()
            return False
        self.confirmed_at = time.monotonic()
        return True

    def release(self) -> None:
        """Let the lock go (closing the session releases it); the next :meth:`try_acquire` connects anew."""
        conn, self.conn = self.conn, None
        self.confirmed_at, self.leading = 0.0, False
        if conn is not None:
            try:
                conn.close()
            except (*DATABASE_OUTAGE, OSError):
                pass
