"""The orders view: one row per charging session, with its money, energy and a readable timeline.

``seq`` is the Sessions notification id of the session's ``Opened`` event: immutable, unique, and
increasing in commit order, so it is the key the order list pages on (newest first). An order
opened while someone pages has a higher ``seq`` than every row they have seen and can never push a
row from one page onto the next (docs/operator-api.md).

The driver comes from the Wallets log (``Wallet.Opened``: wallet id -> driver id). Both sides fill
it in (a session opened after its wallet looks it up; a wallet read after its sessions updates
them), so the result does not depend on which log is read first.
"""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

from projections.base import Item, View, instant, jsonable, on

TIERS = ("sharp", "peak", "flat", "valley")
COLUMNS = (
    "trade_no", "seq", "session_id", "tenant_id", "station_id", "pile_no", "gun_no", "wallet_id", "driver_id",
    "origin", "state", "ordered_at", "requested_at", "started_at", "stopped_at", "settled_at", "energy",
    "energy_sharp", "energy_peak", "energy_flat", "energy_valley", "electricity_fen", "service_fen", "total_fen",
    "tariff_id", "tariff_version", "pile_amount", "pile_difference", "stop_code", "reason", "readings",
    "anomalies", "timeline",
)


def step(at: Any, name: str, **detail: Any) -> Jsonb:
    """One timeline entry, as a one-element JSON array to append."""
    return Jsonb([jsonable({"at": at, "step": name, **{k: v for k, v in detail.items() if v not in (None, "")}})])


class Orders(View):
    name = "orders"
    tables = ("orders", "order_drivers")
    coalesce = frozenset({"ChargingSession.MeterRead"})
    ddl = (
        """CREATE TABLE IF NOT EXISTS orders (
            trade_no text PRIMARY KEY, seq bigint NOT NULL UNIQUE, session_id uuid NOT NULL UNIQUE,
            tenant_id uuid NOT NULL, station_id uuid NOT NULL, pile_no text NOT NULL, gun_no int NOT NULL,
            wallet_id uuid, driver_id text, origin text NOT NULL, state text NOT NULL,
            ordered_at timestamptz NOT NULL, requested_at timestamptz, started_at timestamptz,
            stopped_at timestamptz, settled_at timestamptz,
            energy bigint NOT NULL DEFAULT 0, energy_sharp bigint NOT NULL DEFAULT 0,
            energy_peak bigint NOT NULL DEFAULT 0, energy_flat bigint NOT NULL DEFAULT 0,
            energy_valley bigint NOT NULL DEFAULT 0, electricity_fen bigint, service_fen bigint, total_fen bigint,
            tariff_id uuid NOT NULL, tariff_version int NOT NULL, pile_amount bigint, pile_difference bigint,
            stop_code int, reason text NOT NULL DEFAULT '', readings int NOT NULL DEFAULT 0,
            anomalies int NOT NULL DEFAULT 0, timeline jsonb NOT NULL DEFAULT '[]')""",
        "CREATE INDEX IF NOT EXISTS orders_tenant_seq ON orders (tenant_id, seq DESC)",
        "CREATE INDEX IF NOT EXISTS orders_station_seq ON orders (tenant_id, station_id, seq DESC)",
        "CREATE INDEX IF NOT EXISTS orders_pile_seq ON orders (tenant_id, pile_no, seq DESC)",
        "CREATE INDEX IF NOT EXISTS orders_wallet ON orders (wallet_id)",
        """CREATE TABLE IF NOT EXISTS order_drivers (
            wallet_id uuid PRIMARY KEY, tenant_id uuid NOT NULL, driver_id text NOT NULL)""",
    )

    @on("Wallets", "Wallet.Opened")
    def wallet_opened(self, cur: Any, item: Item) -> None:
        e = item.event
        cur.execute("INSERT INTO order_drivers VALUES (%s, %s, %s)", (e.originator_id, e.tenant_id, e.driver_id))
        cur.execute("UPDATE orders SET driver_id = %s WHERE wallet_id = %s", (e.driver_id, e.originator_id))

    @on("Sessions", "ChargingSession.Opened")
    def opened(self, cur: Any, item: Item) -> None:
        e = item.event
        cur.execute(
            "INSERT INTO orders (trade_no, seq, session_id, tenant_id, station_id, pile_no, gun_no, wallet_id, "
            "driver_id, origin, state, ordered_at, tariff_id, tariff_version, timeline) "
            "VALUES (%(trade_no)s, %(seq)s, %(id)s, %(tenant_id)s, %(station_id)s, %(pile_no)s, %(gun_no)s, "
            "%(wallet_id)s, (SELECT driver_id FROM order_drivers WHERE wallet_id = %(wallet_id)s), %(origin)s, "
            "'requested', %(at)s, %(tariff_id)s, %(tariff_version)s, %(timeline)s)",
            {"trade_no": e.trade_no, "seq": item.notification_id, "id": e.originator_id, "tenant_id": e.tenant_id,
             "station_id": e.station_id, "pile_no": e.pile_no, "gun_no": e.gun_no, "wallet_id": e.wallet_id,
             "origin": e.origin, "at": e.opened_at, "tariff_id": e.tariff["id"],
             "tariff_version": e.tariff["version"],
             "timeline": step(e.opened_at, "ordered", by=e.author, origin=e.origin, hold_fen=e.hold_fen or None)},
        )

    def _update(self, cur: Any, item: Item, sets: str, timeline: Jsonb | None = None, **params: Any) -> None:
        if timeline is not None:
            sets += ", timeline = timeline || %(timeline)s"
        cur.execute(f"UPDATE orders SET {sets} WHERE session_id = %(id)s",  # noqa: S608 - fixed column lists
                    {**params, "timeline": timeline, "id": item.event.originator_id})

    @on("Sessions", "ChargingSession.StartAcknowledged")
    def acknowledged(self, cur: Any, item: Item) -> None:
        e = item.event
        if e.ok:
            self._update(cur, item, "requested_at = %(at)s, state = 'starting'", step(e.at, "requested"), at=e.at)
        else:
            self._update(cur, item, "requested_at = %(at)s", step(e.at, "start_refused", reason=e.reason), at=e.at)

    @on("Sessions", "ChargingSession.Charging")
    def charging(self, cur: Any, item: Item) -> None:
        e = item.event
        self._update(cur, item, "started_at = %(at)s, state = 'charging'", step(e.at, "started"), at=e.at)

    @on("Sessions", "ChargingSession.MeterRead")
    def readings(self, cur: Any, item: Item) -> None:
        good = [r for r in item.group if not r.anomaly]
        energy = good[-1].energy if good else None
        self._update(cur, item, "readings = readings + %(n)s, anomalies = anomalies + %(bad)s, "
                                "energy = COALESCE(%(energy)s, energy)",
                     n=len(item.group), bad=len(item.group) - len(good), energy=energy)

    @on("Sessions", "ChargingSession.FaultRecorded")
    def fault(self, cur: Any, item: Item) -> None:
        e = item.event
        self._update(cur, item, "seq = seq", step(e.at, "fault", source=e.source, code=e.code, detail=e.detail))

    @on("Sessions", "ChargingSession.StopRequested")
    def stop_requested(self, cur: Any, item: Item) -> None:
        e = item.event
        self._update(cur, item, "state = 'stopping', reason = %(reason)s",
                     step(e.at, "stop_requested", by=e.author, reason=e.reason), reason=e.reason)

    @on("Sessions", "ChargingSession.Failed")
    def failed(self, cur: Any, item: Item) -> None:
        e = item.event
        self._update(cur, item, "state = 'failed', reason = %(reason)s, settled_at = %(at)s",
                     step(e.at, "failed", by=e.author, reason=e.reason), reason=e.reason, at=e.at)

    @on("Sessions", "ChargingSession.Abandoned")
    def abandoned(self, cur: Any, item: Item) -> None:
        e = item.event
        self._billed(cur, item, e.bill, "abandoned", e.at, None,
                     step(e.at, "abandoned", by=e.author, reason=e.reason, total_fen=e.bill["total_fen"]),
                     extra="reason = %(reason)s, stopped_at = COALESCE(stopped_at, %(at)s)", reason=e.reason)

    @on("Sessions", "ChargingSession.Settled", "ChargingSession.Resettled")
    def settled(self, cur: Any, item: Item) -> None:
        e = item.event
        record = e.record
        started, ended = instant(record.get("started_at")), instant(record.get("ended_at"))
        name = "settled" if item.name == "ChargingSession.Settled" else "resettled"
        entries = [] if name == "resettled" else [{"at": started, "step": "record_started"}]
        entries += [{"at": ended, "step": "stopped", "stop_code": record.get("stop_reason")},
                    {"at": e.at, "step": name, "total_fen": e.bill["total_fen"],
                     "pile_difference": e.pile_difference or None}]
        timeline = Jsonb([jsonable({k: v for k, v in d.items() if v is not None}) for d in entries])
        self._billed(cur, item, e.bill, "finished", e.at, e.pile_difference, timeline,
                     extra="started_at = COALESCE(started_at, %(started)s), stopped_at = %(ended)s, "
                           "stop_code = %(code)s, pile_amount = %(pile_amount)s",
                     started=started, ended=ended, code=record.get("stop_reason"),
                     pile_amount=record.get("pile_total_amount"))

    def _billed(self, cur: Any, item: Item, bill: dict[str, Any], state: str, at: Any, difference: int | None,
                timeline: Jsonb, extra: str, **params: Any) -> None:
        tiers = {f"energy_{t['tier']}": t["energy"] for t in bill["tiers"]}
        self._update(cur, item,
                     "state = %(state)s, settled_at = %(at)s, energy = %(energy)s, energy_sharp = %(energy_sharp)s, "
                     "energy_peak = %(energy_peak)s, energy_flat = %(energy_flat)s, "
                     "energy_valley = %(energy_valley)s, electricity_fen = %(electricity_fen)s, "
                     "service_fen = %(service_fen)s, total_fen = %(total_fen)s, "
                     "pile_difference = %(difference)s, " + extra,
                     timeline, state=state, at=at, energy=bill["energy"], electricity_fen=bill["electricity_fen"],
                     service_fen=bill["service_fen"], total_fen=bill["total_fen"], difference=difference,
                     **{f"energy_{t}": tiers.get(f"energy_{t}", 0) for t in TIERS}, **params)


# ---- reads (the operator API) -------------------------------------------------------------------
LIST_COLUMNS = ", ".join(c for c in COLUMNS if c not in ("timeline", "session_id"))


def orders_query(*, tenant_id: Any, stations: Any, station_id: Any = None, pile_no: str | None = None,
                 state: str | None = None, since: Any = None, until: Any = None, before_seq: int | None = None,
                 limit: int = 50, detail: bool = False, as_json: bool = False) -> tuple[str, dict[str, Any]]:
    """SQL for orders newest first (by ``seq``), after the keyset position ``before_seq``; scoped to a
    tenant (None: every tenant, platform admins) and to a set of stations (None: all of the tenant's).

    ``as_json``: one row with the page as JSON text built by Postgres, its size and its last seq, so
    the API does no per-value work in Python.
    """
    where, params = ["true"], {"limit": limit}
    for column, value, op in (("tenant_id", tenant_id, "="), ("station_id", station_id, "="),
                              ("pile_no", pile_no, "="), ("state", state, "="), ("ordered_at", since, ">="),
                              ("ordered_at", until, "<"), ("seq", before_seq, "<")):
        if value is not None:
            name = f"p{len(params)}"
            where.append(f"{column} {op} %({name})s")
            params[name] = value
    if stations is not None:
        where.append("station_id = ANY(%(stations)s)")
        params["stations"] = list(stations)
    columns = LIST_COLUMNS + (", timeline" if detail else "")
    sql = f"SELECT {columns} FROM orders WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT %(limit)s"  # noqa: S608
    if as_json:
        sql = (f"WITH page AS ({sql}) SELECT COALESCE(json_agg(page ORDER BY seq DESC), '[]')::text AS items, "
               "count(*) AS n, min(seq) AS last FROM page")
    return sql, params


def find_orders(conn: Any, **filters: Any) -> list[dict[str, Any]]:
    """The rows of :func:`orders_query` (same arguments)."""
    from psycopg.rows import dict_row

    sql, params = orders_query(**filters)
    return conn.cursor(row_factory=dict_row).execute(sql, params).fetchall()
