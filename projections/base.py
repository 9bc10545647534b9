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

Handlers write through a :class:`StoringCursor`: every value they pass goes through
:func:`storable`, the one rule that makes whatever the ledger holds storable in Postgres (a NUL or
a lone surrogate in a station name must not stop every view of every tenant).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.postgres import PostgresDatastore
from psycopg.sql import SQL, Identifier
from psycopg.types.json import Jsonb

from adapters.postgres.recorder import LockedTrackingRecorder
from projections import health

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
    undecodable: str = ""  # why the stored event could not be decoded (``event`` is then None)


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
        for item in items:
            if item.undecodable:
                raise UndecodableEvent(f"{item.application} #{item.notification_id} {item.name}: {item.undecodable}")
        storing = StoringCursor(cur)
        for item in fold(items, self.coalesce):
            self.handlers[(item.application, item.name)](self, storing, item)


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


class UndecodableEvent(Exception):
    """A stored event this view handles could not be turned back into a domain event."""


class ViewRecorder(LockedTrackingRecorder):
    """eventsourcing's Postgres tracking recorder, extended with a view's tables.

    ``create_table`` creates the tracking table, the view's tables and ``projection_health`` in one
    transaction, under the schema lock; the batch writer below puts the rows and the tracking
    record in one transaction too.
    """

    def __init__(self, datastore: PostgresDatastore, view: View) -> None:
        super().__init__(datastore, tracking_table_name=f"{view.name}_tracking")
        self.view = view
        statements = (*view.ddl, health.DDL)
        self.sql_create_statements.extend(SQL(statement) for statement in statements)  # type: ignore[arg-type]
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
            with cur.connection.pipeline():
                if items:
                    self.view.process(cur, items)
                cur.execute(health.CLEAR, {"view": self.view.name, "application": application,
                                           "position": position})

    def drop(self) -> None:
        """Drop the view's tables and its tracking table (a rebuild then starts from zero)."""
        names = [*self.view.tables, self.tracking_table_name]
        with self.datastore.transaction(commit=True) as cur:
            for name in names:
                cur.execute(SQL("DROP TABLE IF EXISTS {0} CASCADE").format(Identifier(self.datastore.schema, name)))
        self.tracking_table_exists = False
        self.tracking_migration_previous = self.tracking_migration_current = None


# ---- what a view stores --------------------------------------------------------------------------
VIEW_TEXT_LIMIT = 500  # characters; at least every limit of domain.text, and within a btree index row
REPLACEMENT = "\ufffd"  # U+FFFD REPLACEMENT CHARACTER, as a UTF-8 decoder shows what it cannot read
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")  # what Postgres text and jsonb refuse: NUL, surrogates


def storable(value: Any) -> Any:
    """The one rule for every value a view writes: the ledger's value, as Postgres can keep it.

    * a string: NUL and surrogates (which have no UTF-8 form) become U+FFFD; a string longer than
      :data:`VIEW_TEXT_LIMIT` characters keeps its first ``VIEW_TEXT_LIMIT - 1`` and ends with
      "…" (U+2026), so every text column, index key included, fits a btree row (4 bytes a
      character at most: 2,000 bytes of the 2,704 allowed);
    * JSON (``Jsonb``): every string and key as above, and a float JSON cannot write (NaN,
      ±Infinity) as its name (``"nan"``, ``"inf"``, ``"-inf"``);
    * lists and tuples: each element; anything else unchanged.

    The ledger keeps the original; the view shows what it could store.
    """
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, Jsonb):
        return Jsonb(storable_json(jsonable(value.obj)))
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]
    return value


def storable_text(value: str) -> str:
    value = UNSTORABLE.sub(REPLACEMENT, value)
    return value if len(value) <= VIEW_TEXT_LIMIT else value[:VIEW_TEXT_LIMIT - 1] + "\u2026"


def storable_json(value: Any) -> Any:
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return {storable_text(str(k)): storable_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [storable_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class StoringCursor:
    """The cursor a handler writes through: every parameter passes :func:`storable` first."""

    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor

    def execute(self, query: Any, params: Sequence[Any] | dict[str, Any] | None = None) -> Any:
        if isinstance(params, dict):
            params = {k: storable(v) for k, v in params.items()}
        elif params is not None:
            params = [storable(v) for v in params]
        return self.cursor.execute(query, params)


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
