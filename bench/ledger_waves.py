"""bench/ledger.py's waves alone, for counting the client's work: ``--waves N`` waves of 50 sessions.

Prints the client CPU per session (median of the waves). Run twice under callgrind, with ``--waves 4``
and ``--waves 0``, the difference of the two instruction totals over 200 is the instructions a session
costs the client, a figure that does not move with the machine's load (docs/performance.md):

    valgrind --tool=callgrind python bench/ledger_waves.py --waves 4

Against ``DATABASE_URL`` when set, else the project's embedded Postgres under var/bench-ledger-waves.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ledger import setup, wave  # noqa: E402

from adapters.postgres.env import eventsourcing_env  # noqa: E402
from adapters.servers.postgres_server import create_database  # noqa: E402
from adapters.servers.resolve import release, resolve_servers  # noqa: E402
from domain.ledger import Ledger  # noqa: E402

PILES = 50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waves", type=int, default=20)
    args = parser.parse_args()
    server_url, _nats, started = resolve_servers(Path("var/bench-ledger-waves").resolve())
    ledger = Ledger(eventsourcing_env(create_database(server_url, "bench_ledger_waves")))
    try:
        pile_nos, wallet = setup(ledger, PILES)
        wave(ledger, pile_nos, wallet, [])  # warm: the caches and prepared statements of every path
        cpu_ms = []
        for _ in range(args.waves):
            cpu = time.process_time()
            wave(ledger, pile_nos, wallet, [])
            cpu_ms.append((time.process_time() - cpu) / PILES * 1000)
        if cpu_ms:
            print(f"{args.waves} waves of {PILES} sessions: client CPU per session, median {statistics.median(cpu_ms):.3f} ms")
    finally:
        ledger.close()
        release(started)


if __name__ == "__main__":
    main()
