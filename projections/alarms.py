"""The alarms view: lost heartbeats and disconnections, fault bits, abnormal sessions, pricing differences.

Every alarm's id is derived from what raised it (``fault:<pile>:<gun>:<code>:<notification id>``,
``pricing:<trade serial>`` ...), so a rebuild gives every alarm the id it had. That is what lets an
operator's acknowledgement live outside the view, in ``alarm_acknowledgements`` (written by the
operator API, never dropped by a rebuild) and still find its alarm afterwards.

An alarm is *cleared* by the event that ends its cause (the pile reconnects, the fault bit goes,
a re-priced session agrees with the pile); acknowledging is an operator's "seen it", independent
of clearing.
"""

from __future__ import annotations

from typing import Any

from projections.base import Item, View, on

FROM_PILE = """
INSERT INTO alarms (alarm_id, seq, tenant_id, station_id, pile_no, gun_no, trade_no, kind, code, severity,
                    message, raised_at)
SELECT %(alarm_id)s, %(seq)s, p.tenant_id, p.station_id, p.pile_no, %(gun_no)s, NULL, %(kind)s, %(code)s,
       %(severity)s, %(message)s, %(at)s
FROM alarm_piles p WHERE p.pile_id = %(pile_id)s"""

REFUSED_FROM_PILE = """
INSERT INTO alarms AS a (alarm_id, seq, tenant_id, station_id, pile_no, gun_no, trade_no, kind, code, severity,
                         message, raised_at, count)
SELECT %(alarm_id)s, %(seq)s, p.tenant_id, p.station_id, p.pile_no, NULL, NULL, 'frame_refused', %(code)s, 'major',
       %(message)s, %(at)s, %(count)s
FROM alarm_piles p WHERE p.pile_id = %(pile_id)s
ON CONFLICT (alarm_id) DO UPDATE SET count = a.count + EXCLUDED.count, message = EXCLUDED.message"""

FROM_SESSION = """
INSERT INTO alarms (alarm_id, seq, tenant_id, station_id, pile_no, gun_no, trade_no, kind, code, severity,
                    message, raised_at, count)
SELECT %(alarm_id)s, %(seq)s, s.tenant_id, s.station_id, s.pile_no, s.gun_no, s.trade_no, %(kind)s, %(code)s,
       %(severity)s, %(message)s, %(at)s, %(count)s
FROM alarm_sessions s WHERE s.session_id = %(session_id)s
ON CONFLICT (alarm_id) DO UPDATE SET count = alarms.count + EXCLUDED.count, message = EXCLUDED.message,
    code = EXCLUDED.code, cleared_at = NULL"""


class Alarms(View):
    name = "alarms"
    tables = ("alarms", "alarm_piles", "alarm_sessions")
    coalesce = frozenset({"ChargingSession.MeterRead"})
    ddl = (
        """CREATE TABLE IF NOT EXISTS alarms (
            alarm_id text PRIMARY KEY, seq bigint NOT NULL, tenant_id uuid NOT NULL, station_id uuid NOT NULL,
            pile_no text NOT NULL, gun_no int, trade_no text, kind text NOT NULL, code text NOT NULL DEFAULT '',
            severity text NOT NULL, message text NOT NULL, raised_at timestamptz NOT NULL,
            cleared_at timestamptz, count int NOT NULL DEFAULT 1)""",
        "CREATE INDEX IF NOT EXISTS alarms_tenant ON alarms (tenant_id, raised_at DESC)",
        """CREATE TABLE IF NOT EXISTS alarm_piles (
            pile_id uuid PRIMARY KEY, pile_no text NOT NULL, tenant_id uuid NOT NULL, station_id uuid NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS alarm_sessions (
            session_id uuid PRIMARY KEY, trade_no text NOT NULL, tenant_id uuid NOT NULL,
            station_id uuid NOT NULL, pile_no text NOT NULL, gun_no int NOT NULL)""",
        # Not a projection table: operators' acknowledgements, kept across rebuilds.
        """CREATE TABLE IF NOT EXISTS alarm_acknowledgements (
            alarm_id text PRIMARY KEY, tenant_id uuid NOT NULL, acknowledged_by text NOT NULL,
            acknowledged_at timestamptz NOT NULL, note text NOT NULL DEFAULT '')""",
    )

    # ---- piles ------------------------------------------------------------------------------
    @on("Registry", "Pile.Registered")
    def registered(self, cur: Any, item: Item) -> None:
        e = item.event
        cur.execute("INSERT INTO alarm_piles VALUES (%s, %s, %s, %s)",
                    (e.originator_id, e.pile_no, e.tenant_id, e.station_id))

    @on("Registry", "Pile.Moved")
    def moved(self, cur: Any, item: Item) -> None:
        cur.execute("UPDATE alarm_piles SET station_id = %s WHERE pile_id = %s",
                    (item.event.station_id, item.event.originator_id))

    def _pile_alarm(self, cur: Any, item: Item, alarm_id: str, kind: str, severity: str, message: str,
                    gun_no: int | None = None, code: str = "") -> None:
        cur.execute(FROM_PILE, {"alarm_id": alarm_id, "seq": item.notification_id, "gun_no": gun_no, "kind": kind,
                                "code": code, "severity": severity, "message": message, "at": item.event.at,
                                "pile_id": item.event.originator_id})

    @on("Registry", "Pile.Disconnected")
    def disconnected(self, cur: Any, item: Item) -> None:
        reason = item.event.reason or "connection closed"
        kind = "lost_heartbeat" if "heartbeat" in reason.lower() else "pile_offline"
        self._pile_alarm(cur, item, f"{kind}:{item.event.originator_id}:{item.notification_id}", kind, "major",
                         f"pile went offline: {reason}")

    @on("Registry", "Pile.Connected")
    def connected(self, cur: Any, item: Item) -> None:
        cur.execute("UPDATE alarms SET cleared_at = %s FROM alarm_piles p WHERE p.pile_id = %s "
                    "AND alarms.pile_no = p.pile_no AND alarms.kind IN ('lost_heartbeat', 'pile_offline') "
                    "AND alarms.cleared_at IS NULL", (item.event.at, item.event.originator_id))

    @on("Registry", "Pile.FaultRaised")
    def fault_raised(self, cur: Any, item: Item) -> None:
        e = item.event
        self._pile_alarm(cur, item, f"fault:{e.originator_id}:{e.gun_no}:{e.code}:{item.notification_id}", "fault",
                         "major", e.description or e.code, gun_no=e.gun_no, code=e.code)

    @on("Registry", "Pile.FaultCleared")
    def fault_cleared(self, cur: Any, item: Item) -> None:
        e = item.event
        cur.execute("UPDATE alarms SET cleared_at = %s FROM alarm_piles p WHERE p.pile_id = %s "
                    "AND alarms.pile_no = p.pile_no AND alarms.kind = 'fault' AND alarms.gun_no = %s "
                    "AND alarms.code = %s AND alarms.cleared_at IS NULL",
                    (e.at, e.originator_id, e.gun_no, e.code))

    @on("Registry", "Pile.FrameRefused")
    def frame_refused(self, cur: Any, item: Item) -> None:
        """Frames a pile may not send (another pile's number, a gun it has not, another's session): one
        alarm per pile, kind of refusal and UTC day, counting every refused frame."""
        e = item.event
        cur.execute(REFUSED_FROM_PILE, {
            "alarm_id": f"frame_refused:{e.originator_id}:{e.kind}:{e.at.date().isoformat()}",
            "seq": item.notification_id, "code": e.kind, "count": e.count, "at": e.at, "pile_id": e.originator_id,
            "message": f"frames refused ({e.kind}); the last, a 0x{e.frame_type:02X}: {e.detail}"})

    # ---- sessions ---------------------------------------------------------------------------
    @on("Sessions", "ChargingSession.Opened")
    def opened(self, cur: Any, item: Item) -> None:
        e = item.event
        cur.execute("INSERT INTO alarm_sessions VALUES (%s, %s, %s, %s, %s, %s)",
                    (e.originator_id, e.trade_no, e.tenant_id, e.station_id, e.pile_no, e.gun_no))

    def _session_alarm(self, cur: Any, item: Item, alarm_id: str, kind: str, severity: str, message: str,
                       code: str = "", count: int = 1) -> None:
        cur.execute(FROM_SESSION, {"alarm_id": alarm_id, "seq": item.notification_id, "kind": kind, "code": code,
                                   "severity": severity, "message": message, "at": item.event.at,
                                   "session_id": item.event.originator_id, "count": count})

    @on("Sessions", "ChargingSession.Failed")
    def failed(self, cur: Any, item: Item) -> None:
        self._session_alarm(cur, item, f"session_failed:{item.event.originator_id}", "session_failed", "minor",
                            f"start failed: {item.event.reason}")

    @on("Sessions", "ChargingSession.Abandoned")
    def abandoned(self, cur: Any, item: Item) -> None:
        e = item.event
        self._session_alarm(cur, item, f"session_abandoned:{e.originator_id}", "session_abandoned", "major",
                            f"closed without the pile's record ({e.reason}); billed {e.bill['total_fen']} fen "
                            "from measured energy")

    @on("Sessions", "ChargingSession.FaultRecorded")
    def fault(self, cur: Any, item: Item) -> None:
        e = item.event
        self._session_alarm(cur, item, f"session_fault:{e.originator_id}:{item.notification_id}", "session_fault",
                            "major", f"{e.source}: {e.detail or e.code}", code=str(e.code))

    @on("Sessions", "ChargingSession.MeterRead")
    def anomalies(self, cur: Any, item: Item) -> None:
        bad = [r for r in item.group if r.anomaly]
        if bad:
            self._session_alarm(cur, item, f"meter_anomaly:{item.event.originator_id}", "meter_anomaly", "minor",
                                bad[-1].anomaly, count=len(bad))

    @on("Sessions", "ChargingSession.Settled", "ChargingSession.Resettled")
    def pricing(self, cur: Any, item: Item) -> None:
        e = item.event
        alarm_id = f"pricing_difference:{e.originator_id}"
        if e.pile_difference:
            yuan = e.pile_difference / 10000
            self._session_alarm(cur, item, alarm_id, "pricing_difference", "minor",
                                f"the pile billed {yuan:+.4f} yuan against the platform's {e.bill['total_fen']} fen",
                                code=str(e.pile_difference), count=1)
        elif item.name == "ChargingSession.Resettled":  # a first settlement has no earlier difference to clear
            cur.execute("UPDATE alarms SET cleared_at = %s WHERE alarm_id = %s AND cleared_at IS NULL",
                        (e.at, alarm_id))
