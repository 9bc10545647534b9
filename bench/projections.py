"""Projections and the operator API, each beside a baseline measured in the same run.

1. Catch-up from zero: a ledger day of ``--sessions`` sessions (start, charging, 20 readings,
   settle, wallet capture), then every view rebuilt from the notification logs, in events/s.
   Baseline: the same rows the views end up with, inserted raw with psycopg (``executemany``, one
   transaction per 1,000 rows) into copies of the view tables.
2. The order list with ``--orders`` orders in the view (default 200,000, inserted directly), at a
   fixed ``--rate`` (default 200 requests/s, open loop) for ``--seconds``: p50/p99 latency of
   ``GET /operator/v1/orders`` (token check, scope, keyset page of 50, JSON), beside a bare FastAPI
   endpoint returning a page-sized constant, served the same way (uvicorn, one process).

    python bench/projections.py [--sessions 400] [--orders 200000] [--rate 200] [--seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.postgres.env import eventsourcing_env  # noqa: E402
from adapters.servers.postgres_server import create_database  # noqa: E402
from adapters.servers.resolve import resolve_servers  # noqa: E402
from domain.ledger import Ledger  # noqa: E402
from domain.session import SettlementRecord  # noqa: E402
from projections.runner import VIEWS, Projections  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ledger import setup  # noqa: E402  (bench/ledger.py)
T0 = datetime(2026, 11, 22, 2, 0, tzinfo=timezone.utc)
READINGS = 20


# ---- 1. catch-up -------------------------------------------------------------------------------------
def ledger_day(ledger: Ledger, sessions: int, piles: int = 50) -> None:
    pile_nos, wallet = setup(ledger, piles)  # the same world as the ledger bench
    done = 0
    while done < sessions:
        wave = pile_nos[:min(piles, sessions - done)]
        trades = []
        for pile_no in wave:
            trade = ledger.request_start(pile_no=pile_no, gun_no=1, wallet_id=wallet, hold_fen=100_00, at=T0,
                                         author="bench")
            ledger.mark_charging(trade, at=T0)
            trades.append(trade)
        for tick in range(1, READINGS + 1):
            ledger.record_readings([{"trade_no": t, "at": T0 + timedelta(minutes=tick), "energy": tick * 1000}
                                    for t in trades])
        for trade in trades:
            energy = READINGS * 1000
            ledger.settle(trade, SettlementRecord((0, 0, energy, 0), (0, 0, energy * 15, 0), energy * 15, energy,
                                                  0, energy, T0, T0 + timedelta(minutes=READINGS), 0x40),
                                                  T0 + timedelta(minutes=READINGS + 1))
        done += len(wave)


def catch_up(database_url: str, sessions: int) -> dict[str, float]:
    env = eventsourcing_env(database_url)
    ledger = Ledger(env)
    try:
        ledger_day(ledger, sessions)
        events = sum(app.recorder.max_notification_id() or 0 for app in ledger.applications)
        with Projections(ledger.applications, env) as projections:
            started = time.perf_counter()
            for recorder in projections.recorders.values():  # what `rebuild` does first: empty views
                recorder.drop()
                recorder.create_table()
            ddl = time.perf_counter() - started
            started = time.perf_counter()
            projections.catch_up()
            elapsed = time.perf_counter() - started
            assert projections.caught_up()
    finally:
        ledger.close()
    rows, baseline = raw_insert_of_the_same_rows(database_url)
    return {"events": events, "seconds": elapsed, "ddl_seconds": ddl, "events_per_s": events / elapsed, "rows": rows,
            "baseline_seconds": baseline, "baseline_events_per_s": events / baseline}


def raw_insert_of_the_same_rows(database_url: str) -> tuple[int, float]:
    """Copy every view table's rows into an empty twin with plain INSERTs; the time that takes."""
    tables = [t for view in VIEWS for t in view.tables]
    with psycopg.connect(database_url) as conn:
        data = {}
        for table in tables:
            cur = conn.execute(f"SELECT * FROM {table}")  # noqa: S608
            data[table] = ([d.name for d in cur.description], cur.fetchall())
            conn.execute(f"DROP TABLE IF EXISTS raw_{table}; CREATE TABLE raw_{table} (LIKE {table} INCLUDING ALL)")
        conn.commit()
        from psycopg.types.json import Jsonb

        started = time.perf_counter()
        for table, (columns, rows) in data.items():
            sql = f"INSERT INTO raw_{table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})"
            for i in range(0, len(rows), 1000):
                with conn.transaction(), conn.cursor() as cur:
                    cur.executemany(sql, [[Jsonb(v) if isinstance(v, dict | list) and not isinstance(v, str)
                                           and columns[j] != "faults" else v for j, v in enumerate(r)]
                                          for r in rows[i:i + 1000]])
        elapsed = time.perf_counter() - started
    return sum(len(rows) for _, rows in data.values()), elapsed


# ---- 2. the order list under load ------------------------------------------------------------------------
FILL = """
INSERT INTO orders (trade_no, seq, session_id, tenant_id, station_id, pile_no, gun_no, wallet_id, driver_id, origin,
                    state, ordered_at, requested_at, started_at, stopped_at, settled_at, energy, energy_flat,
                    electricity_fen, service_fen, total_fen, tariff_id, tariff_version, pile_amount, pile_difference,
                    stop_code, reason, readings, timeline)
SELECT lpad(i::text, 32, '0'), i, md5(i::text)::uuid, %(tenant)s, (%(stations)s::uuid[])[1 + i %% 10],
       lpad((10000000000000 + i %% 500)::text, 14, '0'), 1 + i %% 2, %(wallet)s, 'driver-' || (i %% 5000), 'app',
       'finished', %(t0)s::timestamptz + i * interval '13 seconds', %(t0)s::timestamptz + i * interval '13 seconds',
       %(t0)s::timestamptz + i * interval '13 seconds', %(t0)s::timestamptz + i * interval '13 seconds',
       %(t0)s::timestamptz + i * interval '13 seconds', 200000, 200000, 2000, 1000, 3000, %(tariff)s, 1, 300000, 0,
       64, '', 20, '[]'::jsonb
FROM generate_series(1, %(n)s) AS i"""


def fill_orders(database_url: str, n: int) -> tuple[str, list[str]]:
    import uuid

    env = eventsourcing_env(database_url)
    ledger = Ledger(env)
    Projections(ledger.applications, env).close()  # creates the view tables
    ledger.close()
    tenant, stations = uuid.uuid4(), [uuid.uuid4() for _ in range(10)]
    with psycopg.connect(database_url) as conn:
        conn.execute(FILL, {"tenant": tenant, "stations": [str(s) for s in stations], "wallet": uuid.uuid4(),
                            "t0": T0 - timedelta(days=30), "tariff": uuid.uuid4(), "n": n})
        conn.execute("ANALYZE orders")
    return str(tenant), [str(s) for s in stations]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(kind: str, database_url: str, port: int) -> None:
    """The server process: the operator API, or a bare FastAPI app with one constant endpoint."""
    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    if kind == "bare":
        app = FastAPI()
        page = {"items": [{"trade_no": f"{i:032d}", "state": "finished", "total_fen": 3000, "energy": 200000,
                           "ordered_at": "2026-11-22T02:00:00+00:00", "station_id": "x" * 36} for i in range(50)],
                "next_cursor": "MTIz"}

        @app.get("/bare")
        def bare() -> JSONResponse:
            return JSONResponse(page)
    else:
        from adapters.api.auth import AuthSettings
        from adapters.api.app import create_app

        ledger = Ledger(eventsourcing_env(database_url))
        app = create_app(ledger, database_url, AuthSettings(os.environ["BENCH_TOKEN_KEY"].encode()))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


async def load(urls: list[str], headers: dict[str, str], rate: float, seconds: float,
               connections: int = 64) -> list[float]:
    """Open-loop load: one request every 1/rate s, each timed from its scheduled start to the last
    byte of its answer (so a queue in the client counts against the server, no coordinated
    omission). A small keep-alive HTTP/1.1 client over asyncio streams: an off-the-shelf async
    client costs more CPU per request than the endpoint under test on this 2-core machine."""
    from urllib.parse import urlsplit

    first = urlsplit(urls[0])
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    requests = [(f"GET {urlsplit(u).path}{'?' + urlsplit(u).query if urlsplit(u).query else ''} HTTP/1.1\r\n"
                 f"Host: {first.netloc}\r\n{extra}\r\n").encode() for u in urls]
    pool: asyncio.Queue = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection(first.hostname, first.port))

    async def send(request: bytes) -> None:
        reader, writer = await pool.get()
        try:
            writer.write(request)
            status = await reader.readline()
            assert b" 200 " in status, status
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
        finally:
            pool.put_nowait((reader, writer))

    for request in requests[:20]:  # warm up: prepared statements, caches
        await send(request)
    latencies: list[float] = []

    async def timed(request: bytes, due: float) -> None:
        await send(request)
        latencies.append(time.perf_counter() - due)

    tasks = []
    begin = time.perf_counter()
    for i in range(int(rate * seconds)):
        due = begin + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(timed(random.choice(requests), due)))
    await asyncio.gather(*tasks)
    while not pool.empty():
        pool.get_nowait()[1].close()
    return latencies


def start_server(kind: str, database_url: str, key: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, __file__, "--serve", kind, database_url, str(port)],
                               env={**os.environ, "BENCH_TOKEN_KEY": key})
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process, base
        except OSError:
            assert time.monotonic() < deadline and process.poll() is None, "server did not start"
            time.sleep(0.1)


def percentiles(latencies: list[float]) -> dict[str, float]:
    q = statistics.quantiles(latencies, n=100)
    return {"p50_ms": q[49] * 1000, "p99_ms": q[98] * 1000, "max_ms": max(latencies) * 1000, "n": len(latencies)}


def order_list_latency(database_url: str, orders: int, rate: float, seconds: float) -> dict[str, dict[str, float]]:
    import secrets
    from uuid import UUID

    from adapters.api.auth import TENANT_ADMIN, AuthSettings, Principal, TokenSigner

    tenant, stations = fill_orders(database_url, orders)
    key = secrets.token_urlsafe(48)
    token = TokenSigner(AuthSettings(key.encode())).issue(Principal("bench", TENANT_ADMIN, UUID(tenant)))[0]
    results = {}
    for kind in ("bare", "api"):
        process, base = start_server(kind, database_url, key)
        try:
            if kind == "bare":
                urls = [f"{base}/bare"]
            else:
                import base64

                def cursor(seq: int) -> str:
                    return base64.urlsafe_b64encode(str(seq).encode()).decode().rstrip("=")

                urls = [f"{base}/operator/v1/orders?limit=50"] * 4 + [
                    f"{base}/operator/v1/orders?limit=50&cursor={cursor(random.randint(100, orders))}"
                    for _ in range(40)] + [f"{base}/operator/v1/orders?limit=50&station_id={s}" for s in stations]
            latencies = asyncio.run(load(urls, {"Authorization": f"Bearer {token}"}, rate, seconds))
            results[kind] = percentiles(latencies)
        finally:
            process.terminate()
            process.wait(timeout=30)
    return results


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=400)
    parser.add_argument("--orders", type=int, default=200_000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    server_url, _nats, started = resolve_servers(Path("var/bench").resolve())
    suffix = os.urandom(3).hex()
    try:
        c = catch_up(create_database(server_url, f"bench_projections_{suffix}"), args.sessions)
        print(f"catch-up from zero: {c['events']:,} events in {c['seconds']:.2f} s = {c['events_per_s']:,.0f} events/s "
              f"(target >= 5,000); dropping and recreating the views before it: {c['ddl_seconds']:.2f} s")
        print(f"  baseline, raw psycopg insert of the same {c['rows']:,} rows: {c['baseline_seconds']:.2f} s "
              f"= {c['baseline_events_per_s']:,.0f} events/s equivalent; ratio {c['events_per_s'] / c['baseline_events_per_s']:.2f}")
        r = order_list_latency(create_database(server_url, f"bench_orders_{suffix}"), args.orders, args.rate,
                               args.seconds)
        for kind, label in (("api", f"GET /operator/v1/orders, {args.orders:,} orders"), ("bare", "bare FastAPI endpoint")):
            p = r[kind]
            print(f"{label} at {args.rate:.0f} req/s: p50 {p['p50_ms']:.1f} ms, p99 {p['p99_ms']:.1f} ms, "
                  f"max {p['max_ms']:.1f} ms over {p['n']:,} requests")
    finally:
        for server in reversed(started):
            server.release()


if __name__ == "__main__":
    main()
