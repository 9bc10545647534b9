"""The console's orders page (HTML) beside the JSON endpoint it renders, with 200,000 orders in the view.

One run, real servers (the project's embedded Postgres, or DATABASE_URL). The orders view is filled
**directly**: ``--orders`` rows (default 200,000) written into the ``orders`` projection table with
``COPY ... FROM STDIN`` (plus 10 stations in ``catalogue_stations``), because running that many
sessions through the ledger and the projections would take far longer than the measurement and the
page only reads the view. The rows look like settled sessions (timeline, energy per tier, fees),
spread over 10 stations and 30 days.

The API with its pages runs as ``chargeledger api`` would (create_app + the console mounted, one
uvicorn process) in a process of its own, with one addition: an ASGI wrapper that sends, as a
``Server-Timing`` header, the time from the request's arrival to the start of its answer. Both
answers are whole bodies (not streamed), so that is the server's time for the request: the session
or token check, the query, and rendering (HTML) or the JSON built by Postgres (API).

One client asks, one request at a time (closed loop: server time without queueing), the same list
of queries of both: ``GET /console/orders?...`` with the session cookie and
``GET /operator/v1/orders?...&limit=50`` with the same operator token as a bearer, alternating
which goes first. The queries: the first page, pages at random cursors, one station, finished
orders of a date range (the page's days in Asia/Shanghai, the API's the same instants).

    .venv/bin/python bench/console_orders.py                 # 200,000 orders, 300 requests of each
    .venv/bin/python bench/console_orders.py --requests 100  # quick look
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.postgres.env import eventsourcing_env  # noqa: E402
from adapters.servers.postgres_server import create_database  # noqa: E402
from adapters.servers.resolve import resolve_servers  # noqa: E402
from domain.ledger import Ledger  # noqa: E402
from projections.orders import COLUMNS  # noqa: E402
from projections.runner import Projections  # noqa: E402

T0 = datetime(2026, 10, 23, 16, 0, tzinfo=timezone.utc)  # 2026-10-24 00:00 in Shanghai: 30 days before the 22nd
STATIONS = 10
USER = "bench-admin"


# ---- the view, filled directly ----------------------------------------------------------------------------
def fill(database_url: str, n: int) -> tuple[uuid.UUID, list[uuid.UUID]]:
    env = eventsourcing_env(database_url)
    ledger = Ledger(env)
    Projections(ledger.applications, env).close()  # creates the view tables
    ledger.close()
    tenant, tariff, wallet = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    stations = [uuid.uuid4() for _ in range(STATIONS)]
    span = 30 * 86400 / n  # seconds between two orders: n orders over 30 days
    started = time.perf_counter()
    with psycopg.connect(database_url) as conn:
        for i, station in enumerate(stations):
            conn.execute("INSERT INTO catalogue_stations VALUES (%s, %s, %s, '', 31.2, 121.5, 'Asia/Shanghai', %s, "
                         "now(), now())", (station, tenant, f"站点 {i + 1:02d}", tariff))
        with conn.cursor() as cur, cur.copy(f"COPY orders ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for i in range(1, n + 1):
                at = T0 + timedelta(seconds=i * span)
                flat, peak = 100_000 + i % 50_000, 50_000 + i % 30_000
                electricity, service = (flat * 70_000 + peak * 100_000) // 10**7, (flat + peak) * 40_000 // 10**7
                finished = i % 97 != 0
                timeline = [{"at": at.isoformat(), "step": "ordered", "by": "driver", "hold_fen": 5000},
                            {"at": (at + timedelta(seconds=3)).isoformat(), "step": "requested"},
                            {"at": (at + timedelta(seconds=20)).isoformat(), "step": "started"}]
                if finished:
                    timeline += [{"at": (at + timedelta(minutes=40)).isoformat(), "step": "stopped", "stop_code": 64},
                                 {"at": (at + timedelta(minutes=41)).isoformat(), "step": "settled",
                                  "total_fen": electricity + service}]
                copy.write_row((
                    f"{i:032d}", i, uuid.UUID(int=i), tenant, stations[i % STATIONS], f"{32010600000000 + i % 500:014d}",
                    1 + i % 2, wallet, f"driver-{i % 5000}", "app", "finished" if finished else "charging", at,
                    at + timedelta(seconds=3), at + timedelta(seconds=20),
                    at + timedelta(minutes=40) if finished else None, at + timedelta(minutes=41) if finished else None,
                    flat + peak, 0, peak, flat, 0, electricity if finished else None, service if finished else None,
                    electricity + service if finished else None, tariff, 1, (electricity + service) * 100, 0,
                    64 if finished else None, "", 20, 0, json.dumps(timeline)))
        conn.execute("ANALYZE orders")
    print(f"filled the orders view with {n:,} rows by COPY in {time.perf_counter() - started:.1f} s")
    return tenant, stations


def add_user(database_url: str, tenant: uuid.UUID) -> int:
    """The bench's tenant admin (the API checks each token against its user's row); its token generation."""
    with psycopg.connect(database_url) as conn:
        return int(conn.execute(
            "INSERT INTO operator_users (username, password_hash, role, tenant_id, stations, created_by) "
            "VALUES (%s, 'not a hash: this user only holds a token', 'tenant_admin', %s, '{}', 'bench') "
            "RETURNING token_generation", (USER, tenant)).fetchone()[0])


# ---- the server -------------------------------------------------------------------------------------------------
class ServerTiming:
    """ASGI wrapper: ``Server-Timing: app;dur=<ms>`` from the request's arrival to its answer's start."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()

        async def timed(message: Any) -> None:
            if message["type"] == "http.response.start":
                ms = (time.perf_counter() - began) * 1000
                message["headers"] = [*message.get("headers", []), (b"server-timing", f"app;dur={ms:.3f}".encode())]
            await send(message)

        await self.app(scope, receive, timed)


def serve(database_url: str, port: int) -> None:
    import uvicorn

    from adapters.api.app import create_app
    from adapters.api.auth import AuthSettings
    from adapters.web.mount import mount

    ledger = Ledger(eventsourcing_env(database_url))
    app = mount(create_app(ledger, database_url, AuthSettings(os.environ["BENCH_TOKEN_KEY"].encode())))
    uvicorn.run(ServerTiming(app), host="127.0.0.1", port=port, log_level="warning")


def start_server(database_url: str, key: str) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    process = subprocess.Popen([sys.executable, __file__, "--serve", database_url, str(port)],
                               env={**os.environ, "BENCH_TOKEN_KEY": key})
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/console/login", timeout=1).status_code == 200:
                return process, f"http://127.0.0.1:{port}"
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline and process.poll() is None, "the server did not start"
        time.sleep(0.2)


# ---- the run ----------------------------------------------------------------------------------------------------
def cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(str(seq).encode()).decode().rstrip("=")


KINDS = ("first page", "a cursor", "one station", "finished, 2 days")


def queries(n: int, stations: list[uuid.UUID], count: int) -> list[tuple[str, str, str]]:
    """(kind, page query, API query): the same filters, in each one's spelling."""
    rng = random.Random(7)
    out = []
    for i in range(count):
        kind = KINDS[i % 4]
        if kind == "first page":
            out.append((kind, "", ""))
        elif kind == "a cursor":
            c = cursor(rng.randint(100, n))
            out.append((kind, f"cursor={c}", f"cursor={c}"))
        elif kind == "one station":
            s = rng.choice(stations)
            out.append((kind, f"station={s}", f"station_id={s}"))
        else:
            day = (T0 + timedelta(days=rng.randint(1, 28), hours=8)).date()
            since = datetime.combine(day, datetime.min.time()).isoformat() + "%2B08:00"
            until = datetime.combine(day + timedelta(days=2), datetime.min.time()).isoformat() + "%2B08:00"
            out.append((kind, f"state=finished&from={day}&to={day + timedelta(days=1)}",
                        f"state=finished&from={since}&to={until}"))
    return out


def server_ms(answer: httpx.Response) -> float:
    return float(answer.headers["server-timing"].split("dur=")[1])


def percentile(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100)[p - 1]


def run(database_url: str, n: int, requests: int) -> dict[str, dict[str, float]]:
    from adapters.api.auth import AuthSettings, Principal, TokenSigner

    tenant, stations = fill(database_url, n)
    key = secrets.token_urlsafe(48)
    process, base = start_server(database_url, key)
    try:
        generation = add_user(database_url, tenant)
        token = TokenSigner(AuthSettings(key.encode())).issue(Principal(USER, "tenant_admin", tenant),
                                                              generation=generation)[0]
        times: dict[str, list[float]] = {}
        with httpx.Client(base_url=base, cookies={"cl_session": token},
                          headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
            asks = queries(n, stations, requests)
            for _, page_query, api_query in asks[:20]:  # warm up: prepared statements, template cache
                client.get(f"/console/orders?{page_query}")
                client.get(f"/operator/v1/orders?{api_query}&limit=50")
            for i, (what, page_query, api_query) in enumerate(asks):
                order = [("page", f"/console/orders?{page_query}"), ("api", f"/operator/v1/orders?{api_query}&limit=50")]
                for kind, path in order if i % 2 else order[::-1]:
                    began = time.perf_counter()
                    answer = client.get(path)
                    elapsed = (time.perf_counter() - began) * 1000
                    assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
                    for key in (kind, f"{kind}:{what}"):
                        times.setdefault(key, []).append(server_ms(answer))
                    times.setdefault(f"{kind}_client", []).append(elapsed)
            rows = client.get(f"/operator/v1/orders?{asks[0][2]}&limit=50").json()["items"]
            shown = client.get(f"/console/orders?{asks[0][1]}").text.count("data-trade=")
            assert len(rows) == shown == 50, (len(rows), shown)  # the page shows what the endpoint answers
    finally:
        process.terminate()
        process.wait(timeout=30)
    return {kind: {"p50": percentile(v, 50), "p99": percentile(v, 99), "n": len(v)} for kind, v in times.items()}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=200_000)
    parser.add_argument("--requests", type=int, default=300, help="requests of each kind")
    args = parser.parse_args()
    server_url, _nats, started = resolve_servers(Path("var/bench").resolve())
    try:
        r = run(create_database(server_url, f"bench_console_{os.urandom(3).hex()}"), args.orders, args.requests)
    finally:
        for server in reversed(started):
            server.release()
    page, api = r["page"], r["api"]
    print(f"server time, {args.orders:,} orders in the view, {page['n']:.0f} requests of each, one at a time:")
    print(f"  GET /console/orders (the HTML page)        p50 {page['p50']:6.2f} ms   p99 {page['p99']:6.2f} ms")
    print(f"  GET /operator/v1/orders (the JSON it shows) p50 {api['p50']:6.2f} ms   p99 {api['p99']:6.2f} ms")
    print(f"  ratio page / JSON                          p50 {page['p50'] / api['p50']:6.2f}      "
          f"p99 {page['p99'] / api['p99']:6.2f}")
    for what in KINDS:
        p, a = r[f"page:{what}"], r[f"api:{what}"]
        print(f"  {what:<17} page p50 {p['p50']:6.2f} p99 {p['p99']:6.2f} ms;  JSON p50 {a['p50']:6.2f} "
              f"p99 {a['p99']:6.2f} ms;  ratio p50 {p['p50'] / a['p50']:.2f}")
    pc, ac = r["page_client"], r["api_client"]
    print(f"as the client saw it: page p50 {pc['p50']:.2f} ms p99 {pc['p99']:.2f} ms; "
          f"JSON p50 {ac['p50']:.2f} ms p99 {ac['p99']:.2f} ms")


if __name__ == "__main__":
    main()
