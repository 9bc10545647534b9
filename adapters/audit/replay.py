"""``audit replay`` on a database: stored events -> :class:`domain.audit.Audit` -> report.

Wires the pure replay to Postgres: the event tables read by :mod:`adapters.audit.store`, the live
wallets loaded by the Wallets Application at the version replayed (from its snapshot and events:
a second, independent way to the same balance), and the order view's rows when the orders
projection exists.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import StoredEvent

from adapters.audit.store import event_tables, read_events
from adapters.postgres.env import eventsourcing_env
from domain.applications import APPLICATIONS, Wallets
from domain.audit import Audit, AuditReport, reference_mappers

ORDERS_TABLE = "orders"  # the orders projection's table (projections/), when it exists


def order_rows(conn: psycopg.Connection[Any], tenant: UUID | None = None) -> dict[str, dict[str, Any]] | None:
    """The order view as {trade serial: row}, or None when there is no orders projection yet.

    Only the columns the audit compares are read; a column the view lacks is not compared.
    """
    columns = {r[0] for r in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND table_name = %s", [ORDERS_TABLE])}
    if "trade_no" not in columns:
        return None
    wanted = [c for c in ("trade_no", "tenant_id", "state", "electricity_fen", "service_fen", "total_fen", "energy")
              if c in columns]
    rows = conn.execute(f"SELECT {', '.join(wanted)} FROM {ORDERS_TABLE}").fetchall()  # noqa: S608 - fixed names
    out = {}
    for row in rows:
        record = dict(zip(wanted, row, strict=True))
        if tenant is not None and "tenant_id" in record and str(record["tenant_id"]) != str(tenant):
            continue
        record.pop("tenant_id", None)
        out[record.pop("trade_no")] = record
    return out


def revenue_sums(conn: psycopg.Connection[Any], tenant: UUID | None = None) -> dict[str, int] | None:
    """The revenue view's totals over all days and stations, or None when there is no revenue view."""
    exists = conn.execute("SELECT to_regclass('revenue_daily') IS NOT NULL").fetchone()[0]
    if not exists:
        return None
    row = conn.execute("SELECT coalesce(sum(electricity_fen), 0), coalesce(sum(service_fen), 0), "
                       "coalesce(sum(energy), 0) FROM revenue_daily WHERE %(t)s::uuid IS NULL OR tenant_id = %(t)s",
                       {"t": tenant}).fetchone()
    return {"electricity_fen": int(row[0]), "service_fen": int(row[1]), "energy": int(row[2])}


def wallet_snapshots(conn: psycopg.Connection[Any], mapper: Any,
                     tenant: UUID | None = None) -> dict[tuple[Any, int], Any]:
    """Every stored wallet snapshot, decoded by the Wallets mapper: {(wallet id, version): Wallet}."""
    if not conn.execute("SELECT to_regclass('wallets_snapshots') IS NOT NULL").fetchone()[0]:
        return {}
    out = {}
    for oid, version, topic, state in conn.execute(
            "SELECT originator_id, originator_version, topic, state FROM wallets_snapshots"):
        snapshot = mapper.to_domain_event(StoredEvent(originator_id=oid, originator_version=version, topic=topic,
                                                      state=bytes(state)))
        wallet = snapshot.mutate(None)
        if tenant is None or wallet.tenant_id == tenant:
            out[(oid, version)] = wallet
    return out


def replay(database_url: str, *, tenant: UUID | None = None, period_from: datetime | None = None,
           period_to: datetime | None = None, fast: bool = True, live: str | None = "snapshots",
           orders: Mapping[str, Mapping[str, Any]] | None | bool = True,
           progress: Callable[[int], None] | None = None) -> AuditReport:
    """Replay every stored event of every Application and return the audit report.

    ``live="snapshots"`` compares each stored wallet snapshot with the wallet replayed to its
    version (a live load is that snapshot plus the same events after it, applied by the same code
    the reference path runs); ``live="load"`` loads every wallet through the Wallets Application at
    the version replayed (slower); None skips it. ``orders=True`` reads the order and revenue views
    if they exist; a mapping is used as the order view; None skips them.
    """
    mappers = reference_mappers(_application_classes())
    with psycopg.connect(database_url) as conn:
        snapshots = wallet_snapshots(conn, mappers["Wallets"], tenant) if live == "snapshots" else None
        versions: dict[Any, set[int]] = {}
        for oid, version in snapshots or {}:
            versions.setdefault(oid, set()).add(version)
        audit = Audit(fast=fast, tenant=tenant, period_from=period_from, period_to=period_to,
                      mappers=None if fast else mappers, progress=progress, snapshot_versions=versions)
        for table in event_tables(conn):
            audit.replay(table.application, read_events(conn, table.table, tenant=tenant))
        order_view = order_rows(conn, tenant) if orders is True else (orders or None)
        # the revenue view counts sessions by day: only a replay of everything can match its sums
        revenue = revenue_sums(conn, tenant) if orders is True and period_to is None else None
    if live != "load":
        return audit.report(snapshots=snapshots, orders=order_view, revenue=revenue)
    env = {**eventsourcing_env(database_url, pool_size=1, max_overflow=1), "CREATE_TABLE": "n"}  # read only
    wallets = Wallets(env)
    try:
        def live_wallet(wallet_id: UUID, version: int) -> Any:
            try:
                return wallets.repository.get(wallet_id, version=version)
            except AggregateNotFoundError:
                return None

        return audit.report(live_wallet=live_wallet, orders=order_view, revenue=revenue)
    finally:
        wallets.close()


def _application_classes() -> list[type]:
    classes: list[type] = list(APPLICATIONS)
    try:  # the Payments Application, once domain/payment.py exists
        from domain.payment import Payments  # type: ignore[import-not-found]

        classes.append(Payments)
    except ImportError:
        pass
    return classes
