"""The 经营大屏's SSE tick beside the JSON endpoint it renders, with 10,000 piles online, same run.

The views are filled directly, not through the ledger: ``COPY`` writes the rows the projections would
hold for one tenant with ``--piles`` piles (default 10,000; two guns each, ``--charging`` of the guns
charging with a reading, a few faulted, 1 % of the piles offline) at ``--stations`` stations, a month of
``revenue_daily`` rows per station, 24 hours of ``power_buckets``, and open and cleared ``alarms``
(``catalogue_*``, ``live_piles``, ``live_guns``, ``revenue_daily``, ``power_buckets``, ``alarms``).

Timed in the API process's own code, in process (no HTTP on either side), alternating the two so
both see the same machine, ``--rounds`` times each:

* **tick**: what the big screen's stream does every ``screen_tick`` for one open page
  (``adapters/web/pages/screen.py``): the session check (``Accounts.principal``), the figures read
  (``screen_json``: the same query as the endpoint), the seven sections rendered and compared with
  what was sent before (``changed``). Measured in the steady state (nothing changed: nothing sent)
  and from an empty state (every section sent, as on connecting).
* **JSON**: ``GET /operator/v1/dashboard/screen``'s own function (``get_screen``): the token check,
  the same read, the answer serialised (``JSONResponse``).

    .venv/bin/python bench/console_screen.py [--piles 10000] [--stations 200] [--rounds 300]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.api.app import create_app  # noqa: E402
from adapters.api.auth import TENANT_ADMIN, AuthSettings, Principal, hash_password  # noqa: E402
from adapters.api.operator.dashboard import get_screen, screen_json, screen_scope  # noqa: E402
from adapters.postgres.env import eventsourcing_env  # noqa: E402
from adapters.servers.postgres_server import create_database  # noqa: E402
from adapters.servers.resolve import resolve_servers  # noqa: E402
from adapters.web.mount import mount  # noqa: E402
from adapters.web.pages.screen import changed  # noqa: E402
from adapters.web.session import SESSION, WebSettings  # noqa: E402
from domain.ledger import Ledger  # noqa: E402
from projections.power import bucket_of  # noqa: E402
from projections.runner import Projections  # noqa: E402
from starlette.requests import Request  # noqa: E402


def copy(conn: psycopg.Connection[Any], table: str, columns: str, rows: list[tuple[Any, ...]]) -> None:
    with conn.cursor().copy(f"COPY {table} ({columns}) FROM STDIN") as out:
        for row in rows:
            out.write_row(row)


def fill(database_url: str, piles: int, stations: int, charging: float, now: datetime) -> tuple[uuid.UUID, dict[str, int]]:
    """One tenant's network, written straight into the view tables with COPY."""
    env = eventsourcing_env(database_url)
    ledger = Ledger(env)
    Projections(ledger.applications, env).close()  # creates the view tables
    ledger.close()
    tenant = uuid.uuid4()
    station_ids = [uuid.uuid4() for _ in range(stations)]
    counts = {"guns": 0, "charging": 0, "offline": 0, "faulted": 0}
    with psycopg.connect(database_url) as conn:
        copy(conn, "catalogue_tenants", "tenant_id, name, created_at", [(tenant, "Bench Charging Co.", now)])
        copy(conn, "catalogue_stations", "station_id, tenant_id, name, address, latitude, longitude, timezone, "
             "created_at, updated_at", [(s, tenant, f"Station {i:04d}", "", 31.2, 121.5, "Asia/Shanghai", now, now)
                                        for i, s in enumerate(station_ids)])
        pile_rows, gun_rows = [], []
        every = max(1, round(1 / charging)) if charging else 0
        for i in range(piles):
            pile_no, station = f"{90_000_000_000_000 + i:014d}", station_ids[i % stations]
            online = i % 100 != 99
            counts["offline"] += not online
            pile_id = uuid.uuid5(uuid.NAMESPACE_OID, pile_no)
            pile_rows.append((pile_id, pile_no, tenant, station, "DC", 2, True, online, now, now))
            for gun in (1, 2):
                n = 2 * i + gun
                busy = online and every and n % every == 0
                fault = online and not busy and n % 997 == 0
                status = "offline" if not online else "charging" if busy else "fault" if fault else "idle"
                reading = json.dumps({"at": now.isoformat(), "energy": 12_3456, "voltage_dv": 4000,
                                      "current_da": 1250, "soc_pct": 55}) if busy else None
                gun_rows.append((pile_no, gun, pile_id, tenant, station, status, busy, "{0x02}" if fault else "{}",
                                 now, f"{pile_no}{gun:02d}{n:016d}" if busy else None, "charging" if busy else None,
                                 reading))
                counts["guns"] += 1
                counts["charging"] += bool(busy)
                counts["faulted"] += bool(fault)
        copy(conn, "live_piles", "pile_id, pile_no, tenant_id, station_id, kind, gun_count, enabled, online, "
             "connected_at, registered_at", pile_rows)
        copy(conn, "live_guns", "pile_no, gun_no, pile_id, tenant_id, station_id, status, plugged, faults, status_at, "
             "trade_no, session_state, reading", gun_rows)
        today = now.date()
        days = [date(today.year, today.month, d) for d in range(1, today.day + 1)]
        copy(conn, "revenue_daily", "day, tenant_id, station_id, sessions, energy, electricity_fen, service_fen, "
             "refunds_fen, charging_seconds", [(d, tenant, s, 40, 1_000_0000, 80_000, 40_000, 0, 36_000)
                                               for d in days for s in station_ids])
        last = bucket_of(now)
        copy(conn, "power_buckets", "tenant_id, station_id, bucket, energy",
             [(tenant, s, last - timedelta(minutes=15 * k), 500_000 + 1000 * k) for s in station_ids for k in range(96)])
        copy(conn, "alarms", "alarm_id, seq, tenant_id, station_id, pile_no, gun_no, kind, code, severity, message, "
             "raised_at, cleared_at", [(f"bench:{k}", k, tenant, station_ids[k % stations], f"{90_000_000_000_000 + k:014d}",
                                        1, "fault", "0x02", "major", "emergency stop pressed",
                                        now - timedelta(minutes=k), None if k < 100 else now) for k in range(2000)])
        conn.execute("ANALYZE")
    return tenant, counts


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def measure(database_url: str, tenant: uuid.UUID, rounds: int) -> dict[str, list[float]]:
    app = mount(create_app(Ledger(eventsourcing_env(database_url)), database_url, AuthSettings.generate(),
                           pool_size=4), WebSettings())
    times: dict[str, list[float]] = {"tick": [], "tick_all": [], "json": [], "read": []}
    async with app.router.lifespan_context(app):
        with app.state.pool.connection() as conn:
            generation = conn.execute(
                "INSERT INTO operator_users (username, password_hash, role, tenant_id, stations, created_by) "
                "VALUES ('bench-admin', %s, %s, %s, '{}', 'bench') RETURNING token_generation",
                (hash_password("bench password 1"), TENANT_ADMIN, tenant)).fetchone()[0]
        token, _ = app.state.signer.issue(Principal("bench-admin", TENANT_ADMIN, tenant), generation=generation)
        scope = {"type": "http", "app": app, "method": "GET", "scheme": "http", "server": ("bench", 80),
                 "path": "/console/screen/live", "query_string": b"", "root_path": "",
                 "headers": [(b"cookie", f"{SESSION}={token}".encode())]}
        request = Request(scope)
        shown: dict[str, str] = {}
        who = await app.state.accounts.principal(token)
        changed(request, who, None, "energy", shown)  # warm up: templates compiled, pool connected

        async def timed(name: str, work: Callable[[], Any]) -> None:
            started = time.perf_counter()
            await app.state.accounts.principal(token)  # each checks the session / token at every tick / request
            work()
            times[name].append((time.perf_counter() - started) * 1000)

        for _ in range(rounds):
            await timed("tick", lambda: changed(request, who, None, "energy", shown))
            await timed("json", lambda: get_screen(request, who, None, None, "energy").body)
            await timed("tick_all", lambda: changed(request, who, None, "energy", {}))
            started = time.perf_counter()
            screen_json(request, screen_scope(request, who, None))
            times["read"].append((time.perf_counter() - started) * 1000)
        app.state.ledger.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--piles", type=int, default=10_000)
    parser.add_argument("--stations", type=int, default=200)
    parser.add_argument("--charging", type=float, default=0.3, help="share of the guns charging")
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    server_url, _nats, started = resolve_servers(Path("var/bench").resolve())
    try:
        database_url = create_database(server_url, f"bench_screen_{os.urandom(3).hex()}")
        now = datetime.now(UTC)
        began = time.perf_counter()
        tenant, counts = fill(database_url, args.piles, args.stations, args.charging, now)
        print(f"filled with COPY in {time.perf_counter() - began:.1f} s: {args.piles:,} piles "
              f"({args.piles - counts['offline']:,} online, {counts['offline']:,} offline), {counts['guns']:,} guns "
              f"({counts['charging']:,} charging, {counts['faulted']:,} faulted), {args.stations} stations")
        times = asyncio.run(measure(database_url, tenant, args.rounds))
        out = io.StringIO()
        rows = (("tick", "SSE tick, steady (session check + read + 7 sections rendered + diff; nothing sent)"),
                ("tick_all", "SSE tick, on connecting (the same, every section sent)"),
                ("json", "GET /operator/v1/dashboard/screen (token check + read + JSON)"),
                ("read", "  of which the read alone (screen_json)"))
        for key, label in rows:
            t = times[key]
            print(f"{label}: p50 {pct(t, 50):.2f} ms, p99 {pct(t, 99):.2f} ms, mean {statistics.fmean(t):.2f} ms "
                  f"({len(t)} rounds)", file=out)
        tick, js = times["tick"], times["json"]
        print(f"ratio tick / JSON endpoint: p50 {pct(tick, 50) / pct(js, 50):.2f}, p99 {pct(tick, 99) / pct(js, 99):.2f}",
              file=out)
        print(out.getvalue(), end="")
    finally:
        for server in reversed(started):
            server.release()


if __name__ == "__main__":
    main()
