"""``chargeledger projections run|rebuild|status``: the read views (projections/runner.py) from the command line."""

from __future__ import annotations

import argparse
import signal
import threading
import time

from adapters.cli import observability
from adapters.cli.servers import with_database
from adapters.cli.shards import add_shard_argument
from adapters.postgres.leader_lock import PROJECTIONS_LOCK, LeaderLock
from adapters.postgres.env import eventsourcing_env
from adapters.servers.outage import when_up
from domain.ledger import Ledger
from projections import health
from projections.runner import BATCH_SIZE, VIEWS, Projections, log


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("run", "rebuild", "status"),
                        help="run: follow the ledger forever; rebuild: drop every view and catch up from zero; "
                             "status: each view's position and any failure holding it back (exit 1 if any)")
    parser.add_argument("--view", action="append", choices=[v.name for v in VIEWS],
                        help="rebuild only this view (repeatable)")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    observability.add_arguments(parser)
    add_shard_argument(parser)
    parser.add_argument("--standby-interval", type=float, default=1.0,
                        help="run: seconds between a standby's tries of the leader's lock (default 1); any "
                             "number of `projections run` may run, the holder of the lock applies batches")


@with_database
def run(args: argparse.Namespace) -> int:
    """Run the projections against ``args.database_url``."""
    env = eventsourcing_env(args.database_url)
    ledger = when_up("projections: database at start", log, lambda: Ledger(env))
    projections = when_up("projections: database at start", log,
                          lambda: Projections(ledger.applications, env, batch_size=args.batch_size))
    try:
        if args.action == "status":
            return print_status(projections)
        if args.action == "rebuild":
            started = time.monotonic()
            count = projections.rebuild(args.view)
            print(f"rebuilt {', '.join(args.view or projections.recorders)}: {count} notifications "
                  f"in {time.monotonic() - started:.1f} s")
            return print_status(projections) if projections.failing else 0
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        lock = LeaderLock(args.database_url, PROJECTIONS_LOCK, "projections")
        try:
            with observability.serving(args, "projections", database_url=args.database_url,
                                       state=lambda: {"leader": lock.leading},
                                       collectors=observability.projection_collectors(projections)):
                projections.run_forever(stop, lock=lock, standby_interval=args.standby_interval)
        except KeyboardInterrupt:
            stop.set()
        finally:
            lock.release()
        return 0
    finally:
        projections.close()
        ledger.close()


def print_status(projections: Projections) -> int:
    """Print every view's position in every log it follows, then what holds any back. 1 if any is held back."""
    projections._positions.clear()
    for app in projections.applications:
        head = app.recorder.max_notification_id() or 0
        for name, recorder in projections.recorders.items():
            if app.name in recorder.view.follows():
                position = projections.position(name, app.name) or 0
                print(f"{name:14} {app.name:9} at {position:>10} of {head:>10}"
                      + ("" if position >= head else f"  ({head - position} behind)"))
    with projections.datastore.get_connection() as conn:
        failures = health.failing(conn)
    for f in failures:
        at = f"#{f['notification_id']} {f['event']}" if f["notification_id"] is not None else "its next batch"
        print(f"HELD BACK {f['view']} on {f['application']} at {at}, failing since "
              f"{f['failing_since']:%Y-%m-%d %H:%M:%S%z} ({f['attempts']} attempts, next "
              f"{f['next_attempt_at']:%H:%M:%S%z}): {f['error']}")
    return 1 if failures else 0
