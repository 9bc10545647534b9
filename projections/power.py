"""The power view: energy measured per station and quarter hour, for the 经营大屏's 24-hour power curve.

A pile's realtime readings (``ChargingSession.MeterRead``) carry the session's energy so far. Each
good reading adds its increment over the session's previous good reading to the quarter hour (UTC,
15 minutes, so it lines up with every zone's local quarter hours) in which the reading was taken, at
the session's station: the same rule the domain uses to put an increment in a tariff tier (the
tier in force at the reading's time). A reading flagged as an anomaly (energy going backwards) adds
nothing, as in the ledger. ``power_sessions`` is the view's own memory of each open session's
station and last good energy, so the increments do not depend on how readings fall into batches (a
rebuild gives the same rows) and the view needs no other view; a session's row goes when it closes.

Energy after the last reading (what only the pile's transaction record shows) is not measured
here: the curve is what the piles reported while charging; the money is the revenue view's.

:func:`power_curve` reads it: average power per quarter hour over the last 24 hours (W = energy
in 0.1 Wh × 360 / seconds), the current quarter hour averaged over its elapsed part.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from projections.base import Item, View, on

BUCKET = timedelta(minutes=15)
BUCKET_SECONDS = int(BUCKET.total_seconds())

ADD = """
INSERT INTO power_buckets AS b (tenant_id, station_id, bucket, energy)
SELECT s.tenant_id, s.station_id, %(bucket)s, {energy} FROM power_sessions s WHERE s.session_id = %(id)s
ON CONFLICT (tenant_id, station_id, bucket) DO UPDATE SET energy = b.energy + EXCLUDED.energy"""
FIRST = ADD.format(energy="GREATEST(0, %(energy)s - s.last_energy)")
MORE = ADD.format(energy="%(energy)s")


def bucket_of(at: datetime) -> datetime:
    """The quarter hour (UTC) an instant falls in."""
    at = at.astimezone(UTC)
    return at - timedelta(minutes=at.minute % 15, seconds=at.second, microseconds=at.microsecond)


class PowerCurve(View):
    name = "power_curve"
    tables = ("power_buckets", "power_sessions")
    coalesce = frozenset({"ChargingSession.MeterRead"})
    ddl = (
        """CREATE TABLE IF NOT EXISTS power_buckets (
            tenant_id uuid NOT NULL, station_id uuid NOT NULL, bucket timestamptz NOT NULL, energy bigint NOT NULL,
            PRIMARY KEY (tenant_id, station_id, bucket))""",
        "CREATE INDEX IF NOT EXISTS power_buckets_tenant ON power_buckets (tenant_id, bucket)",
        """CREATE TABLE IF NOT EXISTS power_sessions (
            session_id uuid PRIMARY KEY, tenant_id uuid NOT NULL, station_id uuid NOT NULL,
            last_energy bigint NOT NULL DEFAULT 0)""",
    )

    @on("Sessions", "ChargingSession.Opened")
    def opened(self, cur: Any, item: Item) -> None:
        e = item.event
        cur.execute("INSERT INTO power_sessions (session_id, tenant_id, station_id) VALUES (%s, %s, %s) "
                    "ON CONFLICT (session_id) DO NOTHING", (e.originator_id, e.tenant_id, e.station_id))

    @on("Sessions", "ChargingSession.MeterRead")
    def read(self, cur: Any, item: Item) -> None:
        good = [r for r in item.group if not r.anomaly]
        if not good:
            return
        session = item.event.originator_id
        first = good[0]
        cur.execute(FIRST, {"bucket": bucket_of(first.at), "energy": first.energy, "id": session})
        more: dict[datetime, int] = {}
        for before, reading in zip(good, good[1:]):
            if reading.energy > before.energy:
                more[bucket_of(reading.at)] = more.get(bucket_of(reading.at), 0) + reading.energy - before.energy
        for bucket, energy in more.items():
            cur.execute(MORE, {"bucket": bucket, "energy": energy, "id": session})
        cur.execute("UPDATE power_sessions SET last_energy = GREATEST(last_energy, %s) WHERE session_id = %s",
                    (good[-1].energy, session))

    @on("Sessions", "ChargingSession.Failed", "ChargingSession.Settled", "ChargingSession.Abandoned")
    def closed(self, cur: Any, item: Item) -> None:
        cur.execute("DELETE FROM power_sessions WHERE session_id = %s", (item.event.originator_id,))


# ---- the query ------------------------------------------------------------------------------------
CURVE = """
SELECT bucket, sum(energy)::bigint AS energy FROM power_buckets
WHERE {scope} AND bucket >= %(first)s AND bucket <= %(last)s GROUP BY bucket"""


def scope_sql(tenant_id: UUID | None, stations: frozenset[UUID] | None, alias: str = "") -> tuple[str, dict[str, Any]]:
    """A view's rows in a tenant (None: every tenant) and, for an agent, their stations."""
    a = f"{alias}." if alias else ""
    where, params = ["true"], {}
    if tenant_id is not None:
        where.append(f"{a}tenant_id = %(scope_tenant)s")
        params["scope_tenant"] = tenant_id
    if stations is not None:
        where.append(f"{a}station_id = ANY(%(scope_stations)s)")
        params["scope_stations"] = list(stations)
    return " AND ".join(where), params


def power_curve(conn: Any, tenant_id: UUID | None, stations: frozenset[UUID] | None, at: datetime,
                hours: int = 24) -> list[dict[str, Any]]:
    """Average power per quarter hour for the ``hours`` up to ``at``, oldest first, every quarter present:
    ``{"at": start (UTC), "energy": 0.0001 kWh, "power_w": average W}``."""
    last = bucket_of(at)
    first = last - BUCKET * (hours * 4 - 1)
    where, params = scope_sql(tenant_id, stations)
    rows = conn.execute(CURVE.format(scope=where), {**params, "first": first, "last": last}).fetchall()
    energy = {bucket: int(e) for bucket, e in rows}
    points = []
    for i in range(hours * 4):
        start = first + BUCKET * i
        seconds = BUCKET_SECONDS if start < last else max(60, int((at - last).total_seconds()))
        e = energy.get(start, 0)
        points.append({"at": start.isoformat(), "energy": e, "power_w": e * 360 // seconds})
    return points
