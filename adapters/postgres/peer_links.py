"""Reads over the interconnect's tables that the operator API and the CLI share: a tenant's T/CEC peers
without their secrets, and each link's health (docs/interconnect.md, "Peers in the operator API").

The tables are the interconnect's (``adapters/interconnect/store/schema.py`` creates them); this module
is at the floor so that ``chargeledger peers outbox`` (through the interconnect's store) and
``GET /operator/v1/peers`` (the API, which does not import the interconnect) run **one** query for a
link's health, as ``pile_frames.py`` is shared by the gateway and the API. The peer columns read here
never include the sealed credential sets: what this module returns can be shown to anyone who may see
the peer.

A link's health, per peer:

* ``pending``: pushes owed (``tcec_outbox`` rows not yet answered), of which ``retrying``: those that
  failed at least once; ``failed``: given up after the retry policy's last attempt; ``delivered``:
  answered (kept 30 days, so "in the last 30 days");
* ``last_delivered``: the last push the peer answered (``delivered_at``);
* ``lag_s``: the age, at ``now``, of the oldest push still pending (0: nothing owed);
* ``last_error``: the newest error of a push still pending or given up (an error a later attempt got
  past is history, not health: None once everything owed went through);
* ``last_inbound_at``: the last call of the peer we answered with Ret 0 (``tcec_peers.last_inbound_at``,
  written by the door at most once a minute per peer and process, so it may be up to a minute old).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.rows import dict_row

# every column of tcec_peers but the sealed secrets (inbound_sealed, outbound_sealed)
PEER_COLUMNS = ("peer_id", "tenant_id", "operator_id", "our_operator_id", "name", "base_url", "role", "dialect",
                "enabled", "status_interval", "token_lifetime", "last_inbound_at")

HEALTH = """
SELECT peer_id, count(*) FILTER (WHERE state = 'pending') AS pending,
       count(*) FILTER (WHERE state = 'pending' AND attempts > 0) AS retrying,
       count(*) FILTER (WHERE state = 'delivered') AS delivered,
       count(*) FILTER (WHERE state = 'failed') AS failed, max(delivered_at) AS last_delivered,
       min(created_at) FILTER (WHERE state = 'pending') AS oldest_pending,
       (array_agg(last_error ORDER BY id DESC)
            FILTER (WHERE last_error IS NOT NULL AND state IN ('pending', 'failed')))[1] AS last_error
FROM tcec_outbox WHERE peer_id = ANY(%s) GROUP BY peer_id"""
EMPTY = {"pending": 0, "retrying": 0, "delivered": 0, "failed": 0, "last_delivered": None, "lag_s": 0,
         "last_error": None}


def linked(conn: Any) -> bool:
    """Whether this database has the interconnect's tables (a deployment that never served T/CEC has none)."""
    return bool(conn.execute("SELECT to_regclass('tcec_peers') IS NOT NULL").fetchone()[0])


def link_health(conn: Any, peer_ids: Sequence[UUID], now: datetime) -> dict[UUID, dict[str, Any]]:
    """Per peer (every one asked, those without pushes too): the outbox's figures above, at ``now``."""
    rows = conn.cursor(row_factory=dict_row).execute(HEALTH, (list(peer_ids),)).fetchall()
    out = {peer_id: dict(EMPTY) for peer_id in peer_ids}
    for row in rows:
        oldest = row.pop("oldest_pending")
        row["lag_s"] = max(0, int((now - oldest).total_seconds())) if oldest else 0
        out[row.pop("peer_id")] = row
    return out


def peers_of(conn: Any, tenant_id: UUID, operator_id: str | None = None) -> list[dict[str, Any]]:
    """The tenant's peers (one, if ``operator_id``), by OperatorID, without their secrets."""
    where, params = "tenant_id = %s", [tenant_id]
    if operator_id is not None:
        where += " AND operator_id = %s"
        params.append(operator_id)
    return conn.cursor(row_factory=dict_row).execute(  # noqa: S608 - fixed columns and clauses
        f"SELECT {', '.join(PEER_COLUMNS)} FROM tcec_peers WHERE {where} ORDER BY operator_id", params).fetchall()


def peers_with_health(conn: Any, tenant_id: UUID, now: datetime) -> list[dict[str, Any]]:
    """The tenant's peers, each with its link's health (``health``): the API's list and the console's."""
    if not linked(conn):
        return []
    peers = peers_of(conn, tenant_id)
    health = link_health(conn, [p["peer_id"] for p in peers], now)
    for peer in peers:
        peer["health"] = {**health[peer["peer_id"]], "last_inbound_at": peer.pop("last_inbound_at")}
    return peers
