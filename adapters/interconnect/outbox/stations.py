"""``notification_stationInfo`` to regulator peers: a station's catalogue entry when it changes, and all of
them once a day (docs/interconnect.md, "Regulators").

A follower of its own (``<registry>:stations`` in ``tcec_outbox_tracking``) folds the Registry's catalogue
events into ``tcec_stations`` and ``tcec_station_piles`` and, in the same transaction, enqueues the StationInfo
of each station a batch changed (created, renamed or re-addressed, a pile registered, moved, enabled or
disabled) for every enabled regulator peer of its tenant configured before the change, keyed by the
station's last change in the batch (``info:<StationID>:<aggregate>:<version>``). The info is built from the
fold and the station's profile with ``catalogue.station_info``, the builder ``query_stations_info`` answers
with, so a regulator reads the same entry either way.

Why a fold and not the views: the views are another role's and may lag the log; a push read from them
could carry the name from before the change. Why its own position, not the gun follower's: on a
deployment that ran before it, it starts from the log's beginning and folds every station once
(enqueueing nothing for the past, when no regulator was configured).

A profile (``peers station``) is not an event: :func:`profile_changed` enqueues in the profile's own
transaction. The daily re-push (:func:`daily`) is the schedule's.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime
from typing import Any
from uuid import UUID

from eventsourcing.utils import get_topic
from psycopg.rows import dict_row

from adapters.interconnect.catalogue import station_info
from adapters.interconnect.mapping import station_code
from adapters.interconnect.store.outbox import Outbox, Push
from adapters.interconnect.tcec.models.stations import StationInfo, StationInfoNotification
from domain.registry import Pile, Station

INTERFACE = "notification_stationInfo"
TOPICS = [*(f"{get_topic(Station)}.{name}" for name in ("Created", "Changed")),
          *(f"{get_topic(Pile)}.{name}" for name in ("Registered", "Enabled", "Disabled", "Moved"))]
REGULATORS = ("regulator",)


def _fold(cursor: Any, e: Any) -> list[UUID]:
    """Fold one event; returns the stations whose entry it changed."""
    name = type(e).__name__
    if name == "Created":
        cursor.execute("INSERT INTO tcec_stations VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (station_id) DO NOTHING",
                       (e.originator_id, e.tenant_id, e.name, e.address, e.latitude, e.longitude))
        return [e.originator_id]
    if name == "Changed":
        cursor.execute("UPDATE tcec_stations SET name = %s, address = %s WHERE station_id = %s",
                       (e.name, e.address, e.originator_id))
        return [e.originator_id]
    if name == "Registered":
        cursor.execute("INSERT INTO tcec_station_piles VALUES (%s, %s, %s, %s, %s, true) ON CONFLICT (pile_id) "
                       "DO NOTHING", (e.originator_id, e.station_id, e.pile_no, e.kind, e.gun_count))
        return [e.station_id]
    cursor.execute("SELECT station_id FROM tcec_station_piles WHERE pile_id = %s", (e.originator_id,))
    row = cursor.fetchone()
    if row is None:  # a pile we never saw registered
        return []
    if name == "Moved":
        cursor.execute("UPDATE tcec_station_piles SET station_id = %s WHERE pile_id = %s",
                       (e.station_id, e.originator_id))
        return [row[0], e.station_id]
    cursor.execute("UPDATE tcec_station_piles SET enabled = %s WHERE pile_id = %s", (name == "Enabled", e.originator_id))
    return [row[0]]


def apply(cursor: Any, events: list[Any]) -> None:
    """Fold a batch of catalogue events; enqueue each changed station's info for the regulators."""
    changed: dict[UUID, tuple[str, datetime]] = {}
    for e in events:
        for station_id in _fold(cursor, e):
            changed.pop(station_id, None)  # keyed by its last change: re-inserted last
            changed[station_id] = (f"{e.originator_id}:{e.originator_version}", e.timestamp)
    enqueue(cursor, changed)


def profile_changed(cursor: Any, station_id: UUID, now: datetime) -> int:
    """A station's profile was set (in ``cursor``'s transaction): its info again, to the regulators."""
    return enqueue(cursor, {station_id: (f"profile:{now:%Y%m%d%H%M%S%f}", now)})


def entries(cursor: Any, *, station_ids: list[UUID] | None = None,
            tenant_id: UUID | None = None) -> dict[UUID, tuple[UUID, dict[str, Any], list[dict[str, Any]]]]:
    """station -> (tenant, its row with the profile, its piles), from the fold: these stations or a tenant's."""
    read = cursor.connection.cursor(row_factory=dict_row)
    rows = read.execute(
        "SELECT s.station_id, s.tenant_id, s.name, s.address, s.latitude, s.longitude, p.area_code, p.service_tel, "
        "p.station_type, p.construction, p.park_nums FROM tcec_stations s LEFT JOIN tcec_station_profiles p "
        "USING (station_id) WHERE (%(ids)s::uuid[] IS NULL OR s.station_id = ANY(%(ids)s)) "
        "AND (%(t)s::uuid IS NULL OR s.tenant_id = %(t)s) ORDER BY s.station_id",
        {"ids": station_ids, "t": tenant_id}).fetchall()
    piles: dict[UUID, list[dict[str, Any]]] = defaultdict(list)
    for pile in read.execute("SELECT station_id, pile_no, kind, gun_count, enabled FROM tcec_station_piles "
                             "WHERE station_id = ANY(%s) ORDER BY pile_no", ([r["station_id"] for r in rows],)):
        piles[pile["station_id"]].append(pile)
    return {r["station_id"]: (r["tenant_id"], r, piles[r["station_id"]]) for r in rows}


def _push(key: str, info: StationInfo) -> Push:
    return Push(INTERFACE, key, StationInfoNotification(StationInfo=info), f"station:{info.StationID}")


def enqueue(cursor: Any, changed: dict[UUID, tuple[str, datetime]]) -> int:
    if not changed:
        return 0
    peers = Outbox.peers(cursor, REGULATORS)
    if not peers:
        return 0
    made = 0
    for station_id, (tenant_id, row, piles) in entries(cursor, station_ids=list(changed)).items():
        mark, at = changed[station_id]
        for peer in peers.get(tenant_id, []):
            if peer.configured <= at:
                info = station_info(row, piles, peer.our_operator_id)
                made += Outbox.add(cursor, peer.peer_id, _push(f"info:{info.StationID}:{mark}", info), at)
    return made


def daily(cursor: Any, peer: Any, day: date, now: datetime) -> int:
    """Every station of the peer's tenant, keyed by ``day`` (``info:<yyyy-MM-dd>:<StationID>``): once a day."""
    made = 0
    for station_id, (_, row, piles) in entries(cursor, tenant_id=peer.tenant_id).items():
        info = station_info(row, piles, peer.our_operator_id)
        made += Outbox.add(cursor, peer.peer_id, _push(f"info:{day.isoformat()}:{station_code(station_id)}", info),
                           now)
    return made
