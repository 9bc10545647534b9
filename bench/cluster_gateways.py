"""The gateway part of bench/cluster.py: settled sessions/s through real gateway processes.

For each shard count, the deployment ``chargeledger cluster up`` draws (adapters/servers/local_cluster.py),
on the bench's Postgres and NATS: one shard is shard ``main`` (no shard map: the single-database
deployment, its relay publishing through its window); two are ``s1`` and ``s2`` (``CHARGELEDGER_SHARDS``,
the directory on ``s1``, a relay per shard sharing the one stream, each publishing one at a time:
docs/shards.md). Each shard holds a tenant, a station, a tariff and ``piles`` piles (each having
confirmed the tariff, as a fleet in service has), a driver's wallet per pile; the relays are
``chargeledger serve --role relay [--shard NAME]`` processes. Then, for each gateway count, that many
``chargeledger serve --role gateway --no-relay --no-watchdog`` processes (every one serving every shard),
and a process per shard of drivers and scripted piles (bench/cluster_fleet.py) spread over the gateways.
A run's time is the slowest shard's; the bench joins the barrier too, to read the CPU each role spent
in the measured window (/proc: the gateways', the relays' and the fleets' processes).
"""

from __future__ import annotations

import functools
import multiprocessing as mp
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg

from adapters.postgres.env import eventsourcing_env
from adapters.postgres.shards import ShardDirectory, ShardMap
from adapters.servers.local_cluster import shard_names
from adapters.servers.nats_users import GATEWAY, RELAY
from adapters.servers.postgres_server import create_database
from adapters.servers.processes import HOST, accepts_tcp, free_ports
from adapters.servers.resolve import nats_url_for
from bench.cluster_fleet import PRICES, fleet_worker
from bench.pile_link_parts import cpu_seconds
from domain.ledger import Ledger
from domain.registry import Pile
from pile_link.simulator.fleet import pile_numbers
from tests.e2e.relay_harness import Processes, caught_up

# Two shards through two gateways: 2 gateways x 2 shards + 2 relays + 2 fleets use a database each, at up
# to 40 connections apiece (local_cluster.Layout.max_connections counts the same way): more than 200.
MAX_CONNECTIONS = 50 + 40 * (2 * 2 + 2 + 2)
START_TIMEOUT = 120.0  # seconds for a role process to listen, or a relay to publish the setup's events
STOP_TIMEOUT = 30.0


@dataclass
class Shard:
    name: str
    url: str
    piles: list[tuple[str, UUID]]  # (pile number, its driver's wallet)


@dataclass
class Figures:
    sessions: int
    events: int
    seconds: float
    cpu: dict[str, float] = field(default_factory=dict)  # role -> CPU seconds in the measured window

    @property
    def sessions_s(self) -> float:
        return self.sessions / self.seconds

    @property
    def events_s(self) -> float:
        return self.events / self.seconds

    @property
    def cores_busy(self) -> float:
        """Cores the machine kept busy in the window, on average (2.0: both, all the time)."""
        return self.cpu.get("machine", 0.0) / self.seconds

    def cpu_ms_per_session(self, role: str) -> float:
        return 1000 * self.cpu.get(role, 0.0) / self.sessions


def place_shards(server_url: str, count: int, piles: int) -> list[Shard]:
    """Fresh databases for ``count`` shards, each with its tenant (placed in the directory with two
    shards), station, tariff, piles (claimed in the directory) and a topped-up wallet per pile."""
    with psycopg.connect(server_url) as conn:
        (room,) = conn.execute("SHOW max_connections").fetchone()
    if int(room) < MAX_CONNECTIONS:
        raise RuntimeError(f"the bench's Postgres allows {room} connections, the gateway part needs {MAX_CONNECTIONS}: "
                           "stop the server left running (or give DATABASE_URL a roomier one)")
    names = shard_names(count)
    urls = {name: create_database(server_url, f"bench_gw_{count}_{name}") for name in names}
    directory = ShardDirectory(ShardMap(urls))
    shards = []
    for i, (name, url) in enumerate(urls.items()):
        ledger = Ledger(eventsourcing_env(url, pool_size=1, max_overflow=2))
        try:
            tenant = ledger.create_tenant(f"bench tenant {name}", "bench")
            station = ledger.create_station(tenant, "bench", "1 Road", 31.2, 121.5, "bench")
            tariff = ledger.create_tariff(tenant, "bench", PRICES, [2] * 48, "bench")
            ledger.assign_tariff(tariff, "bench", station_id=station)
            directory.place(tenant, name, "bench")
            numbers = pile_numbers(f"{32010700000000 + count * 1_000_000 + i * 100_000:014d}", piles)
            version = ledger.tariffs.tariff(tariff).tariff_version
            registered = [Pile.register(n, tenant, station, "DC", 1, "bench") for n in numbers]
            for pile in registered:  # holding the tariff in force (else each login is owed a tariff push)
                directory.claim_pile(pile.pile_no, tenant)
                pile.confirm_billing_model(tariff, version, datetime.now(timezone.utc))
            ledger.registry.save(*registered)
            wallets = []
            for n in numbers:
                wallets.append(wallet := ledger.open_wallet(tenant, f"driver-{n}", "bench"))
                ledger.top_up(wallet, key=f"top-up {n}", amount=10**9, provider="wechat", payment_ref=f"b{n}")
            shards.append(Shard(name, url, list(zip(numbers, wallets))))
        finally:
            ledger.close()
    return shards


class Deployment:
    """One shard count's role processes: a relay per shard for its life, gateways per measurement."""

    def __init__(self, shards: list[Shard], nats_url: str, servers: list[Any], logs: Path) -> None:
        self.shards = shards
        self.nats_url, self.servers = nats_url, servers
        logs.mkdir(parents=True, exist_ok=True)
        env = {"LOG_LEVEL": "WARNING", "DATABASE_URL": shards[0].url}
        if len(shards) > 1:
            env["CHARGELEDGER_SHARDS"] = ",".join(f"{s.name}={s.url}" for s in shards)
        base = {k: v for k, v in os.environ.items() if k not in ("CHARGELEDGER_SHARDS", "CHARGELEDGER_SHARD")}
        self.processes = Processes(logs, {**base, **env})
        self.relays: list[subprocess.Popen[bytes]] = []

    def start_relays(self) -> None:
        """A relay process per shard; returns once each has published its shard's events so far (the
        stream made, so a gateway started next follows it from its first command)."""
        self.processes.env["NATS_URL"] = nats_url_for(RELAY, self.nats_url, self.servers)
        sharded = len(self.shards) > 1
        for shard in self.shards:
            self.relays.append(self.processes.start(f"relay-{shard.name}", "-m", "app", "serve", "--role", "relay",
                                                    *(["--shard", shard.name] if sharded else [])))
        for shard in self.shards:
            ledger = Ledger(eventsourcing_env(shard.url, pool_size=1, max_overflow=1))
            try:
                self.wait(functools.partial(caught_up, ledger, shard.url), f"relay of shard {shard.name} to catch up")
            finally:
                ledger.close()

    def wait(self, done: Any, what: str, procs: Sequence[subprocess.Popen[bytes]] = ()) -> None:
        """Until ``done()``; refused if a relay or one of ``procs`` died meanwhile, or after START_TIMEOUT."""
        deadline = time.monotonic() + START_TIMEOUT
        while not done():
            self.processes.alive(*self.relays, *procs)
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for the {what}")
            time.sleep(0.1)

    @contextmanager
    def gateways(self, count: int) -> Iterator[tuple[list[int], list[subprocess.Popen[bytes]]]]:
        """``count`` gateway processes, each serving every shard, listening when yielded; stopped after."""
        self.processes.env["NATS_URL"] = nats_url_for(GATEWAY, self.nats_url, self.servers)
        ports = free_ports(count)
        procs = [self.processes.start(f"gateway-{len(self.shards)}-{count}-{i}", "-m", "app", "serve", "--role",
                                      "gateway", "--host", HOST, "--port", str(port), "--no-relay", "--no-watchdog")
                 for i, port in enumerate(ports, 1)]
        try:
            self.wait(lambda: all(accepts_tcp(port) for port in ports), f"{count} gateway(s) to listen", procs)
            yield ports, procs
        finally:
            stop(procs)

    def close(self) -> None:
        stop(self.relays)
        self.processes.stop_all()


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """Ctrl-C to each (a role stops cleanly on it), then a kill for any still there after STOP_TIMEOUT."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    for proc in procs:
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu(roles: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds so far of each role's processes, and the whole machine's (``machine``: every process,
    the database and other users' too, from /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    busy = sum(fields) - fields[3] - fields[4]  # all but idle and iowait
    return {**{role: sum(cpu_seconds(pid) for pid in pids) for role, pids in roles.items()},
            "machine": busy / os.sysconf("SC_CLK_TCK")}


def measure(deployment: Deployment, gateways: int, sessions: int, readings: int) -> Figures:
    """One run: ``sessions`` per shard through ``gateways`` gateway processes."""
    ctx = mp.get_context("spawn")
    shards = deployment.shards
    with deployment.gateways(gateways) as (ports, procs):
        barrier, out = ctx.Barrier(len(shards) + 1), ctx.Queue()
        fleets = [ctx.Process(target=fleet_worker, args=(s.name, s.url, s.piles, ports, sessions, readings, barrier,
                                                         out)) for s in shards]
        for p in fleets:
            p.start()
        roles = {"gateways": [p.pid for p in procs], "relays": [p.pid for p in deployment.relays],
                 "fleets": [p.pid for p in fleets]}
        try:
            barrier.wait(600)
        except Exception:  # noqa: BLE001 - a fleet broke it: its error is on the queue
            pass
        before = cpu(roles)
        results = [out.get(timeout=1800) for _ in fleets]
        after = cpu(roles)  # the fleets not joined yet: an exited one's times are still in /proc
        for p in fleets:
            p.join()
        deployment.processes.alive(*procs, *deployment.relays)
    failed = [r for r in results if len(r) == 2]
    if failed:
        raise RuntimeError("; ".join(f"shard {shard}: {error}" for shard, error in failed))
    return Figures(sum(r[1] for r in results), sum(r[2] for r in results), max(r[3] for r in results),
                   {role: after[role] - before[role] for role in before})
