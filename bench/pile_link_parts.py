"""The parts of bench/pile_link.py: the two servers under test, the ledger's piles, /proc readings, and
the load generator processes (bench/pile_link_load.py) seen from the bench."""

from __future__ import annotations

import asyncio
import gc
import math
import os
import resource
import subprocess
import sys
import threading
import time
from array import array
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


# ---- the servers under test (each runs in its own process: `bench/pile_link.py serve ...`) ----------
async def serve_bare(port: int) -> None:
    """Frames and answers, nothing else: the floor any YKC server pays (the same decoder and codec)."""
    from pile_link.ykc import FrameDecoder, Heartbeat, HeartbeatAck, Login, LoginAck, decode_message, encode_reply

    class Bare(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.decoder = FrameDecoder(lenient_crc=True)

        def data_received(self, data: bytes) -> None:
            for frame in self.decoder.feed(data):
                if not hasattr(frame, "frame_type"):
                    continue
                msg = decode_message(frame)
                if isinstance(msg, Heartbeat):
                    self.transport.write(encode_reply(frame, HeartbeatAck(msg.pile_no, msg.gun_no, 0), mirror_crc=True))  # type: ignore[attr-defined]
                elif isinstance(msg, Login):
                    self.transport.write(encode_reply(frame, LoginAck(msg.pile_no, 0), mirror_crc=True))  # type: ignore[attr-defined]

    loop = asyncio.get_running_loop()
    server = await loop.create_server(Bare, "127.0.0.1", port, backlog=4096)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    await asyncio.Event().wait()


async def serve_gateway(port: int, database_url: str, nats_url: str, tune: bool = True) -> None:
    """The real gateway; ``tune``: in a process tuned as ``chargeledger gateway`` tunes its own
    (pile_link/runtime.py), else on CPython's defaults (the bench's ``gateway-plain``)."""
    import logging

    from adapters.postgres.env import eventsourcing_env
    from domain.ledger import Ledger
    from pile_link.gateway import Gateway
    from pile_link.runtime import tuned

    logging.basicConfig(level=logging.ERROR)
    ledger = Ledger(eventsourcing_env(database_url, pool_size=8))
    gateway = Gateway(ledger, database_url=database_url, nats_url=nats_url, port=port, workers=8,
                      heartbeat_timeout=120)
    await gateway.start()
    runtime = asyncio.create_task(tuned(gateway)) if tune else None
    collections = GcPauses(os.environ.get("BENCH_GC"))
    print(f"PORT {gateway.port}", flush=True)
    stats = os.environ.get("BENCH_STATS")  # a file for the gateway's counters, written every second
    while runtime is None or not runtime.done():
        await asyncio.sleep(1.0)
        if stats:
            Path(stats).write_text(repr(dict(gateway.stats)))
        collections.write(gateway)
    runtime.result()  # it failed: say why


class GcPauses:
    """``BENCH_GC=file``: the collector's pauses by generation (the worst ten), rewritten every second, and
    once, 30 s in, the objects it tracks by type (``file.types``): where a connection's memory goes."""

    def __init__(self, path: str | None) -> None:
        self.path, self.pauses, self.began, self.ticks = path, [], 0.0, 0
        if path:
            gc.callbacks.append(self.timed)

    def timed(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.began = time.perf_counter()
        else:
            self.pauses.append((info["generation"], round((time.perf_counter() - self.began) * 1000, 1)))

    def write(self, gateway: object) -> None:
        if not self.path:
            return
        self.ticks += 1
        full = sum(1 for generation, _ in self.pauses if generation == 2)
        worst = sorted(self.pauses, key=lambda p: -p[1])[:10]
        Path(self.path).write_text(f"{len(self.pauses)} collections, {full} full; worst (generation, ms): {worst}\n")
        if self.ticks == 30:
            tracked = gc.get_objects()
            counts = Counter(type(o).__qualname__ for o in tracked)
            Path(f"{self.path}.types").write_text(
                f"{len(tracked)} objects tracked, {gc.get_freeze_count()} frozen, "
                f"{len(gateway.connections)} connections\n"  # type: ignore[attr-defined]
                + "\n".join(f"{n:8} {name}" for name, n in counts.most_common(40)) + "\n")


def start_server(script: str, args: list[str], loop: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, script, "serve", loop, *args], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    return proc, int(line.split()[1])


# ---- measuring a process --------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def raise_file_limit(wanted: int) -> int:
    """Raise this process's open-files limit to ``wanted`` (the hard limit too, where allowed: root, up to
    fs.nr_open); the servers and load generators it starts inherit it. Returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, OSError):
            wanted = hard
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        soft = wanted
    return soft


def percentile(values: list[float] | array[float], p: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


# ---- the ledger's piles -----------------------------------------------------------------------------
def prepare_ledger(first_pile: str, piles: int, name: str) -> tuple[list[Any], str, str]:
    """A fresh database with one station and ``piles`` piles (registered 500 to a transaction), each
    having confirmed the station's tariff (else every login is owed a tariff push: a 0x12, five
    seconds' wait for realtime frames the load does not answer, two more reads and a 0x58)."""
    from adapters.postgres.env import eventsourcing_env
    from adapters.servers.postgres_server import create_database
    from adapters.servers.resolve import resolve_servers
    from domain.ledger import Ledger
    from domain.registry import Pile
    from pile_link.simulator.fleet import pile_numbers

    server_url, nats_url, started = resolve_servers(ROOT / "var" / "bench")
    database_url = create_database(server_url, name)
    ledger = Ledger(eventsourcing_env(database_url))
    try:
        tenant = ledger.create_tenant("Bench Operator", "bench")
        station = ledger.create_station(tenant, "Bench Station", "1 Loopback Rd", 31.2, 121.5, "bench")
        prices = {t: {"electricity": 100000, "service": 50000} for t in ("sharp", "peak", "flat", "valley")}
        tariff = ledger.create_tariff(tenant, "flat", prices, [2] * 48, "bench")
        ledger.assign_tariff(tariff, "bench", station_id=station)
        t0 = time.monotonic()
        numbers = pile_numbers(first_pile, piles)
        version = ledger.tariffs.tariff(tariff).tariff_version
        for i in range(0, piles, 500):  # each holding the tariff in force, as a fleet in service does
            batch = [Pile.register(n, tenant, station, "DC", 1, "bench") for n in numbers[i:i + 500]]
            for pile in batch:
                pile.confirm_billing_model(tariff, version, datetime.now(timezone.utc))
            ledger.registry.save(*batch)
        print(f"registered {piles:,} piles in {time.monotonic() - t0:.1f} s", flush=True)
    finally:
        ledger.close()
    return started, database_url, nats_url


def connect_elsewhere(database_url: str, first_pile: str, piles: int) -> float:
    """Record ``piles`` piles connected at another gateway (``Connected`` events, 500 to a transaction), as
    a storm's piles are when the gateway that held them died: what the gateway under test knew of them
    (its preload) is then behind the store. Returns the seconds it took (the bench's process, not the server's)."""
    from eventsourcing.application import project_aggregate
    from eventsourcing.persistence import StoredEvent
    from psycopg.sql import Identifier

    from adapters.postgres.env import eventsourcing_env
    from domain.ledger import Ledger
    from domain.registry import Pile
    from pile_link.pile_facts import LOAD
    from pile_link.simulator.fleet import pile_numbers

    t0 = time.monotonic()
    ledger = Ledger(eventsourcing_env(database_url))
    registry = ledger.registry
    recorder = registry.recorder
    query = LOAD.format(snapshots=Identifier(recorder.datastore.schema, registry.snapshots.recorder.events_table_name),
                        events=Identifier(recorder.datastore.schema, recorder.events_table_name))
    at = datetime.now(timezone.utc)
    try:
        numbers = pile_numbers(first_pile, piles)
        for i in range(0, piles, 500):  # each batch's piles read in one query into the cache, then written
            with recorder.datastore.get_connection() as conn, conn.cursor() as cursor:
                cursor.execute(query, [[Pile.create_id(n) for n in numbers[i:i + 500]]])
                rows = cursor.fetchall()
            loaded: dict[Any, Any] = {}
            for row in rows:
                event = registry.mapper.to_domain_event(StoredEvent(row["originator_id"], row["originator_version"],
                                                                    row["topic"], bytes(row["state"])))
                loaded[row["originator_id"]] = project_aggregate(loaded.get(row["originator_id"]), [event])
            for pile_id, pile in loaded.items():
                registry.repository.cache.put(pile_id, pile)
            ledger.record_pile_changes([(n, lambda p: p.connect(at=at, gateway="a-gateway-that-died",
                                                                 protocol_version=1, program_version="bench"))
                                        for n in numbers[i:i + 500]])
    finally:
        ledger.close()
    return time.monotonic() - t0


# ---- a load generator process --------------------------------------------------------------------
class Generator:
    """A bench/pile_link_load.py process, its progress lines read as they come."""

    def __init__(self, port: int, first_pile: str, piles: int, rate: float, heartbeat: float, realtime: float,
                 share: float, duration: float, out: Path) -> None:
        self.out = out
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "pile_link_load.py"), str(port), first_pile, str(piles), str(rate),
             str(heartbeat), str(realtime), str(share), str(duration), str(out)], stdout=subprocess.PIPE, text=True)
        self.ramped = threading.Event()
        self.ramped_at = 0.0
        self.ticks: list[tuple[float, int, int]] = []  # (wall time, frames sent, heartbeats answered)
        self.result: dict[str, Any] = {}
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("TICK "):
                _, at, frames, answered = line.split()
                self.ticks.append((float(at), int(frames), int(answered)))
            elif line.startswith("RAMPED "):
                self.ramped_at = float(line.split()[1])
                self.ramped.set()
            elif line.startswith("{"):
                import json

                self.result = json.loads(line)

    def frames_sent(self) -> tuple[float, int]:
        """(wall time, frames sent so far) as last reported."""
        at, frames, _ = self.ticks[-1] if self.ticks else (time.time(), 0, 0)
        return at, frames

    def wait(self) -> dict[str, Any]:
        self.proc.wait()
        self.reader.join(timeout=10)
        return self.result

    def heartbeats(self, start: float, end: float) -> list[float]:
        """Heartbeat answer latencies (s) of answers read between two wall times."""
        data = array("d")
        with self.out.open("rb") as f:
            data.frombytes(f.read())
        half = len(data) // 2
        return [lat for at, lat in zip(data[:half], data[half:]) if start <= at < end]
