"""Benchmark the YKC gateway: many pile connections on one gateway process, and a reconnect storm.

Two servers get the same load in the same run, each in a process of its own: the real gateway
(logins read from the ledger on Postgres, status written behind, NATS follower and watchdog running)
and a bare ``asyncio.Protocol`` server that only frames and answers (login ack, heartbeat ack) with the
same decoder. The load comes from other processes (bench/pile_link_load.py), so the bench's own
client work is not the servers':

1. **steady**: ``--piles`` piles log in, then each sends a heartbeat every ``--heartbeat`` s and a
   share of them (``--realtime-share``) an idle realtime frame (0x13) every ``--realtime`` s. Figures
   over the steady window: frames/s, heartbeat answer latency p50 / p99, server CPU per 1,000 frames
   (from /proc), and memory per connection (RSS growth ÷ connections, read after the ramp). **The
   ratio to quote**: bare CPU per frame ÷ gateway CPU per frame (target ≥ 0.7; memory ≤ 6 KiB).
2. **storm**: then ``--storm`` more piles log in at ``--storm-rate`` a second (a second generator
   process) while the first keep heartbeating: login p99 of the storm's piles (target < 1 s), the
   heartbeat p99 of the piles already online during the storm (target < 50 ms), and the server's CPU
   per storm login (the steadier figure on a shared machine). With ``--storm-moved`` the storm's piles
   are first recorded connected at another gateway (as after that gateway's death), so what the gateway
   under test read of them at its start is behind the store.

    .venv/bin/python bench/pile_link.py                                  # 2,000 + 1,000 piles, quick
    .venv/bin/python bench/pile_link.py --piles 50000 --storm 10000      # the issue 15 must-show
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.pile_link_parts import (  # noqa: E402
    Generator,
    connect_elsewhere,
    cpu_seconds,
    percentile,
    prepare_ledger,
    raise_file_limit,
    rss_bytes,
    serve_bare,
    serve_gateway,
    start_server,
)
from pile_link.simulator.fleet import pile_numbers  # noqa: E402

FIRST_PILE = "98000000000001"
STORM_HOLD = 3.0  # s the storm's piles stay connected after their last login


def run_server(name: str, server_args: list[str], args: argparse.Namespace, storm_first: str,
               database_url: str | None = None) -> dict[str, float]:
    proc, port = start_server(__file__, server_args, args.loop)
    out = Path(f"/tmp/bench-pile-link-{os.getpid()}-{name}")
    try:
        time.sleep(0.5)
        rss0 = rss_bytes(proc.pid)
        storm_span = args.storm / args.storm_rate + STORM_HOLD + 15 if args.storm else 0
        online = Generator(port, FIRST_PILE, args.piles, args.connect_rate, args.heartbeat, args.realtime,
                           args.realtime_share, args.warm + args.steady + storm_span + 2, out.with_suffix(".online"))
        if not online.ramped.wait(args.piles / args.connect_rate + 120):
            raise RuntimeError(f"{name}: the fleet did not log in")
        time.sleep(args.warm)  # every realtime pile's first 0x13 (offline -> idle, written) is in
        rss1 = rss_bytes(proc.pid)
        cpu0, (t0, f0) = cpu_seconds(proc.pid), online.frames_sent()
        time.sleep(args.steady)
        cpu1, (t1, f1) = cpu_seconds(proc.pid), online.frames_sent()
        storm: dict[str, Any] = {}
        if args.storm and args.storm_moved and database_url:  # after the preload: the server's facts are behind
            took = connect_elsewhere(database_url, storm_first, args.storm)
            print(f"  {'':8} storm piles recorded connected at another gateway in {took:.1f} s", flush=True)
            cpu1 = cpu_seconds(proc.pid)
        storm_start = storm_end = time.time()
        storm_cpu = 0.0
        if args.storm:
            burst = Generator(port, storm_first, args.storm, args.storm_rate, args.heartbeat, args.realtime,
                              args.realtime_share, STORM_HOLD, out.with_suffix(".storm"))
            storm = burst.wait()
            storm_end = time.time() - STORM_HOLD
            storm_cpu = cpu_seconds(proc.pid) - cpu1  # the storm's logins and the online piles' frames meanwhile
        ramp = online.wait()
        steady = online.heartbeats(t0, t1)
        during = online.heartbeats(storm_start, storm_end)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        for suffix in (".online", ".storm"):
            out.with_suffix(suffix).unlink(missing_ok=True)
    frames = f1 - f0
    result = {
        "logged_in": float(ramp.get("logged_in", 0)), "dropped": float(ramp.get("dropped", 0)),
        "frames_per_s": frames / (t1 - t0), "p50_ms": percentile(steady, 50) * 1000,
        "p99_ms": percentile(steady, 99) * 1000, "cpu_ms_per_1000_frames": (cpu1 - cpu0) / frames * 1e6,
        "rss_per_conn_kib": (rss1 - rss0) / args.piles / 1024, "ramp_login_p99_ms": ramp.get("login_p99_ms", 0.0),
        "storm_logged_in": float(storm.get("logged_in", 0)), "storm_login_p50_ms": storm.get("login_p50_ms", 0.0),
        "storm_login_p99_ms": storm.get("login_p99_ms", 0.0),
        "storm_hb_p50_ms": percentile(during, 50) * 1000, "storm_hb_p99_ms": percentile(during, 99) * 1000,
        "storm_hb_n": float(len(during)), "storm_s": storm_end - storm_start,
        "storm_cpu_ms_per_login": storm_cpu / max(storm.get("logged_in", 0), 1) * 1000 if args.storm else 0.0,
    }
    print(f"  {name:8} {result['frames_per_s']:7,.0f} frames/s  heartbeat p50 {result['p50_ms']:6.2f} ms "
          f"p99 {result['p99_ms']:6.2f} ms  CPU {result['cpu_ms_per_1000_frames']:5.1f} ms/1,000 frames  "
          f"RSS {result['rss_per_conn_kib']:5.2f} KiB/connection  ({int(result['logged_in']):,} logged in, "
          f"{int(result['dropped'])} dropped; ramp login p99 {result['ramp_login_p99_ms']:.0f} ms)", flush=True)
    if args.storm:
        print(f"  {'':8} storm: {int(result['storm_logged_in']):,}/{args.storm:,} logged in over "
              f"{result['storm_s']:.1f} s, login p50 {result['storm_login_p50_ms']:.1f} ms p99 "
              f"{result['storm_login_p99_ms']:.1f} ms; online heartbeats meanwhile (n={int(result['storm_hb_n']):,}) "
              f"p50 {result['storm_hb_p50_ms']:.2f} ms p99 {result['storm_hb_p99_ms']:.2f} ms; server CPU "
              f"{result['storm_cpu_ms_per_login']:.2f} ms per storm login", flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--piles", type=int, default=2000, help="piles online on the server")
    parser.add_argument("--connect-rate", type=float, default=1000.0, help="logins/s of the online fleet's ramp")
    parser.add_argument("--heartbeat", type=float, default=10.0, help="s between heartbeats per pile")
    parser.add_argument("--realtime", type=float, default=10.0, help="s between idle 0x13 of a realtime pile")
    parser.add_argument("--realtime-share", type=float, default=0.2, help="share of piles sending realtime frames")
    parser.add_argument("--warm", type=float, default=12.0, help="s after the ramp before the steady window")
    parser.add_argument("--steady", type=float, default=20.0, help="s of the steady window")
    parser.add_argument("--storm", type=int, default=1000, help="piles logging in during the storm (0: none)")
    parser.add_argument("--storm-rate", type=float, default=1000.0, help="logins/s of the storm")
    parser.add_argument("--storm-moved", action="store_true",
                        help="record the storm's piles connected at another gateway just before the storm")
    parser.add_argument("--rounds", type=int, default=1, help="rounds (medians are reported)")
    parser.add_argument("--servers", default="gateway,bare",
                        help="which servers, in this order: gateway, bare, gateway-plain (the gateway on CPython's "
                             "default collector and switch interval: pile_link/runtime.py's before)")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio", help="the servers' event loop")
    args = parser.parse_args()
    limit = raise_file_limit(2 * (args.piles + args.storm) + 1000)  # the servers and generators inherit it
    total = args.piles + args.storm
    storm_first = pile_numbers(FIRST_PILE, args.piles + 1)[-1]
    started, database_url, nats_url = prepare_ledger(FIRST_PILE, total, "bench_pile_link")
    print(f"{args.piles:,} piles online (heartbeat every {args.heartbeat:g} s, {args.realtime_share:.0%} also a "
          f"0x13 every {args.realtime:g} s; logins ramped at {args.connect_rate:,.0f}/s), steady window "
          f"{args.steady:g} s; storm {args.storm:,} piles at {args.storm_rate:,.0f} logins/s; servers on "
          f"{args.loop}; file limit {limit:,}; {os.cpu_count()} CPUs", flush=True)
    servers = {"gateway": ["gateway", database_url, nats_url], "gateway-plain": ["gateway-plain", database_url, nats_url],
               "bare": ["bare"]}
    names = args.servers.split(",")
    results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    try:
        for n in range(args.rounds):
            print(f"round {n + 1}:", flush=True)
            for name in names:
                results[name].append(run_server(name, servers[name], args, storm_first,
                                                database_url if name.startswith("gateway") else None))
    finally:
        for server in reversed(started):
            server.release()
    med = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in results.items()}
    print(f"\nmedians over {args.rounds} round(s):")
    for name, m in med.items():
        print(f"  {name:8} {m['frames_per_s']:,.0f} frames/s, heartbeat p50 {m['p50_ms']:.2f} p99 {m['p99_ms']:.2f} ms, "
              f"{m['cpu_ms_per_1000_frames']:.1f} ms CPU/1,000 frames, {m['rss_per_conn_kib']:.2f} KiB/connection; "
              f"storm login p99 {m['storm_login_p99_ms']:.1f} ms, online heartbeat p99 {m['storm_hb_p99_ms']:.2f} ms, "
              f"{m['storm_cpu_ms_per_login']:.2f} ms CPU per storm login")
    if "gateway" in med and "bare" in med:
        g, b = med["gateway"], med["bare"]
        print(f"  capacity ratio (bare CPU per frame / gateway CPU per frame): "
              f"{b['cpu_ms_per_1000_frames'] / g['cpu_ms_per_1000_frames']:.2f}  (target >= 0.7)")
        print(f"  frames/s ratio (gateway / bare): {g['frames_per_s'] / b['frames_per_s']:.2f}")
    if "gateway" in med:
        g = med["gateway"]
        print(f"  gateway: memory {g['rss_per_conn_kib']:.2f} KiB/connection (target <= 6); storm login p99 "
              f"{g['storm_login_p99_ms']:.0f} ms (target < 1,000); online heartbeat p99 during the storm "
              f"{g['storm_hb_p99_ms']:.1f} ms (target < 50)")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        loop, kind = sys.argv[2], sys.argv[3]
        profile = os.environ.get("BENCH_PROFILE")  # a file for the server's event-loop thread's cProfile stats
        if profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()

            def stop(*_: object) -> None:
                profiler.disable()
                profiler.dump_stats(f"{profile}.{kind}")
                os._exit(0)

            signal.signal(signal.SIGTERM, stop)
        else:
            signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
        run = asyncio.run
        if loop == "uvloop":
            import uvloop

            run = uvloop.run
        run(serve_bare(0) if kind == "bare" else serve_gateway(0, sys.argv[4], sys.argv[5], tune=kind == "gateway"))
    else:
        sys.exit(main())
