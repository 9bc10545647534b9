"""What every view is made of: handlers per event, tables, and a tracking recorder that commits both.

A :class:`View` declares its tables (DDL) and registers one handler per event it consumes with
:func:`on` (like ``mobilityhouse/ocpp`` routes a message to its handler): no if/elif chain, and an
event no handler names is never even decoded, so event types added later are ignored until a view
asks for them. Handlers only issue SQL; they never read rows into Python, so a batch runs in
psycopg's pipeline mode (statements go out without waiting for each answer) and catch-up is bound
by Postgres, not by round trips.

Each view has its own tracking table (eventsourcing's ``PostgresTrackingRecorder``, single-row
tracking: one row per followed Application). :meth:`ViewRecorder.record_batch` moves the view's
position with a compare-and-set *first* and then runs the handlers, all in one transaction: a
process killed mid-batch leaves neither rows nor position behind, and two processes racing on one
view cannot both apply the same events (the loser's compare-and-set finds no row and rolls back).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.postgres import PostgresDatastore
from psycopg.sql import SQL, Identifier

from adapters.recorder import LockedTrackingRecorder

Handler = Callable[[Any, Any, "Item"], None]


@dataclass
class Item:
    """One event as a view sees it: where it came from, its name, the decoded event.

    ``group`` holds, for a coalesced event type (see :attr:`View.coalesce`), every event of that
    type from the same aggregate in the batch; ``event`` is then the last of them.
    """

    application: str
    notification_id: int
    name: str  # "<Aggregate>.<Event>", e.g. "ChargingSession.Settled"
    event: Any
    group: list[Any] = field(default_factory=list)


def on(application: str, *names: str) -> Callable[[Handler], Handler]:
    """Register the decorated method as the handler of these events of one Application."""

    def register(handler: Handler) -> Handler:
        handler.__dict__.setdefault("_handles", []).extend((application, n) for n in names)
        return handler

    return register


class View:
    """A read model: tables plus handlers. Subclasses set ``name``, ``tables`` and ``ddl``."""

    name: ClassVar[str]
    tables: ClassVar[tuple[str, ...]]  # the tables a rebuild drops and recreates
    ddl: ClassVar[tuple[str, ...]]
    coalesce: ClassVar[frozenset[str]] = frozenset()  # event names folded per aggregate within a batch
    handlers: ClassVar[dict[tuple[str, str], Handler]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.handlers = {}
        for klass in reversed(cls.__mro__):
            for attr in vars(klass).values():
                for key in getattr(attr, "_handles", ()):
                    cls.handlers[key] = attr

    @classmethod
    def follows(cls) -> dict[str, frozenset[str]]:
        """Application name -> the event names this view handles from it."""
        out: dict[str, set[str]] = {}
        for application, name in cls.handlers:
            out.setdefault(application, set()).add(name)
        return {k: frozenset(v) for k, v in out.items()}

    def process(self, cur: Any, items: Sequence[Item]) -> None:
        for item in fold(items, self.coalesce):
            self.handlers[(item.application, item.name)](self, cur, item)


def fold(items: Sequence[Item], coalesce: frozenset[str]) -> Iterable[Item]:
    """Keep only the last event of each coalesced type per aggregate, carrying the whole group.

    Meter readings are nine in ten events; a view that only needs "the latest reading and how many"
    then writes once per session per batch instead of once per reading.
    """
    if not coalesce:
        return items
    last: dict[tuple[str, Any], int] = {}
    groups: dict[tuple[str, Any], list[Any]] = {}
    for i, item in enumerate(items):
        if item.name in coalesce:
            key = (item.name, item.event.originator_id)
            last[key] = i
            groups.setdefault(key, []).append(item.event)
    keep = set(last.values())
    out = []
    for i, item in enumerate(items):
        if item.name not in coalesce:
            out.append(item)
        elif i in keep:
            key = (item.name, item.event.originator_id)
            out.append(Item(item.application, item.notification_id, item.name, item.event, groups[key]))
    return out


class StaleBatch(Exception):
    """Another process moved this view's position first; the batch was rolled back."""


class ViewRecorder(LockedTrackingRecorder):
    """eventsourcing's Postgres tracking recorder, extended with a view's tables.

    ``create_table`` creates the tracking table and the view's tables in one transaction, under the
    schema lock; the
    batch writer below puts the rows and the tracking record in one transaction too.
    """

    def __init__(self, datastore: PostgresDatastore, view: View) -> None:
        super().__init__(datastore, tracking_table_name=f"{view.name}_tracking")
        self.view = view
        self.sql_create_statements.extend(SQL(statement) for statement in view.ddl)  # type: ignore[arg-type]
        table = Identifier(self.datastore.schema, self.tracking_table_name)
        self._insert_first = SQL("INSERT INTO {0} VALUES (%s, %s) ON CONFLICT DO NOTHING "
                                 "RETURNING notification_id").format(table)
        self._advance = SQL("UPDATE {0} SET notification_id = %s WHERE application_name = %s "
                            "AND notification_id = %s RETURNING notification_id").format(table)

    def record_batch(self, application: str, expected: int | None, position: int, items: Sequence[Item]) -> None:
        """Apply ``items`` and move the position from ``expected`` to ``position``, atomically."""
        with self.datastore.transaction(commit=True) as cur:
            if expected is None:
                cur.execute(self._insert_first, (application, position))
            else:
                cur.execute(self._advance, (position, application, expected))
            if cur.fetchone() is None:
                raise StaleBatch(f"{self.view.name}: {application} is no longer at {expected}")
            if items:
                with cur.connection.pipeline():
                    self.view.process(cur, items)

    def drop(self) -> None:
        """Drop the view's tables and its tracking table (a rebuild then starts from zero)."""
        names = [*self.view.tables, self.tracking_table_name]
        with self.datastore.transaction(commit=True) as cur:
            for name in names:
                cur.execute(SQL("DROP TABLE IF EXISTS {0} CASCADE").format(Identifier(self.datastore.schema, name)))
        self.tracking_table_exists = False
        self.tracking_migration_previous = self.tracking_migration_current = None


# ---- helpers the views share ----------------------------------------------------------------
def jsonable(value: Any) -> Any:
    """Event attributes as JSON: ids and instants as strings, containers recursively."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def dumps(value: Any) -> str:
    return json.dumps(jsonable(value), separators=(",", ":"), sort_keys=True)


def instant(value: Any) -> datetime | None:
    """A datetime from an event attribute that may hold an ISO string (records kept as dicts)."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)
