"""What a role reads at scrape time, as metric families: each function takes plain figures (what a
role's objects or a query give) and returns the families, so every name read at scrape time is
defined here, beside the counters of :mod:`adapters.metrics.instruments`.

A role's collector is :class:`Live` (read on every scrape: figures in memory) or
:class:`~adapters.metrics.cached.Cached` (figures that need a query); ``adapters/cli/observability.py``
wires them per role.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector


class Live(Collector):
    """Families read from memory on every scrape (``read`` must be cheap: no I/O)."""

    def __init__(self, read: Callable[[], Iterable[Metric]]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        yield from self.read()


def gauge(name: str, text: str, values: Mapping[tuple[str, ...], float] | float, labels: Iterable[str] = ()) -> Metric:
    family = GaugeMetricFamily(name, text, labels=list(labels) or None)
    for key, value in (values.items() if isinstance(values, Mapping) else [((), values)]):
        family.add_metric(list(key), float(value))
    return family


def counter(name: str, text: str, values: Mapping[tuple[str, ...], float], labels: Iterable[str]) -> Metric:
    family = CounterMetricFamily(name, text, labels=list(labels))
    for key, value in values.items():
        family.add_metric(list(key), float(value))
    return family


# ---- the gateway (pile_link/gateway.py: its registry of connections, its stats, its queues) ---------------
def gateway(links: int, connections: int, stats: Mapping[str, int], queues: Mapping[str, int]) -> list[Metric]:
    """``links``: piles logged in here; ``connections``: TCP connections, logged in or not; ``stats``:
    the gateway's own counters (``Gateway.stats``: frames, bad frames, refusals, commands, outages);
    ``queues``: what waits in each write-behind queue (readings, pile changes, the frame log)."""
    return [
        gauge("chargeledger_connected_piles", "piles logged in on this gateway", links),
        gauge("chargeledger_gateway_connections", "TCP connections open on this gateway (logged in or not)",
              connections),
        counter("chargeledger_gateway_events_total", "the gateway's own counters (Gateway.stats), by name",
                {(name,): value for name, value in stats.items()}, ["event"]),
        gauge("chargeledger_gateway_queue_depth", "items waiting in a write-behind queue, by queue",
              {(name,): depth for name, depth in queues.items()}, ["queue"]),
    ]


# ---- leaders and followers ------------------------------------------------------------------------------
def leader(role: str, leading: bool) -> Metric:
    return gauge("chargeledger_leader", "1 while this process leads its role (holds its lock), 0 standing by",
                 {(role,): 1.0 if leading else 0.0}, ["role"])


def relay(published: int, errors: int, synced: int, takeovers: int, leading: bool) -> list[Metric]:
    """The relay's counters (``Relay.metrics()``)."""
    return [
        counter("chargeledger_relay_published_total", "events this relay published and JetStream acknowledged",
                {(): published}, []),
        counter("chargeledger_relay_errors_total", "failed attempts (database, NATS, unexpected), each retried",
                {(): errors}, []),
        counter("chargeledger_relay_synced_total", "times the position was moved up to what the stream held",
                {(): synced}, []),
        counter("chargeledger_relay_takeovers_total", "times this relay became the leader", {(): takeovers}, []),
        leader("relay", leading),
    ]


def lag(follower: str, behind: Mapping[str, int]) -> Metric:
    """How many notification ids a follower's position is behind each log's head (``behind``: per Application)."""
    return gauge("chargeledger_follower_lag", "notifications a follower has yet to process, by follower and log",
                 {(follower, app): n for app, n in behind.items()}, ["follower", "application"])


def relay_lag(behind: Mapping[str, int]) -> list[Metric]:
    return [gauge("chargeledger_relay_lag", "notifications committed but not yet on the stream (log head - "
                  "published position), by log", {(app,): n for app, n in behind.items()}, ["application"]),
            lag("relay", behind)]


def projection_lag(behind: Mapping[tuple[str, str], int], held_back: Iterable[tuple[str, str]]) -> list[Metric]:
    """``behind``: (view, application) -> notifications to go; ``held_back``: (view, application) failing."""
    held = set(held_back)
    return [gauge("chargeledger_projection_lag", "notifications a view has yet to apply, by view and log",
                  dict(behind), ["view", "application"]),
            gauge("chargeledger_projection_held_back", "1 while a view is held back by an event it fails on",
                  {key: 1.0 if key in held else 0.0 for key in behind}, ["view", "application"])]


# ---- the books (projections/books.py) ---------------------------------------------------------------------
def books(figures: Mapping[tuple[str, str], int]) -> list[Metric]:
    """From :func:`projections.books.figures`."""
    accounts = {(name,): fen for (kind, name), fen in figures.items() if kind == "account"}
    return [
        gauge("chargeledger_wallet_total_fen", "sum of every wallet's postings per account family (debit > 0), fen",
              accounts, ["family"]),
        gauge("chargeledger_trial_balance_fen", "sum over every account family: 0 while the books balance",
              sum(accounts.values())),
        gauge("chargeledger_holds_open", "holds placed and neither captured nor released",
              figures.get(("holds", "open"), 0)),
        gauge("chargeledger_held_fen", "money in open holds, fen", figures.get(("held", "fen"), 0)),
        counter("chargeledger_settlements_total", "sessions closed, by outcome (settled, resettled, failed, "
                "abandoned, roaming_settled), as the books view counted them",
                {(name,): n for (kind, name), n in figures.items() if kind == "closed"}, ["outcome"]),
    ]


# ---- backlogs -----------------------------------------------------------------------------------------------
def outbox(pending: int, due: int, oldest_due_seconds: float) -> list[Metric]:
    """The T/CEC outbox (``tcec_outbox``): rows waiting, those due now, how late the oldest due one is."""
    return [gauge("chargeledger_outbox_pending", "T/CEC pushes waiting to be answered", pending),
            gauge("chargeledger_outbox_due", "T/CEC pushes due now (their next attempt has come)", due),
            gauge("chargeledger_outbox_oldest_due_seconds", "how long the oldest due push has waited",
                  oldest_due_seconds)]


def watchdog(open_sessions: int, followups: int, followups_due: int) -> list[Metric]:
    return [gauge("chargeledger_open_sessions", "sessions open (the watchdog's index)", open_sessions),
            gauge("chargeledger_wallet_followups", "wallet commands a closed session still waits for", followups),
            gauge("chargeledger_wallet_followups_due", "of them, due now (the settling process did not apply "
                  "them within the grace)", followups_due)]
