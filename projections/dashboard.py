"""The dashboard (经营大屏): one tenant's network at a glance, composed from three views at read time.

It has no table of its own on purpose: "today" moves with the clock, not with events, so a stored
counter would be wrong at every station's midnight until the next event. Instead it reads
``live_piles``/``live_guns`` (what is online, faulted, charging now) and ``revenue_daily`` (rows
already per station-local day), and picks, for each station, the row of *that station's* today and
this month (``catalogue_stations.timezone``, Asia/Shanghai unless the station says otherwise).

Utilisation today = charging seconds of the sessions billed today / (guns × seconds since the
station's local midnight), summed over the stations in scope.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.rows import dict_row

QUERY = """
WITH st AS (
    SELECT s.station_id, s.timezone, (%(at)s::timestamptz AT TIME ZONE s.timezone) AS local_now
    FROM catalogue_stations s WHERE {scope}
), piles AS (
    SELECT count(*) AS piles,
           count(*) FILTER (WHERE p.online) AS online,
           count(*) FILTER (WHERE NOT p.online) AS offline,
           count(*) FILTER (WHERE EXISTS (SELECT 1 FROM live_guns g WHERE g.pile_id = p.pile_id
                                          AND (g.status = 'fault' OR cardinality(g.faults) > 0))) AS faulted
    FROM live_piles p JOIN st USING (station_id)
), guns AS (
    SELECT count(*) AS guns,
           count(*) FILTER (WHERE g.status = 'idle') AS guns_idle,
           count(*) FILTER (WHERE g.status = 'charging') AS guns_charging,
           count(*) FILTER (WHERE g.status = 'fault') AS guns_fault,
           count(*) FILTER (WHERE g.status = 'offline') AS guns_offline,
           count(*) FILTER (WHERE g.trade_no IS NOT NULL) AS open_sessions
    FROM live_guns g JOIN st USING (station_id) WHERE g.pile_id IS NOT NULL
), capacity AS (
    SELECT sum(n.guns * EXTRACT(EPOCH FROM st.local_now - date_trunc('day', st.local_now))) AS gun_seconds
    FROM st JOIN (SELECT station_id, count(*) AS guns FROM live_guns WHERE pile_id IS NOT NULL
                  GROUP BY station_id) n USING (station_id)
), money AS (
    SELECT COALESCE(sum(r.sessions) FILTER (WHERE r.day = st.local_now::date), 0) AS sessions_today,
           COALESCE(sum(r.energy) FILTER (WHERE r.day = st.local_now::date), 0) AS energy_today,
           COALESCE(sum(r.electricity_fen + r.service_fen) FILTER (WHERE r.day = st.local_now::date), 0)
               AS revenue_today_fen,
           COALESCE(sum(r.charging_seconds) FILTER (WHERE r.day = st.local_now::date), 0) AS seconds_today,
           COALESCE(sum(r.sessions), 0) AS sessions_month,
           COALESCE(sum(r.energy), 0) AS energy_month,
           COALESCE(sum(r.electricity_fen + r.service_fen), 0) AS revenue_month_fen
    FROM revenue_daily r JOIN st USING (station_id)
    WHERE r.day >= date_trunc('month', st.local_now)::date AND r.day <= st.local_now::date
)
SELECT (SELECT count(*) FROM st) AS stations, piles.*, guns.*, money.*, capacity.gun_seconds
FROM piles, guns, money, capacity"""


def dashboard(conn: Any, tenant_id: UUID | None, stations: frozenset[UUID] | None, at: datetime) -> dict[str, Any]:
    scope, params = ["true"], {"at": at}
    if tenant_id is not None:
        scope.append("s.tenant_id = %(tenant)s")
        params["tenant"] = tenant_id
    if stations is not None:
        scope.append("s.station_id = ANY(%(stations)s)")
        params["stations"] = list(stations)
    row = conn.cursor(row_factory=dict_row).execute(QUERY.format(scope=" AND ".join(scope)), params).fetchone()
    gun_seconds = float(row.pop("gun_seconds") or 0)
    seconds = int(row.pop("seconds_today"))
    return {
        "at": at.isoformat(),
        "stations": row["stations"],
        "piles": {"total": row["piles"], "online": row["online"], "offline": row["offline"],
                  "faulted": row["faulted"]},
        "guns": {"total": row["guns"], "idle": row["guns_idle"], "charging": row["guns_charging"],
                 "fault": row["guns_fault"], "offline": row["guns_offline"], "open_sessions": row["open_sessions"]},
        "today": {"sessions": int(row["sessions_today"]), "energy": int(row["energy_today"]),
                  "revenue_fen": int(row["revenue_today_fen"]),
                  "utilisation": round(min(1.0, seconds / gun_seconds), 4) if gun_seconds else 0.0},
        "month": {"sessions": int(row["sessions_month"]), "energy": int(row["energy_month"]),
                  "revenue_fen": int(row["revenue_month_fen"])},
    }
