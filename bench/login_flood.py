"""A login flood against the API, and what it does to everyone else (issue 10, finding 8).

One run, real servers (the project's Postgres, or DATABASE_URL), everything on loopback. The API
runs as `chargeledger api` would (create_app + server_config, default limits) in a process of its
own, so its memory is its own: peak RSS is the kernel's high-water mark of that process (VmHWM).
Another tenant's operator reads `GET /operator/v1/stations` (token check + a view query), a few at a
time; the same requests are timed three times in the same run:

1. quiet: no flood;
2. one address: wrong passwords for one user, 80 at a time (at least 240 of them, and on until the
   reads are done), as in the finding: the throttle answers 429 after the free attempts;
3. many addresses: each login from its own address (X-Forwarded-For, trusted from loopback) for its
   own user name, so no throttle key repeats: only the hash gate (2 hashes at once, 16 waiting,
   then 503 login_busy) stands between the flood and the process.

The flood runs in a process of its own (its client work would otherwise slow the timed reads' own
client). Beside it: the cost of the per-request user check (one primary-key query, OperatorUsers.find).

    .venv/bin/python bench/login_flood.py               # 400 reads per phase
    .venv/bin/python bench/login_flood.py --reads 100   # quick look
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.api.auth import hash_password  # noqa: E402
from adapters.postgres.env import eventsourcing_env  # noqa: E402
from adapters.servers.postgres_server import create_database  # noqa: E402
from adapters.servers.resolve import resolve_servers  # noqa: E402
from domain.ledger import Ledger  # noqa: E402
from projections.runner import Projections  # noqa: E402

V = "/operator/v1"
PASSWORD = "bench operator passphrase"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def memory_kib(pid: int, field: str) -> int:
    """VmRSS (now) or VmHWM (peak since start) of a process, in KiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def serve(database_url: str, port: int) -> None:
    """The API process: what `chargeledger api` runs, with the default limits."""
    import uvicorn

    from adapters.api.auth import AuthSettings
    from adapters.api.app import create_app
    from adapters.api.guards import ServerSettings, server_config

    ledger = Ledger(eventsourcing_env(database_url))
    settings = ServerSettings()
    app = create_app(ledger, database_url, AuthSettings.from_env(dict(os.environ)), server=settings)
    uvicorn.Server(server_config(app, settings, host="127.0.0.1", port=port)).run()


async def reads(client: httpx.AsyncClient, headers: dict[str, str], n: int, at_once: int) -> list[float]:
    """``n`` timed reads by the other tenant, ``at_once`` in flight; all must answer 200."""
    times: list[float] = []
    todo = iter(range(n))

    async def worker() -> None:
        for _ in todo:
            t0 = time.perf_counter()
            r = await client.get(f"{V}/stations", headers=headers)
            times.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 200, r.text

    await asyncio.gather(*(worker() for _ in range(at_once)))
    return times


FLOODS = {
    "one-address": lambda i: ({"username": "victim@bench", "password": f"guess-{i}"}, {}),
    "many-addresses": lambda i: ({"username": f"nobody-{i}@bench", "password": f"guess-{i}"},
                                 {"x-forwarded-for": f"2001:db8::{i:x}"}),
}


async def flood(base: str, kind: str, at_least: int, at_once: int) -> dict[int, int]:
    """Wrong-password logins, ``at_once`` in flight, until told to stop (SIGTERM) with at least ``at_least``
    answered; at most 20 x ``at_least`` whatever happens. A process of its own: the flood's client work
    does not slow the timed reads' client."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    statuses: dict[int, int] = {}
    counter = iter(range(20 * at_least))
    limits = httpx.Limits(max_connections=at_once, max_keepalive_connections=at_once, keepalive_expiry=1)

    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        async def one() -> None:
            for i in counter:
                if stop.is_set() and sum(statuses.values()) >= at_least:
                    return
                body, headers = FLOODS[kind](i)
                r = await client.post(f"{V}/auth/token", json=body, headers=headers)
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

        print("flooding", flush=True)
        await asyncio.gather(*(one() for _ in range(at_once)))
    return statuses


def phase(base: str, headers: dict[str, str], n: int, kind: str | None) -> tuple[list[float], dict[int, int]]:
    """Timed reads, alone or while a flood process runs."""
    flooder = None
    if kind is not None:
        flooder = subprocess.Popen([sys.executable, __file__, "--flood", base, kind], stdout=subprocess.PIPE,
                                   text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert flooder.stdout is not None and flooder.stdout.readline().strip() == "flooding"
        time.sleep(0.5)  # the flood under way before the first timed read
    statuses: dict[int, int] = {}
    try:
        times = asyncio.run(timed_reads(base, headers, n))
    finally:
        if flooder is not None:
            flooder.send_signal(signal.SIGTERM)
            out, _ = flooder.communicate(timeout=120)
            statuses = {int(k): v for k, v in json.loads(out.strip().splitlines()[-1]).items()}
    return times, statuses


async def timed_reads(base: str, headers: dict[str, str], n: int) -> list[float]:
    limits = httpx.Limits(max_connections=8, keepalive_expiry=1)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        return await reads(client, headers, n, 4)


async def user_check_cost(database_url: str, username: str, n: int) -> list[float]:
    from psycopg_pool import AsyncConnectionPool

    from adapters.postgres.operator_users import OperatorUsers

    pool = AsyncConnectionPool(database_url, min_size=1, max_size=1, open=False)
    await pool.open(wait=True)
    users, times = OperatorUsers(pool), []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            assert await users.find(username) is not None
            times.append((time.perf_counter() - t0) * 1000)
    finally:
        await pool.close()
    return times


def setup(database_url: str) -> None:
    """Two tenants with a station each; the projections caught up."""
    ledger = Ledger(eventsourcing_env(database_url))
    try:
        for name in ("Victim Co.", "Other Co."):
            tenant = ledger.create_tenant(name, "bench")
            ledger.create_station(tenant, f"{name} Hub", "1 Bench Road", 31.2, 121.5, "bench")
        with Projections(ledger.applications, eventsourcing_env(database_url)) as projections:
            projections.catch_up()
    finally:
        ledger.close()


def add_users(database_url: str) -> None:
    import psycopg

    with psycopg.connect(database_url) as conn:
        tenants = dict(conn.execute("SELECT name, tenant_id FROM catalogue_tenants").fetchall())
        for username, tenant in (("victim@bench", tenants["Victim Co."]), ("reader@bench", tenants["Other Co."])):
            conn.execute("INSERT INTO operator_users (username, password_hash, role, tenant_id, created_by) "
                         "VALUES (%s, %s, 'tenant_admin', %s, 'bench')", (username, hash_password(PASSWORD), tenant))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=400, help="reads per phase")
    parser.add_argument("--serve", nargs=2, metavar=("DATABASE_URL", "PORT"), help=argparse.SUPPRESS)
    parser.add_argument("--flood", nargs=2, metavar=("BASE_URL", "KIND"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return
    if args.flood:
        print(json.dumps(asyncio.run(flood(args.flood[0], args.flood[1], 240, 80))), flush=True)
        return
    server_url, _, started = resolve_servers(ROOT / "var" / "bench-login")
    try:
        database_url = server_url if os.environ.get("DATABASE_URL") else create_database(server_url, "bench_login")
        setup(database_url)
        run(database_url, args.reads)
    finally:
        for s in reversed(started):
            s.release()


def run(database_url: str, n: int) -> None:
    port = free_port()
    env = {**os.environ, "CHARGELEDGER_TOKEN_KEY": secrets.token_urlsafe(48), "PYTHONPATH": str(ROOT)}
    api = subprocess.Popen([sys.executable, __file__, "--serve", database_url, str(port)], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}{V}/stations").status_code == 401:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and api.poll() is None, "the API did not start"
            time.sleep(0.1)
        add_users(database_url)
        token = httpx.post(f"{base}{V}/auth/token", json={"username": "reader@bench", "password": PASSWORD}).json()
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        phase(base, headers, 50, None)  # warm up
        rss_before = memory_kib(api.pid, "VmRSS")
        rows = []
        for name, kind in (("quiet (no flood)", None), ("flood, one address", "one-address"),
                           ("flood, every login its own address", "many-addresses")):
            times, statuses = phase(base, headers, n, kind)
            rows.append((name, times, statuses, memory_kib(api.pid, "VmHWM")))
        checks = asyncio.run(user_check_cost(database_url, "reader@bench", 2000))
    finally:
        api.send_signal(signal.SIGTERM)
        api.wait(timeout=30)
    quiet = rows[0][1]
    print(f"login flood: another tenant's GET {V}/stations, {n} reads per phase, 4 at a time; "
          "flood 80 logins at a time (API in its own process, default limits)\n")
    print(f"{'phase':<36} {'p50 ms':>8} {'p99 ms':>8} {'p50 x':>7} {'p99 x':>7} {'peak RSS':>10}  flood answers")
    for name, times, statuses, hwm in rows:
        answers = ", ".join(f"{count} x {status}" for status, count in sorted(statuses.items())) or "-"
        print(f"{name:<36} {pct(times, 50):8.2f} {pct(times, 99):8.2f} {pct(times, 50) / pct(quiet, 50):7.2f} "
              f"{pct(times, 99) / pct(quiet, 99):7.2f} {hwm / 1024:8.0f} MiB  {answers}")
    print(f"\nAPI process RSS before the phases {rss_before / 1024:.0f} MiB; peak RSS is the high-water mark so far")
    print(f"per-request user check (OperatorUsers.find, one primary-key query): n={len(checks)} "
          f"p50 {pct(checks, 50):.3f} ms  p99 {pct(checks, 99):.3f} ms  mean {statistics.fmean(checks):.3f} ms")


if __name__ == "__main__":
    main()
