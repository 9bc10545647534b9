"""Which gateways are alive: a lease each gateway renews, so the watchdog can tell when one is gone.

A pile's connection is recorded on the pile (``Pile.connection["gateway"]``) by the gateway that
holds it, and that gateway records the disconnect when the TCP connection ends. A gateway that is
killed (kill -9, a crash, a lost host) records nothing: its piles stayed "connected" and a session
charging on one that never came back kept its hold forever. So every gateway renews a row here at
each sweep (every 5 s), valid for ``LEASE_TTL``; a watchdog that finds a lease expired records the
piles that gateway held offline (their open sessions get the offline deadline, as if the gateway
had seen them go), then marks the lease lapsed. A lapsed gateway that renews again (it was cut off
from Postgres, not dead) hears so and records its piles connected again; their next meter
readings bring their sessions back online.

A watchdog judges leases only after it has itself reached the database for a whole ``LEASE_TTL``:
just after a Postgres outage every lease looks expired, and the live gateways need that long to
renew theirs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from domain.registry import Pile

log = logging.getLogger("chargeledger.watchdog")

LEASE_TTL = timedelta(seconds=60)

SCHEMA = """
CREATE TABLE IF NOT EXISTS gateway_leases (
    gateway_id text PRIMARY KEY,
    renewed_at timestamptz NOT NULL,  -- the gateway's last sign of life
    expires_at timestamptz NOT NULL,
    lapsed_at timestamptz  -- set by the watchdog that recorded this gateway's piles offline
);
"""


def renew(conn: psycopg.Connection, gateway_id: str, now: datetime, ttl: timedelta = LEASE_TTL) -> bool:
    """Renew ``gateway_id``'s lease. True if a watchdog had declared it lapsed meanwhile."""
    row = _cursor(conn).execute(
        "WITH before AS (SELECT lapsed_at FROM gateway_leases WHERE gateway_id = %(g)s) "
        "INSERT INTO gateway_leases (gateway_id, renewed_at, expires_at) VALUES (%(g)s, %(now)s, %(exp)s) "
        "ON CONFLICT (gateway_id) DO UPDATE SET renewed_at = EXCLUDED.renewed_at, "
        "expires_at = EXCLUDED.expires_at, lapsed_at = NULL "
        "RETURNING (SELECT lapsed_at FROM before)",
        {"g": gateway_id, "now": now, "exp": now + ttl}).fetchone()
    return row is not None and row[0] is not None


def give_up(conn: psycopg.Connection, gateway_id: str) -> None:
    """A gateway stopping cleanly: it recorded its piles' disconnects itself."""
    conn.execute("DELETE FROM gateway_leases WHERE gateway_id = %s", (gateway_id,))


def expired(conn: psycopg.Connection, now: datetime) -> list[tuple[str, datetime, datetime]]:
    """``(gateway, last renewed, expired at)`` of every lease that expired and is not yet lapsed."""
    return _cursor(conn).execute("SELECT gateway_id, renewed_at, expires_at FROM gateway_leases "
                        "WHERE expires_at < %s AND lapsed_at IS NULL ORDER BY expires_at", (now,)).fetchall()


def mark_lapsed(conn: psycopg.Connection, gateway_id: str, expires_at: datetime, now: datetime) -> bool:
    """Mark the lease lapsed unless its gateway renewed it meanwhile. True if marked."""
    cur = conn.execute("UPDATE gateway_leases SET lapsed_at = %s WHERE gateway_id = %s AND expires_at = %s "
                       "AND lapsed_at IS NULL", (now, gateway_id, expires_at))
    return cur.rowcount == 1


def _cursor(conn: psycopg.Connection) -> psycopg.Cursor:
    return conn.cursor(row_factory=tuple_row)  # whatever the connection's own (the pool's rows are dicts)


def record_lapsed(ledger: Any, database_url: str, open_sessions: Any, now: datetime) -> list[str]:
    """Record offline the piles of every gateway whose lease expired, as that gateway would have on
    losing them: the pile disconnected at the gateway's last sign of life, and each open session on it
    given the offline deadline. Only piles with an open session matter to money, and the index knows
    those; a pile without one stays shown connected until it logs in again. Returns the gateways lapsed."""
    with psycopg.connect(database_url, autocommit=True, connect_timeout=10) as conn:
        leases = expired(conn, now)
        if not leases:
            return []
        holder = {}  # the piles with open sessions, by the gateway their connection names (loaded once)
        for pile_no in open_sessions.open_piles():
            pile = ledger.registry.get(Pile.create_id(pile_no), Pile, "pile", fresh=True)
            if pile.online and pile.connection:
                holder.setdefault(pile.connection.get("gateway"), []).append(pile_no)
        lapsed = []
        for gateway_id, renewed_at, expires_at in leases:
            reason = f"gateway {gateway_id} stopped renewing its lease at {renewed_at.isoformat()}"
            held = holder.get(gateway_id, [])
            outcomes = ledger.record_pile_changes(
                [(pile_no, disconnect_if_held(gateway_id, renewed_at, reason)) for pile_no in held])
            for pile_no, outcome in zip(held, outcomes):
                if outcome is None:
                    outcome = open_sessions.record_pile_offline(pile_no, renewed_at)
                if outcome is not None:
                    log.error("pile %s: could not record it or its sessions offline (%s): %s", pile_no, reason,
                              outcome)
            if mark_lapsed(conn, gateway_id, expires_at, now):
                lapsed.append(gateway_id)
                log.warning("%s: %d pile(s) with open sessions recorded offline", reason, len(held))
        return lapsed


def disconnect_if_held(gateway_id: str, at: datetime, reason: str) -> Callable[[Pile], None]:
    """The change that records a pile offline only while ``gateway_id`` holds it: a pile that has logged in
    at another gateway since (it moved; this one learnt of its dead link late, or died) stays online there."""
    def change(pile: Pile) -> None:
        if pile.online and pile.connection and pile.connection.get("gateway") == gateway_id:  # not elsewhere since
            pile.disconnect(at=at, reason=reason)
    return change
