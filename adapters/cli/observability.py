"""Every role's ``--metrics-port``: its metrics, ``/healthz`` and ``/readyz``, and what it reports.

:func:`add_arguments` gives a role command ``--metrics-port`` (or ``CHARGELEDGER_METRICS_PORT``; none:
no server) and ``--metrics-host`` (``CHARGELEDGER_METRICS_HOST``, default 127.0.0.1: the figures
include the books, so expose them to the scraper's network only). :func:`serving` runs the server
(:mod:`adapters.metrics.exporter`) around the role with its readiness checks and registers what the
role reports; the ``*_collectors`` functions say what each role reads (docs/operations.md, "Metrics
and alarms to watch"). Any role may run twice or more: figures of the whole ledger (lags, books,
backlogs) are the same from every copy, so dashboards take their ``max``; counters are summed.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
from prometheus_client.registry import Collector

from adapters.metrics import checks, figures
from adapters.metrics.cached import TTL, Cached
from adapters.metrics.exporter import MetricsServer
from adapters.metrics.figures import Live
from adapters.metrics.instruments import ROLE, register, unregister


def add_arguments(parser: argparse.ArgumentParser) -> None:
    port = os.environ.get("CHARGELEDGER_METRICS_PORT")
    parser.add_argument("--metrics-port", type=int, default=int(port) if port else None,
                        help="serve /metrics, /healthz and /readyz on this port (0: any free one; default "
                             "$CHARGELEDGER_METRICS_PORT, else none)")
    parser.add_argument("--metrics-host", default=os.environ.get("CHARGELEDGER_METRICS_HOST", "127.0.0.1"),
                        help="the address the metrics port listens on (default 127.0.0.1)")


@contextmanager
def serving(args: argparse.Namespace, role: str, *, database_url: str | None = None, nats_url: str | None = None,
            state: Callable[[], dict[str, Any]] | None = None,
            collectors: Sequence[Collector] = ()) -> Iterator[MetricsServer | None]:
    """Register ``collectors`` for the role's life; with ``--metrics-port``, serve them and the health
    paths (ready when the database and, if given, NATS answer) and print where."""
    ROLE.labels(role).set(1)
    registered = [register(c) for c in collectors]
    server = None
    try:
        if getattr(args, "metrics_port", None) is not None:
            ready = {}
            if database_url:
                ready["database"] = checks.database(database_url)
            if nats_url:
                ready["nats"] = checks.nats(nats_url)
            server = MetricsServer(args.metrics_host, args.metrics_port, ready,
                                   lambda: {"role": role, **(state() if state else {})}).start()
            print(f"metrics on http://{server.host}:{server.port}/metrics (/healthz, /readyz)", flush=True)
        yield server
    finally:
        if server is not None:
            server.stop()
        for collector in registered:
            unregister(collector)
        ROLE.remove(role)


# ---- what each role reports -----------------------------------------------------------------------------
def relay_collectors(relay: Any, ttl: float = TTL) -> list[Collector]:
    """The relay's counters and leadership from memory; its lag (log heads, its positions) cached."""
    def counters() -> list[Any]:
        return figures.relay(relay.published, relay.errors, relay.synced, relay.takeovers, relay.is_leader)
    return [Live(counters), Cached("relay", lambda: figures.relay_lag(relay.lag()), ttl)]


def projection_collectors(projections: Any, ttl: float = TTL) -> list[Collector]:
    """Each view's lag behind each log it follows, whether it is held back, and the books view's figures."""
    from projections import books, health

    def lags() -> list[Any]:
        behind = {}
        for app in projections.applications:
            head = app.recorder.max_notification_id() or 0
            for name, recorder in projections.recorders.items():
                if app.name in recorder.view.follows():
                    behind[(name, app.name)] = max(0, head - (recorder.max_tracking_id(app.name) or 0))
        with projections.datastore.get_connection() as conn:
            failing = [(f["view"], f["application"]) for f in health.failing(conn)]
        return figures.projection_lag(behind, failing)

    def book_figures() -> list[Any]:
        with projections.datastore.get_connection() as conn:
            return figures.books(books.figures(conn))
    return [Cached("projections", lags, ttl), Cached("books", book_figures, ttl)]


def gateway_collectors(gateway: Any) -> list[Collector]:
    """Connected piles, connections, the gateway's counters and queues: all in memory."""
    def read() -> list[Any]:
        queues = {q.name: len(q.pending) for q in (gateway.readings, gateway.pile_changes, gateway.offline_sessions,
                                                   gateway.frames.queue)}
        return figures.gateway(len(gateway.links), len(gateway.connections), dict(gateway.stats), queues)
    return [Live(read)]


def watchdog_collectors(database_url: str, ttl: float = TTL) -> list[Collector]:
    """Open sessions and the wallet follow-ups waiting (small tables: sessions open, commands owed)."""
    def read() -> list[Any]:
        with psycopg.connect(database_url, connect_timeout=3) as conn:
            open_sessions = _count(conn, "open_sessions")
            followups = (conn.execute("SELECT count(*), count(*) FILTER (WHERE due <= now()) FROM wallet_followups")
                         .fetchone() if _exists(conn, "wallet_followups") else (0, 0))
        return figures.watchdog(open_sessions, *followups)
    return [Cached("watchdog", read, ttl)]


def outbox_collectors(database_url: str, applications: Sequence[Any], ttl: float = TTL) -> list[Collector]:
    """The T/CEC outbox's pending rows (its partial index on pending rows), and its follower's lag."""
    def read() -> list[Any]:
        heads = {app.name: app.recorder.max_notification_id() or 0 for app in applications}
        with psycopg.connect(database_url, connect_timeout=3) as conn:
            pending, due, oldest = conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE due <= now()), min(due) FILTER (WHERE due <= now()) "
                "FROM tcec_outbox WHERE state = 'pending'").fetchone()  # type: ignore[misc]
            positions = dict(conn.execute("SELECT application, position FROM tcec_outbox_tracking").fetchall())
        late = (datetime.now(UTC) - oldest).total_seconds() if oldest is not None else 0.0
        # a position per follower: an Application's name, or "<Application>:<what>" for a second one
        behind = {key: max(0, heads[key.split(":")[0]] - position) for key, position in positions.items()
                  if key.split(":")[0] in heads}
        return [*figures.outbox(pending, due, max(0.0, late)), figures.lag("tcec_outbox", behind)]
    return [Cached("outbox", read, ttl)]


def _exists(conn: Any, table: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()[0]  # type: ignore[index]


def _count(conn: Any, table: str) -> int:
    if not _exists(conn, table):  # the role that makes it has not run yet
        return 0
    return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # type: ignore[index]
