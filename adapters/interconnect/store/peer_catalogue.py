"""We as customer platform: the catalogue of an infrastructure peer's stations and connectors, per peer (and so
per tenant), as its ``query_stations_info``, ``query_station_status``, ``query_equip_business_policy`` and
``notification_stationStatus`` gave them (docs/interconnect.md, "Our drivers on a peer's piles").

* ``tcec_peer_stations``: one row per (peer, StationID), the ``StationInfo`` kept as received beside the
  columns a driver's list needs (name, address, GCJ-02 coordinates, StationStatus);
* ``tcec_peer_connectors``: one row per (peer, ConnectorID), its station and equipment from the last
  StationInfo, its last status (and when it arrived), its business policy (``PolicyInfos`` as received,
  when fetched, or why not). A status pushed for a connector no StationInfo has named yet is kept with
  no station: the next pull joins it;
* ``tcec_peer_pulls``: per peer, who pulls when (a lease, so several outbox roles pull each peer once per
  interval) and the start of the last complete pull, the next pull's ``LastQueryTime``.

Statuses carry no time in T/CEC, so their order is the order of **arrival**: a status is kept only if it
arrived no earlier than the one kept (``status_at``). A pull's statuses count as arriving when the query
was **sent** (the peer's snapshot is at least that new), so a push that arrives while the query is in
flight wins over the answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from psycopg.rows import dict_row

from adapters.interconnect.tcec import wire
from adapters.interconnect.tcec.models.policy import PolicyInfo
from adapters.interconnect.tcec.models.stations import StationInfo

PEER_OPEN = "p.role = 'infrastructure' AND p.enabled"  # the peers whose catalogue our drivers see


@dataclass(frozen=True)
class PeerConnector:
    """One connector of a peer, as a driver's start needs it (``find_connector``)."""

    peer_id: UUID
    operator_id: str  # the peer's OperatorID
    station_id: str  # the peer's StationID
    connector_id: str  # the peer's ConnectorID, what query_start_charge names
    equipment_id: str
    status: int | None  # T/CEC ConnectorStatus, None if never heard
    status_at: datetime | None
    policy: list[PolicyInfo] | None  # None: not fetched (or refused: policy_error says why)
    policy_at: datetime | None
    policy_error: str | None


class PeerCatalogue:
    def __init__(self, pool: Any) -> None:
        self.pool = pool

    def _rows(self, sql: str, params: Any) -> list[dict[str, Any]]:
        with self.pool.connection() as conn:
            return conn.cursor(row_factory=dict_row).execute(sql, params).fetchall()

    # ---- a pull: the lease and the LastQueryTime ------------------------------------------------------
    def claim(self, peer_id: UUID, now: datetime, every: timedelta) -> bool:
        """Take the peer's next periodic pull if none was taken within ``every`` (one process wins)."""
        with self.pool.connection() as conn:
            return conn.execute(
                "INSERT INTO tcec_peer_pulls (peer_id, claimed_at) VALUES (%s, %s) ON CONFLICT (peer_id) DO UPDATE "
                "SET claimed_at = excluded.claimed_at WHERE tcec_peer_pulls.claimed_at IS NULL "
                "OR tcec_peer_pulls.claimed_at <= %s RETURNING peer_id", (peer_id, now, now - every)
            ).fetchone() is not None

    def complete_from(self, peer_id: UUID) -> datetime | None:
        """When the last complete pull started (None: never), from which the next one asks for changes."""
        rows = self._rows("SELECT complete_from FROM tcec_peer_pulls WHERE peer_id = %s", (peer_id,))
        return rows[0]["complete_from"] if rows else None

    def finished(self, peer_id: UUID, started: datetime, complete: bool, report: str, now: datetime) -> None:
        """Record a pull's end; a complete one moves the next LastQueryTime to its start (never back)."""
        with self.pool.connection() as conn:
            conn.execute(
                "INSERT INTO tcec_peer_pulls (peer_id, complete_from, finished_at, complete, report) "
                "VALUES (%(p)s, %(from)s, %(now)s, %(ok)s, %(report)s) ON CONFLICT (peer_id) DO UPDATE SET "
                "complete_from = GREATEST(tcec_peer_pulls.complete_from, excluded.complete_from), "
                "finished_at = excluded.finished_at, complete = excluded.complete, report = excluded.report",
                {"p": peer_id, "from": started if complete else None, "now": now, "ok": complete, "report": report})

    def last_pull(self, peer_id: UUID) -> dict[str, Any] | None:
        rows = self._rows("SELECT claimed_at, complete_from, finished_at, complete, report FROM tcec_peer_pulls "
                          "WHERE peer_id = %s", (peer_id,))
        return rows[0] if rows else None

    # ---- writing what the peer said -------------------------------------------------------------------
    def save_stations(self, peer_id: UUID, infos: list[StationInfo], now: datetime) -> None:
        """Each station as received, its connectors joined (their status and policy kept); a connector the
        new StationInfo no longer lists leaves the station."""
        with self.pool.connection() as conn, conn.transaction():
            for info in infos:
                conn.execute(
                    "INSERT INTO tcec_peer_stations (peer_id, station_id, name, address, lng, lat, station_status, "
                    "info, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (peer_id, station_id) "
                    "DO UPDATE SET name = excluded.name, address = excluded.address, lng = excluded.lng, "
                    "lat = excluded.lat, station_status = excluded.station_status, info = excluded.info, "
                    "updated_at = excluded.updated_at",
                    (peer_id, info.StationID, info.StationName, info.Address, info.StationLng, info.StationLat,
                     int(info.StationStatus), wire.dumps(info.to_wire()), now))
                listed = [(e.EquipmentID, c) for e in info.EquipmentInfos for c in e.ConnectorInfos]
                conn.execute("DELETE FROM tcec_peer_connectors WHERE peer_id = %s AND station_id = %s "
                             "AND NOT connector_id = ANY(%s)",
                             (peer_id, info.StationID, [c.ConnectorID for _, c in listed]))
                for equipment_id, c in listed:
                    conn.execute(
                        "INSERT INTO tcec_peer_connectors (peer_id, connector_id, station_id, equipment_id, name, "
                        "connector_type, power) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (peer_id, connector_id) "
                        "DO UPDATE SET station_id = excluded.station_id, equipment_id = excluded.equipment_id, "
                        "name = excluded.name, connector_type = excluded.connector_type, power = excluded.power",
                        (peer_id, c.ConnectorID, info.StationID, equipment_id, c.ConnectorName, int(c.ConnectorType),
                         c.Power))

    def save_status(self, peer_id: UUID, statuses: list[tuple[str, int]], at: datetime) -> int:
        """Connector statuses that arrived at ``at``; each kept unless a later one is (see the module).
        Returns how many were kept."""
        kept = 0
        with self.pool.connection() as conn, conn.transaction():
            for connector_id, status in statuses:
                kept += conn.execute(
                    "INSERT INTO tcec_peer_connectors (peer_id, connector_id, status, status_at) VALUES (%s, %s, %s, %s) "
                    "ON CONFLICT (peer_id, connector_id) DO UPDATE SET status = excluded.status, "
                    "status_at = excluded.status_at WHERE tcec_peer_connectors.status_at IS NULL "
                    "OR tcec_peer_connectors.status_at <= excluded.status_at",
                    (peer_id, connector_id, int(status), at)).rowcount
        return kept

    def save_policy(self, peer_id: UUID, connector_id: str, policy: list[PolicyInfo] | None, error: str | None,
                    now: datetime) -> None:
        """The connector's PolicyInfos as received, or why the peer gave none (the old policy is dropped:
        a price the peer no longer stands by is no price to show)."""
        text = None if policy is None else wire.dumps([p.to_wire() for p in policy])
        with self.pool.connection() as conn:
            conn.execute("UPDATE tcec_peer_connectors SET policy = %s, policy_at = %s, policy_error = %s "
                         "WHERE peer_id = %s AND connector_id = %s", (text, now, error, peer_id, connector_id))

    # ---- reading, for the puller ----------------------------------------------------------------------
    def infrastructure_peers(self) -> list[UUID]:
        """Every tenant's enabled infrastructure peers (ids: each is read, and may fail, on its own)."""
        return [r["peer_id"] for r in self._rows(
            "SELECT peer_id FROM tcec_peers p WHERE " + PEER_OPEN + " ORDER BY tenant_id, operator_id", ())]

    def station_ids(self, peer_id: UUID) -> list[str]:
        return [r["station_id"] for r in self._rows(
            "SELECT station_id FROM tcec_peer_stations WHERE peer_id = %s ORDER BY station_id", (peer_id,))]

    def policies_due(self, peer_id: UUID, stations: list[str], older_than: datetime) -> list[str]:
        """The connectors whose policy to ask for: those of ``stations`` (just received: a changed station
        may have a changed tariff), those never asked, refused last time, or asked before ``older_than``."""
        return [r["connector_id"] for r in self._rows(
            "SELECT connector_id FROM tcec_peer_connectors WHERE peer_id = %s AND station_id IS NOT NULL AND "
            "(station_id = ANY(%s) OR policy_at IS NULL OR policy_error IS NOT NULL OR policy_at < %s) "
            "ORDER BY connector_id", (peer_id, stations, older_than))]

    # ---- reading, for a driver's start (the sessions) and the driver API ------------------------------
    def find_connector(self, tenant_id: UUID, operator_id: str, station_id: str,
                       connector_id: str) -> PeerConnector | None:
        """The connector of an enabled infrastructure peer of the tenant, on that station; else None."""
        rows = self._rows(
            f"SELECT c.*, p.operator_id FROM tcec_peer_connectors c JOIN tcec_peers p USING (peer_id) "  # noqa: S608
            f"WHERE p.tenant_id = %s AND p.operator_id = %s AND {PEER_OPEN} AND c.station_id = %s "
            "AND c.connector_id = %s", (tenant_id, operator_id, station_id, connector_id))
        return _connector(rows[0]) if rows else None

    def connectors(self, tenant_id: UUID, operator_id: str, station_id: str) -> list[PeerConnector]:
        rows = self._rows(
            f"SELECT c.*, p.operator_id FROM tcec_peer_connectors c JOIN tcec_peers p USING (peer_id) "  # noqa: S608
            f"WHERE p.tenant_id = %s AND p.operator_id = %s AND {PEER_OPEN} AND c.station_id = %s "
            "ORDER BY c.connector_id", (tenant_id, operator_id, station_id))
        return [_connector(r) for r in rows]

    def station(self, tenant_id: UUID, operator_id: str, station_id: str) -> dict[str, Any] | None:
        rows = self._rows(
            f"SELECT p.operator_id, s.* FROM tcec_peer_stations s JOIN tcec_peers p USING (peer_id) "  # noqa: S608
            f"WHERE p.tenant_id = %s AND p.operator_id = %s AND {PEER_OPEN} AND s.station_id = %s",
            (tenant_id, operator_id, station_id))
        return rows[0] if rows else None

    def stations(self, tenant_id: UUID, near: tuple[Decimal, Decimal] | None, limit: int) -> list[dict[str, Any]]:
        """The stations of the tenant's enabled infrastructure peers with their connectors free (Status 1)
        and total; nearest first from ``near`` (lat, lng; metres by the haversine), else by peer and id."""
        lat, lng = near if near is not None else (None, None)
        distance = ("CASE WHEN %(lat)s::float8 IS NULL THEN NULL ELSE 12742000 * asin(sqrt("
                    "power(sin(radians(s.lat::float8 - %(lat)s::float8) / 2), 2) + cos(radians(%(lat)s::float8)) * "
                    "cos(radians(s.lat::float8)) * power(sin(radians(s.lng::float8 - %(lng)s::float8) / 2), 2))) END")
        return self._rows(
            f"SELECT p.operator_id, s.station_id, s.name, s.address, s.lng, s.lat, s.station_status, "  # noqa: S608
            f"count(c.connector_id) AS total, count(c.connector_id) FILTER (WHERE c.status = 1) AS free, "
            f"{distance} AS distance_m FROM tcec_peer_stations s JOIN tcec_peers p USING (peer_id) "
            f"LEFT JOIN tcec_peer_connectors c ON c.peer_id = s.peer_id AND c.station_id = s.station_id "
            f"WHERE p.tenant_id = %(t)s AND {PEER_OPEN} GROUP BY p.operator_id, s.peer_id, s.station_id "
            "ORDER BY distance_m NULLS LAST, p.operator_id, s.station_id LIMIT %(limit)s",
            {"t": tenant_id, "lat": lat, "lng": lng, "limit": limit})


def _connector(row: dict[str, Any]) -> PeerConnector:
    policy = None if row["policy"] is None else [PolicyInfo.from_wire(p) for p in wire.loads(row["policy"])]
    return PeerConnector(row["peer_id"], row["operator_id"], row["station_id"], row["connector_id"],
                         row["equipment_id"], row["status"], row["status_at"], policy, row["policy_at"],
                         row["policy_error"])
