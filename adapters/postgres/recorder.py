"""The Applications' event recorder: eventsourcing's Postgres recorder, one round trip per save.

eventsourcing's ``PostgresApplicationRecorder`` writes a save as ``BEGIN``, ``SET LOCAL
lock_timeout``, ``LOCK TABLE … IN EXCLUSIVE MODE``, ``NOTIFY``, ``INSERT … RETURNING`` (pipelined,
then a sync to surface a conflict), then ``COMMIT`` and a closing sync: three round trips to the
server and a good deal of client-side pipeline bookkeeping for one transaction. This subclass puts
the same statements, on the same tables, in a PL/pgSQL function per events table
(``<table>_save``) and calls it as one prepared statement on an autocommit connection. Postgres
runs that call as one implicit transaction, committed at its end and rolled back entirely if any
statement fails, so the semantics are the library's:

* **commit order = notification order.** The ``EXCLUSIVE`` table lock is taken before the insert
  draws its notification ids and is held until the commit, so no transaction can commit a lower
  notification id after a reader has seen a higher one; a follower of the notification log never
  skips an event (``tests/integration/test_recorder.py``). As with eventsourcing's recorder, a refused insert
  consumes the sequence values it drew, so ids can have gaps that are never filled; they are never
  filled *later*, which is what followers rely on. (eventsourcing's own optional database function,
  ``POSTGRES_ENABLE_DB_FUNCTIONS``, notifies but does not lock the table, so it does not give this.)
* **optimistic concurrency.** The primary key (originator id, version) refuses a stale write with
  ``IntegrityError`` and nothing of the transaction is kept (nor the ``NOTIFY``).
* **same tables, same rows.** Table creation, reads, notification selection and subscriptions are
  the library's own; the relay, snapshots and auditors read the tables unchanged.

Why a function rather than the statements sent as one multi-statement query: the function's call
is a prepared statement with bound parameters and the function's own plans are cached in the
connection, so the server parses and plans nothing per save; a multi-statement query with the
values written in as literals was parsed and planned every time, and cost about a third more per
save (``bench/ledger.py``, docs/performance.md).

It also answers "which of these aggregates changed since the versions I hold?" for a handful of
ids in one query (:meth:`select_events_after`), so a command that reads several cached aggregates
fast-forwards them all in one round trip instead of one each.

And it writes the events of several tables (a start's hold and session), with statements of the
caller's (the driver API's idempotency record), in ONE transaction (:meth:`insert_together`): a
pipeline of ``BEGIN``, those statements, each table's save function in table-name order, and
``COMMIT``, sent in one round trip.

Every recorder the factory below makes (events, snapshots, tracking) creates its tables under the
schema lock (:func:`adapters.postgres.env.schema_lock`), so roles starting together on an empty database
take turns instead of colliding.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, NamedTuple
from uuid import UUID

import psycopg
from eventsourcing.persistence import InterfaceError, OperationalError, ProgrammingError, StoredEvent
from eventsourcing.postgres import (
    PostgresAggregateRecorder,
    PostgresApplicationRecorder,
    PostgresDatastore,
    PostgresTrackingRecorder,
)
from eventsourcing.postgres import PostgresFactory as LibraryFactory
from eventsourcing.utils import retry
from psycopg.sql import SQL, Identifier

from adapters.postgres.env import schema_lock


TOGETHER_ATTEMPTS, TOGETHER_WAIT = 10, 0.2  # as eventsourcing retries a single save


class Statement(NamedTuple):
    """A statement written in the same transaction as events (:meth:`LockedInsertRecorder.insert_together`)."""

    sql: str | bytes
    params: Sequence[Any]


class AlongsideConflict(Exception):
    """A statement written alongside events was refused by a unique key (a row another transaction
    committed first): nothing of the transaction was kept."""


class SchemaLocked:
    """A recorder whose ``create_table`` (the library's) runs under the schema lock."""

    datastore: PostgresDatastore

    def create_table(self) -> None:
        with schema_lock(self.datastore):
            super().create_table()  # type: ignore[misc]


class LockedAggregateRecorder(SchemaLocked, PostgresAggregateRecorder):
    """The snapshot tables' recorder."""


class LockedTrackingRecorder(SchemaLocked, PostgresTrackingRecorder):
    """Tracking tables (the relay's, the views')."""


class LockedInsertRecorder(SchemaLocked, PostgresApplicationRecorder):
    """``PostgresApplicationRecorder`` whose save is one round trip (see the module)."""

    FEW = 8  # up to this many aggregates, select_events_after sends scalar pairs

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events") -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        table = SQL("{0}.{1}").format(Identifier(self.datastore.schema), Identifier(self.events_table_name))
        save = SQL("{0}.{1}").format(Identifier(self.datastore.schema), Identifier(f"{self.events_table_name}_save"))
        id_type = SQL(self.datastore.originator_id_type)
        # Two overloads of one function: a save of one event (scalars, the usual case) and of many
        # (arrays, unnested in order, so the ids returned follow the events given).
        for arguments, rows in (("id {id_type}, version bigint, topic text, state bytea",
                                 "VALUES (id, version, topic, state)"),
                                ("ids {id_type}[], versions bigint[], topics text[], states bytea[]",
                                 "SELECT * FROM unnest(ids, versions, topics, states)")):
            self.sql_create_statements.append(SQL(
                "CREATE OR REPLACE FUNCTION {save}(" + arguments + ") RETURNS SETOF bigint"
                " LANGUAGE plpgsql AS $body$ BEGIN"
                " SET LOCAL lock_timeout = '{lock_timeout}s';"
                " LOCK TABLE {table} IN EXCLUSIVE MODE;"
                " NOTIFY {channel};"
                " RETURN QUERY INSERT INTO {table} (originator_id, originator_version, topic, state) " + rows +
                " RETURNING notification_id;"
                " END $body$"
            ).format(save=save, id_type=id_type, lock_timeout=self.datastore.lock_timeout, table=table,
                     channel=Identifier(self.channel_name)))
        self.save_one_statement = SQL(
            "SELECT * FROM {save}(%s::{id_type}, %s::bigint, %s::text, %s::bytea) AS notification_id"
        ).format(save=save, id_type=id_type).as_bytes(None)
        # the arrays in binary: the text format escapes every element with a regular expression
        self.save_many_statement = SQL(
            "SELECT * FROM {save}(%b::{id_type}[], %b::bigint[], %b::text[], %b::bytea[]) AS notification_id"
        ).format(save=save, id_type=id_type).as_bytes(None)
        self.select_prefix = SQL("SELECT originator_id, originator_version, topic, state FROM {0} WHERE ").format(
            table).as_bytes(None)
        self._select_after: dict[tuple[int, bool], bytes] = {}
        self._select_after_with: dict[tuple[tuple[int, str, int], ...], bytes] = {}
        self.select_ids_statement = SQL(
            "SELECT e.notification_id FROM unnest(%b::{id_type}[], %b::bigint[]) WITH ORDINALITY"
            " AS ours(originator_id, originator_version, n) JOIN {table} AS e ON e.originator_id = ours.originator_id"
            " AND e.originator_version = ours.originator_version ORDER BY ours.n"
        ).format(table=table, id_type=id_type).as_bytes(None)
        self.select_many_after = SQL(
            "SELECT e.originator_id, e.originator_version, e.topic, e.state"
            " FROM unnest(%b::{id_type}[], %b::bigint[]) AS held(originator_id, originator_version)"
            " JOIN {table} AS e ON e.originator_id = held.originator_id"
            " AND e.originator_version > held.originator_version"
        ).format(table=table, id_type=SQL(self.datastore.originator_id_type)).as_bytes(None)

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        if not stored_events:
            return []
        with self.datastore.get_connection() as conn, conn.cursor() as cursor:
            assert conn.autocommit, "the function's call is one implicit transaction only in autocommit"
            cursor.execute(*self.save_call(stored_events), prepare=True)
            return _notification_ids(cursor, stored_events)

    def save_call(self, stored_events: Sequence[StoredEvent]) -> tuple[bytes, tuple[Any, ...]]:
        """The call of this table's save function for ``stored_events`` (one or many): (statement, parameters)."""
        if len(stored_events) == 1:
            e = stored_events[0]
            return self.save_one_statement, (e.originator_id, e.originator_version, e.topic, e.state)
        return self.save_many_statement, (
            [e.originator_id for e in stored_events], [e.originator_version for e in stored_events],
            [e.topic for e in stored_events], [e.state for e in stored_events])

    def insert_together(self, parts: Sequence[tuple[LockedInsertRecorder, Sequence[StoredEvent]]], *,
                        alongside: Sequence[Statement] = ()) -> list[list[int]]:
        """Events of several tables (each part ``(recorder, events)``, this recorder's among them or
        not) and the ``alongside`` statements in ONE transaction; each part's notification ids, in order.

        One round trip: a pipeline of ``BEGIN``, the ``alongside`` statements, each table's save
        function (its ``EXCLUSIVE`` lock, ``NOTIFY`` and insert, as a save of that table alone) in
        table-name order, so two such transactions never wait for each other's tables in opposite
        orders, then ``COMMIT``, and one sync (the pipeline's exit: an explicit sync before it would
        cost a second round trip). A statement that fails skips the rest (``COMMIT``
        included) and the connection rolls back: all or nothing, and a process killed at any point
        leaves nothing (Postgres rolls back a transaction whose connection went). An ``alongside``
        statement refused by a unique key raises :class:`AlongsideConflict`; an event refused by
        its table's key raises ``IntegrityError``, as a single save does.

        A lost connection (or a lock timeout) is retried as the single save is, but first asks
        whether the lost attempt committed after all (its first event is stored with the very same
        state): then its notification ids are the answer and nothing is written twice.
        """
        tables = {recorder.events_table_name for recorder, _ in parts}
        if len(tables) != len(parts) or not all(
                isinstance(recorder, LockedInsertRecorder) and self.shares_database(recorder) for recorder, _ in parts):
            raise ProgrammingError("insert_together needs one part per table, all in this recorder's database")
        order = sorted(range(len(parts)), key=lambda n: parts[n][0].events_table_name)
        written = [(parts[n][0], parts[n][1]) for n in order if parts[n][1]]
        for attempt in range(TOGETHER_ATTEMPTS):
            try:
                stored = self._stored_already(written) if attempt else None
                ids = stored if stored is not None else self._write_together(written, alongside, tables)
                break
            except (InterfaceError, OperationalError):
                if attempt + 1 == TOGETHER_ATTEMPTS:
                    raise
                time.sleep(TOGETHER_WAIT)
        by_table = dict(zip([recorder.events_table_name for recorder, _ in written], ids, strict=True))
        return [by_table.get(recorder.events_table_name, []) for recorder, _ in parts]

    def _write_together(self, written: Sequence[tuple[LockedInsertRecorder, Sequence[StoredEvent]]],
                        alongside: Sequence[Statement], tables: set[str]) -> list[list[int]]:
        with self.datastore.get_connection() as conn:
            assert conn.autocommit, "the transaction is the pipeline's own BEGIN ... COMMIT"
            try:
                with conn.pipeline():  # its exit sends the one sync and reads every answer: one round trip
                    conn.execute(b"BEGIN", prepare=False)
                    for statement in alongside:
                        conn.execute(statement.sql, statement.params)
                    saves = [conn.execute(*recorder.save_call(events), prepare=True) for recorder, events in written]
                    conn.execute(b"COMMIT", prepare=False)
            except psycopg.errors.UniqueViolation as refused:
                if refused.diag.table_name not in tables:
                    raise AlongsideConflict(f"{refused.diag.table_name}: {refused.diag.message_detail}") from None
                raise
            return [_notification_ids(cursor, events) for cursor, (_, events) in zip(saves, written, strict=True)]

    def _stored_already(self, written: Sequence[tuple[LockedInsertRecorder, Sequence[StoredEvent]]]
                        ) -> list[list[int]] | None:
        """The notification ids of ``written`` if an earlier attempt committed them, else None."""
        if not written:
            return None
        first_recorder, first_events = written[0]
        e = first_events[0]
        with self.datastore.get_connection() as conn:
            row = conn.execute(SQL("SELECT state FROM {0}.{1} WHERE originator_id = %s AND originator_version = %s")
                               .format(Identifier(self.datastore.schema), Identifier(first_recorder.events_table_name)),
                               (e.originator_id, e.originator_version)).fetchone()
            if row is None or bytes(row["state"]) != e.state:
                return None
            return [[r["notification_id"] for r in conn.execute(recorder.select_ids_statement, (
                [s.originator_id for s in events], [s.originator_version for s in events])).fetchall()]
                    for recorder, events in written]

    def select_after_query(self, count: int, first_only: bool) -> tuple[bytes, bool]:
        """The query for ``count`` aggregates, and whether it takes two arrays rather than pairs.

        Up to ``FEW`` aggregates: ``(id = a AND version > v) OR …``, each an index range on the
        key, with scalar parameters (cheapest to send). More: the pairs as two arrays joined to the
        table, so the statement stays one prepared statement whatever the count.
        """
        tail = b" LIMIT 1" if first_only else b" ORDER BY originator_id, originator_version"
        if count > self.FEW:
            return self.select_many_after + tail, True
        key = (count, first_only)
        if key not in self._select_after:
            held = b" OR ".join([b"(originator_id = %s AND originator_version > %s)"] * count)
            self._select_after[key] = self.select_prefix + held + tail
        return self._select_after[key], False

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def select_events_after(self, versions: dict[UUID, int], *, first_only: bool = False) -> list[StoredEvent]:
        """Events of the given aggregates after the given versions, in one query, by id then version.

        ``first_only`` stops at one event: enough to tell whether any aggregate moved (or, after
        version 0, exists).
        """
        if not versions:
            return []
        query, as_arrays = self.select_after_query(len(versions), first_only)
        if as_arrays:
            params: list[Any] = [list(versions), list(versions.values())]
        else:
            params = [value for item in versions.items() for value in item]
        with self.datastore.get_connection() as conn, conn.cursor() as cursor:
            cursor.execute(query, params, prepare=True)
            return [_stored_event(row) for row in cursor.fetchall()]

    def shares_database(self, other: LockedInsertRecorder) -> bool:
        """Whether ``other``'s table is in the same database and schema, so one query can read both."""
        keys = ("host", "port", "dbname", "user")
        mine, theirs = self.datastore.pool.kwargs, other.datastore.pool.kwargs
        return (self.datastore.schema == other.datastore.schema
                and all(mine.get(k) == theirs.get(k) for k in keys))  # type: ignore[union-attr]

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def select_events_after_with(
        self, parts: Sequence[tuple[LockedInsertRecorder, dict[UUID, int]]],
    ) -> list[list[StoredEvent]] | None:
        """:meth:`select_events_after` of several tables (this one's and others') in one query.

        Each part is ``(recorder, versions)``; the answer is each part's events, in the same order.
        None (nothing sent) when a table is in another database or a part holds more than ``FEW``
        aggregates: the caller then asks each recorder on its own.
        """
        asked = [(n, recorder, versions) for n, (recorder, versions) in enumerate(parts) if versions]
        if any(len(versions) > self.FEW or not isinstance(recorder, LockedInsertRecorder)
               or not self.shares_database(recorder) for _, recorder, versions in asked):
            return None
        answer: list[list[StoredEvent]] = [[] for _ in parts]
        if not asked:
            return answer
        key = tuple((n, recorder.events_table_name, len(versions)) for n, recorder, versions in asked)
        query = self._select_after_with.get(key)
        if query is None:
            query = self._select_after_with[key] = b" UNION ALL ".join(
                b"(SELECT %d AS part, originator_id, originator_version, topic, state FROM %b WHERE %b)" % (
                    n, SQL("{0}.{1}").format(Identifier(recorder.datastore.schema),
                                             Identifier(recorder.events_table_name)).as_bytes(None),
                    b" OR ".join([b"(originator_id = %s AND originator_version > %s)"] * len(versions)))
                for n, recorder, versions in asked
            ) + b" ORDER BY part, originator_id, originator_version"
        params = [value for _, _, versions in asked for item in versions.items() for value in item]
        with self.datastore.get_connection() as conn, conn.cursor() as cursor:
            cursor.execute(query, params, prepare=True)
            for row in cursor.fetchall():
                answer[row["part"]].append(_stored_event(row))
        return answer


def _notification_ids(cursor: Any, stored_events: Sequence[StoredEvent]) -> list[int]:
    notification_ids = [row["notification_id"] for row in cursor.fetchall()]
    if len(notification_ids) != len(stored_events):  # pragma: no cover - would be a driver bug
        raise OperationalError(f"got {len(notification_ids)} notification ids for {len(stored_events)} events")
    return notification_ids


def _stored_event(row: dict[str, Any]) -> StoredEvent:
    return StoredEvent(originator_id=row["originator_id"], originator_version=row["originator_version"],
                       topic=row["topic"], state=bytes(row["state"]))


class PostgresFactory(LibraryFactory):
    """eventsourcing's Postgres factory, making the recorders above (``PERSISTENCE_MODULE`` names it)."""

    aggregate_recorder_class = LockedAggregateRecorder
    application_recorder_class = LockedInsertRecorder
    tracking_recorder_class = LockedTrackingRecorder
