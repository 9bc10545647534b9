"""Fast reading of the stored events, per Application, in notification order.

The auditor reads the event tables directly, not through the Applications' notification logs:
one server-side cursor per table, binary transfer (the state bytes arrive as they are stored, no
hex decoding), rows fetched in large batches. Each row is the table's own columns,
``(originator_id, originator_version, topic, state, notification_id)``, which is what
:class:`domain.audit.Audit` and the hash chain consume.

An *event table* is any table with those five columns named ``<application>_events``; the
application's name is taken from the Applications we know (``Registry`` ...) or else from the table.
Snapshot tables are derived data and are not read.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql

KNOWN_APPLICATIONS = ("Registry", "Tariffs", "Sessions", "Wallets", "Payments")
EVENT_COLUMNS = ("originator_id", "originator_version", "topic", "state", "notification_id")
BATCH = 20_000


@dataclass(frozen=True)
class EventTable:
    application: str
    table: str


def event_tables(conn: psycopg.Connection[Any]) -> list[EventTable]:
    """Every Application's event table in this database, known Applications first, in a fixed order."""
    rows = conn.execute(
        "SELECT table_name FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND table_name LIKE '%%\\_events' AND column_name = ANY(%s) "
        "GROUP BY table_name HAVING count(*) = %s ORDER BY table_name",
        [list(EVENT_COLUMNS), len(EVENT_COLUMNS)],
    ).fetchall()
    tables = {r[0] for r in rows}
    known = [EventTable(app, f"{app.lower()}_events") for app in KNOWN_APPLICATIONS
             if f"{app.lower()}_events" in tables]
    names = {t.table for t in known}
    others = [EventTable(t[: -len("_events")].capitalize(), t) for t in sorted(tables - names)]
    return known + others


def read_events(conn: psycopg.Connection[Any], table: str, *, after: int = 0, upto: int | None = None,
                tenant: UUID | None = None, batch: int = BATCH) -> Iterator[tuple[Any, ...]]:
    """The rows of one event table in notification order, after ``after`` and up to ``upto``.

    With ``tenant``, only the events of aggregates that belong to it: the tenant itself and every
    aggregate whose first event names it (``tenant_id``), which every aggregate but a tenant does.
    Runs in its own transaction (a server-side cursor needs one) on ``conn``.
    """
    where = [sql.SQL("notification_id > %(after)s")]
    params: dict[str, Any] = {"after": after}
    if upto is not None:
        where.append(sql.SQL("notification_id <= %(upto)s"))
        params["upto"] = upto
    if tenant is not None:
        where.append(sql.SQL(
            "originator_id IN (SELECT originator_id FROM {t} WHERE originator_version = 1 AND "
            "(originator_id::text = %(tenant)s OR "
            "convert_from(state, 'UTF8')::jsonb #>> '{{tenant_id,_data_}}' = %(tenant_hex)s))"
        ).format(t=sql.Identifier(table)))
        params.update(tenant=str(tenant), tenant_hex=tenant.hex)
    query = sql.SQL("SELECT {cols} FROM {t} WHERE {where} ORDER BY notification_id").format(
        cols=sql.SQL(", ").join(map(sql.Identifier, EVENT_COLUMNS)), t=sql.Identifier(table),
        where=sql.SQL(" AND ").join(where))
    with conn.transaction(), conn.cursor(name=f"audit_{table}", binary=True) as cur:
        cur.itersize = batch
        cur.execute(query, params)
        while rows := cur.fetchmany(batch):
            yield from rows


def count_events(conn: psycopg.Connection[Any], tables: list[EventTable]) -> int:
    return sum(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t.table))).fetchone()[0]
               for t in tables)
