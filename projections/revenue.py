"""The revenue view: per station-local day × station × tenant, what the sessions billed.

A session counts on the day (in its station's time zone, kept in its ``Opened`` event) of the
event that billed it: ``Settled`` (the pile's record), or ``Abandoned`` (force-close, record
overdue: priced from measured energy). A later ``Resettled`` adds the difference to the day it
happened: more energy and fees if the new bill is higher; if lower, the fees go down and the
difference is also shown as ``refunds_fen`` (money the station's sessions gave back to drivers).
Electricity and service fees stay apart. Wallet refunds (a driver's unspent balance paid back)
are not station revenue and are not counted here.

``revenue_sessions`` is the view's own memory of each session's station, zone and start, so the
view needs no other view and rebuilds alone.
"""

from __future__ import annotations

from typing import Any

from projections.base import Item, View, instant, on

ADD = """
INSERT INTO revenue_daily (day, tenant_id, station_id, sessions, energy, electricity_fen, service_fen,
                           refunds_fen, charging_seconds)
SELECT (%(at)s::timestamptz AT TIME ZONE s.timezone)::date, s.tenant_id, s.station_id, %(sessions)s, %(energy)s,
       %(electricity)s, %(service)s, %(refunds)s, %(seconds)s
FROM revenue_sessions s WHERE s.session_id = %(id)s
ON CONFLICT (day, tenant_id, station_id) DO UPDATE SET
    sessions = revenue_daily.sessions + EXCLUDED.sessions, energy = revenue_daily.energy + EXCLUDED.energy,
    electricity_fen = revenue_daily.electricity_fen + EXCLUDED.electricity_fen,
    service_fen = revenue_daily.service_fen + EXCLUDED.service_fen,
    refunds_fen = revenue_daily.refunds_fen + EXCLUDED.refunds_fen,
    charging_seconds = revenue_daily.charging_seconds + EXCLUDED.charging_seconds"""


class Revenue(View):
    name = "revenue"
    tables = ("revenue_daily", "revenue_sessions")
    ddl = (
        """CREATE TABLE IF NOT EXISTS revenue_daily (
            day date NOT NULL, tenant_id uuid NOT NULL, station_id uuid NOT NULL,
            sessions int NOT NULL, energy bigint NOT NULL, electricity_fen bigint NOT NULL,
            service_fen bigint NOT NULL, refunds_fen bigint NOT NULL, charging_seconds bigint NOT NULL,
            PRIMARY KEY (day, tenant_id, station_id))""",
        "CREATE INDEX IF NOT EXISTS revenue_daily_tenant ON revenue_daily (tenant_id, day)",
        """CREATE TABLE IF NOT EXISTS revenue_sessions (
            session_id uuid PRIMARY KEY, tenant_id uuid NOT NULL, station_id uuid NOT NULL,
            timezone text NOT NULL, started_at timestamptz)""",
    )

    @on("Sessions", "ChargingSession.Opened")
    def opened(self, cur: Any, item: Item) -> None:
        e = item.event
        cur.execute("INSERT INTO revenue_sessions VALUES (%s, %s, %s, %s, NULL)",
                    (e.originator_id, e.tenant_id, e.station_id, e.timezone))

    @on("Sessions", "ChargingSession.Charging")
    def charging(self, cur: Any, item: Item) -> None:
        cur.execute("UPDATE revenue_sessions SET started_at = %s WHERE session_id = %s",
                    (item.event.at, item.event.originator_id))

    def _add(self, cur: Any, item: Item, *, sessions: int, energy: int, electricity: int, service: int,
             refunds: int = 0, seconds: Any = 0) -> None:
        cur.execute(ADD, {"at": item.event.at, "id": item.event.originator_id, "sessions": sessions,
                          "energy": energy, "electricity": electricity, "service": service, "refunds": refunds,
                          "seconds": seconds})

    @on("Sessions", "ChargingSession.Settled")
    def settled(self, cur: Any, item: Item) -> None:
        e = item.event
        started, ended = instant(e.record.get("started_at")), instant(e.record.get("ended_at"))
        seconds = int((ended - started).total_seconds()) if started and ended and ended > started else 0
        self._add(cur, item, sessions=1, energy=e.bill["energy"], electricity=e.bill["electricity_fen"],
                  service=e.bill["service_fen"], seconds=seconds)

    @on("Sessions", "ChargingSession.Abandoned")
    def abandoned(self, cur: Any, item: Item) -> None:
        e = item.event
        cur.execute(ADD.replace("%(seconds)s", "COALESCE(GREATEST(0, EXTRACT(EPOCH FROM "
                                               "%(at)s::timestamptz - s.started_at))::bigint, 0)"),
                    {"at": e.at, "id": e.originator_id, "sessions": 1, "energy": e.bill["energy"],
                     "electricity": e.bill["electricity_fen"], "service": e.bill["service_fen"], "refunds": 0})

    @on("Sessions", "ChargingSession.Resettled")
    def resettled(self, cur: Any, item: Item) -> None:
        e = item.event
        before = e.previous_bill or {"energy": 0, "electricity_fen": 0, "service_fen": 0, "total_fen": 0}
        self._add(cur, item, sessions=0 if e.previous_bill else 1, energy=e.bill["energy"] - before["energy"],
                  electricity=e.bill["electricity_fen"] - before["electricity_fen"],
                  service=e.bill["service_fen"] - before["service_fen"],
                  refunds=max(0, before["total_fen"] - e.bill["total_fen"]))
