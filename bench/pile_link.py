"""Benchmark the YKC gateway: many concurrent pile connections on loopback, held with heartbeats.

Two servers get the same load in the same run, each in a process of its own (the load generator is
a third): the real gateway (login goes to the ledger on Postgres, realtime frames update gun status)
and a bare asyncio server that only frames and answers (login ack, heartbeat ack). Figures:

* frames/s received, reply latency p50 / p99 (0x03 → 0x04, written → decoded by the pile);
* server CPU seconds per 1,000 frames in the steady window, from /proc; **the ratio to quote** is
  bare CPU per frame ÷ gateway CPU per frame: the gateway's capacity as a share of a server that
  does nothing but frame (target ≥ 0.5);
* server memory per connection (RSS growth ÷ connections).

    .venv/bin/python bench/pile_link.py                      # 10,000 piles, ~6,000 frames/s, 60 s
    .venv/bin/python bench/pile_link.py --piles 500 --duration 10   # quick look
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pile_link.simulator.fleet import pile_numbers  # noqa: E402
from pile_link.simulator.load import Latency, LoadConfig, LoadFleet, raise_fd_limit  # noqa: E402

FIRST_PILE = "98000000000001"


# ---- the servers under test (each runs in its own process: `bench/pile_link.py serve ...`) ----------
async def serve_bare(port: int) -> None:
    """Frames and answers, nothing else: the floor any YKC server pays."""
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
                    self.transport.write(encode_reply(frame, HeartbeatAck(msg.pile_no, msg.gun_no, 0), mirror_crc=True))
                elif isinstance(msg, Login):
                    self.transport.write(encode_reply(frame, LoginAck(msg.pile_no, 0), mirror_crc=True))

    loop = asyncio.get_running_loop()
    server = await loop.create_server(Bare, "127.0.0.1", port, backlog=4096)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    await asyncio.Event().wait()


async def serve_gateway(port: int, database_url: str, nats_url: str) -> None:
    import logging

    from adapters.postgres.env import eventsourcing_env
    from domain.ledger import Ledger
    from pile_link.gateway import Gateway

    logging.basicConfig(level=logging.ERROR)
    ledger = Ledger(eventsourcing_env(database_url, pool_size=8))
    gateway = Gateway(ledger, database_url=database_url, nats_url=nats_url, port=port, workers=8,
                      heartbeat_timeout=120)
    await gateway.start()
    print(f"PORT {gateway.port}", flush=True)
    await asyncio.Event().wait()


# ---- measuring a server process ----------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def start_server(args: list[str], loop: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, __file__, "serve", loop, *args], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    return proc, int(line.split()[1])


def measure(name: str, proc: subprocess.Popen[str], port: int, config: LoadConfig) -> dict[str, float]:
    rss_before = rss_bytes(proc.pid)
    fleet = LoadFleet("127.0.0.1", port, config)
    marks: dict[str, float] = {}

    async def run() -> object:
        task = asyncio.create_task(fleet.run())
        # the steady window starts once every pile is logged in: sample CPU then and at the end
        while fleet_logged_in(fleet) < config.connections and not task.done():
            await asyncio.sleep(0.2)
        # one realtime interval more: every gun's first 0x13 (offline -> idle, a ledger write) is in
        await asyncio.sleep(min(config.realtime_interval + 10.0, config.duration / 2))
        marks["cpu0"], marks["t0"], marks["frames0"] = cpu_seconds(proc.pid), time.monotonic(), fleet_frames(fleet)
        marks["samples0"] = fleet.report.heartbeat.count
        marks["rss"] = rss_bytes(proc.pid)
        report = await task
        marks["cpu1"], marks["t1"], marks["frames1"] = cpu_seconds(proc.pid), time.monotonic(), fleet_frames(fleet)
        return report

    report = asyncio.run(run())
    frames = marks["frames1"] - marks["frames0"]
    seconds = marks["t1"] - marks["t0"]
    cpu = marks["cpu1"] - marks["cpu0"]
    steady = Latency()  # replies in the steady window only, not the ramp-up's logins
    steady.samples = report.heartbeat.samples[int(marks["samples0"]):]  # type: ignore[attr-defined]
    result = {
        "frames_per_s": frames / seconds,
        "p50_ms": steady.percentile(50) * 1000,
        "p99_ms": steady.percentile(99) * 1000,
        "cpu_ms_per_1000_frames": cpu / frames * 1e6 if frames else float("nan"),
        "rss_per_conn_kib": (marks["rss"] - rss_before) / config.connections / 1024,
        "logged_in": float(report.logged_in),  # type: ignore[attr-defined]
    }
    print(f"  {name:8} {result['frames_per_s']:8,.0f} frames/s  p50 {result['p50_ms']:6.2f} ms  "
          f"p99 {result['p99_ms']:6.2f} ms  server CPU {result['cpu_ms_per_1000_frames']:6.1f} ms/1,000 frames  "
          f"RSS {result['rss_per_conn_kib']:5.1f} KiB/connection  ({int(result['logged_in']):,} logged in)",
          flush=True)
    for line in report.lines():  # type: ignore[attr-defined]
        print(f"           {line}")
    return result


def fleet_logged_in(fleet: LoadFleet) -> int:
    return fleet.report.logged_in


def fleet_frames(fleet: LoadFleet) -> int:
    return fleet.report.heartbeats_sent + fleet.report.realtime_sent


def prepare_ledger(piles: int) -> tuple[list[object], str, str]:
    from adapters.postgres.env import eventsourcing_env
    from adapters.servers.postgres_server import create_database
    from adapters.servers.resolve import resolve_servers
    from domain.ledger import Ledger

    server_url, nats_url, started = resolve_servers(ROOT / "var" / "bench")
    database_url = create_database(server_url, "bench_pile_link")
    ledger = Ledger(eventsourcing_env(database_url))
    try:
        tenant = ledger.create_tenant("Bench Operator", "bench")
        station = ledger.create_station(tenant, "Bench Station", "1 Loopback Rd", 31.2, 121.5, "bench")
        prices = {t: {"electricity": 100000, "service": 50000} for t in ("sharp", "peak", "flat", "valley")}
        tariff = ledger.create_tariff(tenant, "flat", prices, [2] * 48, "bench")
        ledger.assign_tariff(tariff, "bench", station_id=station)
        t0 = time.monotonic()
        for pile_no in pile_numbers(FIRST_PILE, piles):
            ledger.register_pile(station, pile_no, "DC", 1, "bench")
        print(f"registered {piles:,} piles in {time.monotonic() - t0:.1f} s", flush=True)
    finally:
        ledger.close()
    return started, database_url, nats_url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--piles", type=int, default=10_000)
    parser.add_argument("--heartbeat-interval", type=float, default=2.0, help="s between heartbeats per pile")
    parser.add_argument("--realtime-interval", type=float, default=10.0, help="s between idle 0x13 per pile")
    parser.add_argument("--duration", type=float, default=60.0, help="s of steady load per server")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio",
                        help="event loop of both servers under test (the load generator always uses asyncio)")
    args = parser.parse_args()
    raise_fd_limit(2 * args.piles + 100)
    started, database_url, nats_url = prepare_ledger(args.piles)
    config = LoadConfig(connections=args.piles, guns=1, heartbeat_interval=args.heartbeat_interval,
                        realtime_interval=args.realtime_interval, duration=args.duration, connect_rate=500,
                        first_pile=FIRST_PILE)
    print(f"servers on the {args.loop} event loop; load: {args.piles:,} connections, {config.frames_per_second:,.0f} frames/s offered "
          f"(heartbeat every {args.heartbeat_interval} s, idle realtime every {args.realtime_interval} s), "
          f"{args.duration:.0f} s steady per server", flush=True)
    results: dict[str, list[dict[str, float]]] = {"gateway": [], "bare": []}
    try:
        for _ in range(args.rounds):
            for name, server_args in (("gateway", ["gateway", database_url, nats_url]), ("bare", ["bare"])):
                proc, port = start_server(server_args, args.loop)
                try:
                    results[name].append(measure(name, proc, port, config))
                finally:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=30)
    finally:
        for server in reversed(started):
            server.release()  # type: ignore[attr-defined]
    med = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in results.items()}
    ratio = med["bare"]["cpu_ms_per_1000_frames"] / med["gateway"]["cpu_ms_per_1000_frames"]
    print(f"\nmedians over {args.rounds} round(s):")
    print(f"  gateway: {med['gateway']['frames_per_s']:,.0f} frames/s, p99 {med['gateway']['p99_ms']:.1f} ms, "
          f"{med['gateway']['rss_per_conn_kib']:.1f} KiB/connection")
    print(f"  bare:    {med['bare']['frames_per_s']:,.0f} frames/s, p99 {med['bare']['p99_ms']:.1f} ms, "
          f"{med['bare']['rss_per_conn_kib']:.1f} KiB/connection")
    print(f"  capacity ratio (bare CPU per frame / gateway CPU per frame): {ratio:.2f}  (target >= 0.5)")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        loop, kind = sys.argv[2], sys.argv[3]
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
        run = asyncio.run
        if loop == "uvloop":
            import uvloop

            run = uvloop.run
        if kind == "bare":
            run(serve_bare(0))
        else:
            run(serve_gateway(0, sys.argv[4], sys.argv[5]))
    else:
        sys.exit(main())
