"""What the 经营大屏 (big screen) shows, read from the views in one place: the operator API's
``GET /operator/v1/dashboard/screen`` answers :func:`screen_figures`, and the console's big screen
renders the very same dict on every tick of its live stream.

* the dashboard (:func:`projections.dashboard.dashboard`: piles online / offline / faulted, guns,
  today and this month in each station's own zone);
* the power drawn now: the latest reading of every gun charging (``live_guns``, voltage × current);
* the 24-hour power curve (:func:`projections.power.power_curve`);
* the top stations today by energy or by revenue (``revenue_daily`` at each station's local today,
  names from ``catalogue_stations``);
* the newest open alarms (``alarms``, not cleared), as ``GET /operator/v1/alarms?state=open`` lists them.

Scope: a tenant (None: every tenant, for a platform admin) and, for an agent, their stations.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from psycopg.rows import dict_row

from projections.base import jsonable
from projections.dashboard import dashboard
from projections.power import power_curve, scope_sql

TOP = """
SELECT s.station_id, s.name, s.timezone, COALESCE(r.sessions, 0) AS sessions, COALESCE(r.energy, 0) AS energy,
       COALESCE(r.electricity_fen + r.service_fen, 0) AS revenue_fen
FROM catalogue_stations s
LEFT JOIN revenue_daily r ON r.station_id = s.station_id AND r.tenant_id = s.tenant_id
     AND r.day = (%(at)s::timestamptz AT TIME ZONE s.timezone)::date
WHERE {scope} ORDER BY {order} DESC, s.name, s.station_id LIMIT %(limit)s"""

POWER_NOW = """
SELECT COALESCE(sum((reading->>'voltage_dv')::bigint * (reading->>'current_da')::bigint / 100), 0)::bigint,
       count(*) FILTER (WHERE reading IS NOT NULL)
FROM live_guns WHERE {scope} AND status = 'charging' AND trade_no IS NOT NULL
     AND reading ? 'voltage_dv' AND reading ? 'current_da'"""

ALARMS = """
SELECT alarm_id, station_id, pile_no, gun_no, trade_no, kind, code, severity, message, raised_at, count
FROM alarms WHERE {scope} AND cleared_at IS NULL ORDER BY raised_at DESC, seq DESC LIMIT %(limit)s"""

Ranking = Literal["energy", "revenue"]


def top_stations(conn: Any, tenant_id: UUID | None, stations: frozenset[UUID] | None, at: datetime,
                 by: Ranking = "energy", limit: int = 10) -> list[dict[str, Any]]:
    """The stations in scope ranked by today's (each station's own local day) energy or revenue."""
    where, params = scope_sql(tenant_id, stations, "s")
    order = {"energy": "COALESCE(r.energy, 0)", "revenue": "COALESCE(r.electricity_fen + r.service_fen, 0)"}[by]
    rows = conn.cursor(row_factory=dict_row).execute(TOP.format(scope=where, order=order),
                                                     {**params, "at": at, "limit": limit}).fetchall()
    return [{**row, "sessions": int(row["sessions"]), "energy": int(row["energy"]),
             "revenue_fen": int(row["revenue_fen"])} for row in rows]


def power_now(conn: Any, tenant_id: UUID | None, stations: frozenset[UUID] | None) -> dict[str, int]:
    """Watts drawn now by the guns charging, from their latest readings; and how many report one."""
    where, params = scope_sql(tenant_id, stations)
    watts, guns = conn.execute(POWER_NOW.format(scope=where), params).fetchone()
    return {"power_w": int(watts), "guns_reporting": int(guns)}


def open_alarms(conn: Any, tenant_id: UUID | None, stations: frozenset[UUID] | None,
                limit: int = 8) -> list[dict[str, Any]]:
    """The newest alarms not cleared yet."""
    where, params = scope_sql(tenant_id, stations)
    return conn.cursor(row_factory=dict_row).execute(ALARMS.format(scope=where), {**params, "limit": limit}).fetchall()


def zone_of(conn: Any, tenant_id: UUID | None, stations: frozenset[UUID] | None) -> str:
    """The time zone most of the stations in scope keep (the screen's clock and curve); Asia/Shanghai if none."""
    where, params = scope_sql(tenant_id, stations)
    zones = Counter(z for (z,) in conn.execute(f"SELECT timezone FROM catalogue_stations WHERE {where}",  # noqa: S608
                                               params).fetchall())
    return zones.most_common(1)[0][0] if zones else "Asia/Shanghai"


def screen_figures(conn: Any, tenant_id: UUID | None, stations: frozenset[UUID] | None, at: datetime,
                   by: Ranking = "energy", top: int = 5, alarms: int = 8) -> dict[str, Any]:
    """Everything the big screen shows, JSON-ready (ids and instants as strings, money in fen)."""
    figures = dashboard(conn, tenant_id, stations, at)
    figures["power_now"] = power_now(conn, tenant_id, stations)
    figures["power_curve"] = power_curve(conn, tenant_id, stations, at)
    figures["top_stations"] = {"by": by, "items": jsonable(top_stations(conn, tenant_id, stations, at, by, top))}
    figures["alarms"] = jsonable(open_alarms(conn, tenant_id, stations, alarms))
    figures["zone"] = zone_of(conn, tenant_id, stations)
    return figures
