"""The load generator of bench/pile_link.py, run as a process of its own (one per fleet).

    python bench/pile_link_load.py PORT FIRST_PILE PILES CONNECT_RATE HEARTBEAT_S REALTIME_S SHARE DURATION OUT

It connects ``PILES`` simulated piles (pile_link/simulator/load.py: one asyncio process, an
``asyncio.Protocol`` per connection, no task per connection) at ``CONNECT_RATE`` a second, then holds
them for ``DURATION`` s. On stdout: ``RAMPED <wall time>`` once every login is answered, a ``TICK
<wall time> <frames sent> <heartbeats answered>`` line every half second, and at the end one JSON line
(logins, login latency percentiles). Each heartbeat answer's (wall time, latency) goes to ``OUT``
(two float64 arrays), so the caller can take percentiles over any window of the run.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from array import array
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pile_link.simulator.load import LoadConfig, LoadFleet  # noqa: E402


async def generate(port: int, config: LoadConfig, out: Path) -> dict[str, float]:
    fleet = LoadFleet("127.0.0.1", port, config)
    run = asyncio.create_task(fleet.run())
    loop = asyncio.get_running_loop()
    ramped = False
    while not run.done():
        report = fleet.report
        if not ramped and report.logged_in + report.login_failed + report.connect_failed >= config.connections:
            ramped = True
            print(f"RAMPED {time.time():.3f}", flush=True)
        print(f"TICK {time.time():.3f} {report.heartbeats_sent + report.realtime_sent} {report.heartbeat.count}",
              flush=True)
        await asyncio.wait([run], timeout=0.5)
    report = run.result()
    offset = time.time() - loop.time()  # loop time -> wall time, to line windows up across processes
    with out.open("wb") as f:
        array("d", (t + offset for t in report.heartbeat_at)).tofile(f)
        report.heartbeat.samples.tofile(f)
    return {"logged_in": report.logged_in, "refused": report.login_failed, "connect_failed": report.connect_failed,
            "dropped": report.dropped, "login_p50_ms": report.login.percentile(50) * 1000,
            "login_p99_ms": report.login.percentile(99) * 1000, "login_max_ms": max(report.login.samples, default=0) * 1000,
            "ramp_s": report.ramp_s, "frame_errors": report.frame_errors, "unanswered": report.unanswered}


def main() -> None:
    port, first, piles, rate, heartbeat, realtime, share, duration, out = sys.argv[1:10]
    config = LoadConfig(connections=int(piles), guns=1, heartbeat_interval=float(heartbeat),
                        realtime_interval=float(realtime), realtime_share=float(share), duration=float(duration),
                        connect_rate=float(rate), connect_concurrency=max(256, int(float(rate) / 2)),
                        first_pile=first, reply_timeout=30.0)
    print(json.dumps(asyncio.run(generate(int(port), config, Path(out)))), flush=True)


if __name__ == "__main__":
    main()
