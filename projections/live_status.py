"""The live status view: each pile (online, enabled, firmware, last command) and each gun.

A gun row has two owners that never write the same column: the Registry's events (status,
plugged, faults, from the pile link) and the Sessions' events (the session on the gun and its
latest meter reading). Both sides upsert, so the row ends up the same whichever log is read first:
a rebuild that reads the Registry to its end before the Sessions gives the same table as the live
process that interleaved them.
"""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

from projections.base import Item, View, jsonable, on

GUN_UPSERT_REGISTRY = """
INSERT INTO live_guns (pile_no, gun_no, pile_id, tenant_id, station_id)
VALUES (%(pile_no)s, %(gun_no)s, %(pile_id)s, %(tenant_id)s, %(station_id)s)
ON CONFLICT (pile_no, gun_no) DO UPDATE SET pile_id = EXCLUDED.pile_id, tenant_id = EXCLUDED.tenant_id,
    station_id = EXCLUDED.station_id"""


class LiveStatus(View):
    name = "live_status"
    tables = ("live_piles", "live_guns")
    coalesce = frozenset({"ChargingSession.MeterRead"})
    ddl = (
        """CREATE TABLE IF NOT EXISTS live_piles (
            pile_id uuid PRIMARY KEY, pile_no text NOT NULL UNIQUE, tenant_id uuid NOT NULL,
            station_id uuid NOT NULL, kind text NOT NULL, gun_count int NOT NULL, enabled boolean NOT NULL,
            online boolean NOT NULL DEFAULT false, connected_at timestamptz, disconnected_at timestamptz,
            disconnect_reason text, gateway text, protocol_version int, program_version text, tariff_id uuid,
            last_command jsonb, last_answer jsonb, registered_at timestamptz NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS live_piles_tenant ON live_piles (tenant_id, station_id, pile_no)",
        """CREATE TABLE IF NOT EXISTS live_guns (
            pile_no text NOT NULL, gun_no int NOT NULL, pile_id uuid, tenant_id uuid, station_id uuid,
            status text NOT NULL DEFAULT 'offline', plugged boolean NOT NULL DEFAULT false,
            faults text[] NOT NULL DEFAULT '{}', status_at timestamptz,
            session_id uuid, trade_no text, session_state text, session_since timestamptz, reading jsonb,
            PRIMARY KEY (pile_no, gun_no))""",
        "CREATE INDEX IF NOT EXISTS live_guns_tenant ON live_guns (tenant_id, station_id)",
        "CREATE INDEX IF NOT EXISTS live_guns_session ON live_guns (session_id)",
    )

    # ---- Registry: piles and their guns ------------------------------------------------------
    @on("Registry", "Pile.Registered")
    def registered(self, cur: Any, item: Item) -> None:
        e = item.event
        cur.execute("INSERT INTO live_piles (pile_id, pile_no, tenant_id, station_id, kind, gun_count, enabled, "
                    "registered_at) VALUES (%s, %s, %s, %s, %s, %s, true, %s)",
                    (e.originator_id, e.pile_no, e.tenant_id, e.station_id, e.kind, e.gun_count, e.timestamp))
        for gun_no in range(1, e.gun_count + 1):
            cur.execute(GUN_UPSERT_REGISTRY, {"pile_no": e.pile_no, "gun_no": gun_no, "pile_id": e.originator_id,
                                              "tenant_id": e.tenant_id, "station_id": e.station_id})

    @on("Registry", "Pile.Enabled", "Pile.Disabled")
    def enabled(self, cur: Any, item: Item) -> None:
        cur.execute("UPDATE live_piles SET enabled = %s WHERE pile_id = %s",
                    (item.name == "Pile.Enabled", item.event.originator_id))

    @on("Registry", "Pile.TariffAssigned")
    def tariff(self, cur: Any, item: Item) -> None:
        cur.execute("UPDATE live_piles SET tariff_id = %s WHERE pile_id = %s",
                    (item.event.tariff_id, item.event.originator_id))

    @on("Registry", "Pile.Moved")
    def moved(self, cur: Any, item: Item) -> None:
        e = item.event
        cur.execute("UPDATE live_piles SET station_id = %s WHERE pile_id = %s", (e.station_id, e.originator_id))
        cur.execute("UPDATE live_guns SET station_id = %s WHERE pile_id = %s", (e.station_id, e.originator_id))

    @on("Registry", "Pile.Connected")
    def connected(self, cur: Any, item: Item) -> None:
        e = item.event
        cur.execute("UPDATE live_piles SET online = true, connected_at = %s, gateway = %s, protocol_version = %s, "
                    "program_version = %s WHERE pile_id = %s",
                    (e.at, e.gateway, e.protocol_version, e.program_version, e.originator_id))

    @on("Registry", "Pile.Disconnected")
    def disconnected(self, cur: Any, item: Item) -> None:
        e = item.event
        cur.execute("UPDATE live_piles SET online = false, disconnected_at = %s, disconnect_reason = %s "
                    "WHERE pile_id = %s", (e.at, e.reason, e.originator_id))
        cur.execute("UPDATE live_guns SET status = 'offline', status_at = %s WHERE pile_id = %s",
                    (e.at, e.originator_id))

    @on("Registry", "Pile.GunStatusChanged")
    def gun_status(self, cur: Any, item: Item) -> None:
        e = item.event
        cur.execute("UPDATE live_guns SET status = %s, plugged = %s, status_at = %s WHERE pile_id = %s AND gun_no = %s",
                    (e.status, e.plugged, e.at, e.originator_id, e.gun_no))

    @on("Registry", "Pile.FaultRaised")
    def fault_raised(self, cur: Any, item: Item) -> None:
        e = item.event
        cur.execute("UPDATE live_guns SET faults = array_append(array_remove(faults, %s), %s) "
                    "WHERE pile_id = %s AND gun_no = %s", (e.code, e.code, e.originator_id, e.gun_no))

    @on("Registry", "Pile.FaultCleared")
    def fault_cleared(self, cur: Any, item: Item) -> None:
        e = item.event
        cur.execute("UPDATE live_guns SET faults = array_remove(faults, %s) WHERE pile_id = %s AND gun_no = %s",
                    (e.code, e.originator_id, e.gun_no))

    @on("Registry", "Pile.CommandRequested")
    def command(self, cur: Any, item: Item) -> None:
        e = item.event
        cur.execute("UPDATE live_piles SET last_command = %s WHERE pile_id = %s",
                    (Jsonb(jsonable({"command": e.command, "params": e.params, "at": e.at, "author": e.author})),
                     e.originator_id))

    @on("Registry", "Pile.CommandAnswered")
    def answered(self, cur: Any, item: Item) -> None:
        e = item.event
        cur.execute("UPDATE live_piles SET last_answer = %s WHERE pile_id = %s",
                    (Jsonb(jsonable({"command": e.command, "ok": e.ok, "detail": e.detail, "at": e.at})),
                     e.originator_id))

    # ---- Sessions: what is charging on each gun ------------------------------------------------
    @on("Sessions", "ChargingSession.Opened")
    def session_opened(self, cur: Any, item: Item) -> None:
        e = item.event
        cur.execute("INSERT INTO live_guns (pile_no, gun_no, session_id, trade_no, session_state, session_since) "
                    "VALUES (%(pile_no)s, %(gun_no)s, %(id)s, %(trade_no)s, 'requested', %(at)s) "
                    "ON CONFLICT (pile_no, gun_no) DO UPDATE SET session_id = %(id)s, trade_no = %(trade_no)s, "
                    "session_state = 'requested', session_since = %(at)s, reading = NULL",
                    {"pile_no": e.pile_no, "gun_no": e.gun_no, "id": e.originator_id, "trade_no": e.trade_no,
                     "at": e.opened_at})

    def _session_state(self, cur: Any, item: Item, state: str, at: Any) -> None:
        cur.execute("UPDATE live_guns SET session_state = %s, session_since = %s WHERE session_id = %s",
                    (state, at, item.event.originator_id))

    def _session_closed(self, cur: Any, item: Item) -> None:
        cur.execute("UPDATE live_guns SET session_id = NULL, trade_no = NULL, session_state = NULL, "
                    "session_since = NULL, reading = NULL WHERE session_id = %s", (item.event.originator_id,))

    @on("Sessions", "ChargingSession.StartAcknowledged")
    def acknowledged(self, cur: Any, item: Item) -> None:
        if item.event.ok:
            self._session_state(cur, item, "starting", item.event.at)
        else:
            self._session_closed(cur, item)

    @on("Sessions", "ChargingSession.Charging")
    def charging(self, cur: Any, item: Item) -> None:
        self._session_state(cur, item, "charging", item.event.at)

    @on("Sessions", "ChargingSession.StopRequested")
    def stopping(self, cur: Any, item: Item) -> None:
        self._session_state(cur, item, "stopping", item.event.at)

    @on("Sessions", "ChargingSession.Failed", "ChargingSession.Settled", "ChargingSession.Resettled",
        "ChargingSession.Abandoned")
    def closed(self, cur: Any, item: Item) -> None:
        self._session_closed(cur, item)

    @on("Sessions", "ChargingSession.MeterRead")
    def reading(self, cur: Any, item: Item) -> None:
        e = item.event
        good = [r for r in item.group if not r.anomaly]
        if not good:
            return
        last = good[-1]
        cur.execute("UPDATE live_guns SET reading = %s WHERE session_id = %s",
                    (Jsonb(jsonable({"at": last.at, "energy": last.energy, **(last.measurements or {})})),
                     e.originator_id))
