"""The Applications' event recorder: eventsourcing's Postgres recorder, one round trip per save.

eventsourcing's ``PostgresApplicationRecorder`` writes a save as ``BEGIN``, ``SET LOCAL
lock_timeout``, ``LOCK TABLE … IN EXCLUSIVE MODE``, ``NOTIFY``, ``INSERT … RETURNING`` (pipelined,
then a sync to surface a conflict), then ``COMMIT`` and a closing sync: three round trips to the
server and a good deal of client-side pipeline bookkeeping for one transaction. This subclass sends
the same statements, on the same tables, as one multi-statement query (values rendered as SQL
literals by psycopg's own adapters, with libpq's escaping). Postgres runs a multi-statement query
as one implicit transaction, committed at its end and rolled back entirely if any statement fails,
so the semantics are the library's:

* **commit order = notification order.** The ``EXCLUSIVE`` table lock is taken before the insert
  draws its notification ids and is held until the commit, so no transaction can commit a lower
  notification id after a reader has seen a higher one; a follower of the notification log never
  skips an event (``tests/test_recorder.py``). As with eventsourcing's recorder, a refused insert
  consumes the sequence values it drew, so ids can have gaps that are never filled; they are never
  filled *later*, which is what followers rely on.
* **optimistic concurrency.** The primary key (originator id, version) refuses a stale write with
  ``IntegrityError`` and nothing of the transaction is kept (nor the ``NOTIFY``).
* **same tables, same rows.** Table creation, reads, notification selection and subscriptions are
  the library's own; the relay, snapshots and auditors read the tables unchanged.

It also answers "which of these aggregates changed since the versions I hold?" for a handful of
ids in one query (:meth:`select_events_after`), so a command that reads several cached aggregates
fast-forwards them all in one round trip instead of one each.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.utils import retry
from psycopg.adapt import Transformer
from psycopg.sql import SQL, Identifier


class LockedInsertRecorder(PostgresApplicationRecorder):
    """``PostgresApplicationRecorder`` whose save is one round trip (see the module)."""

    FEW = 8  # up to this many aggregates, select_events_after sends scalar pairs

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events") -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        table = SQL("{0}.{1}").format(Identifier(self.datastore.schema), Identifier(self.events_table_name))
        # Rendered once: SET LOCAL lock_timeout; LOCK TABLE … IN EXCLUSIVE MODE; NOTIFY …; INSERT
        self.save_statements: list[bytes] = [
            *(statement.as_bytes(None) for statement in self.lock_table_statements),  # type: ignore[union-attr]
            SQL("NOTIFY {0}").format(Identifier(self.channel_name)).as_bytes(None),
        ]
        self.insert_prefix = SQL("INSERT INTO {0} (originator_id, originator_version, topic, state) VALUES ").format(
            table).as_bytes(None)
        self.select_prefix = SQL("SELECT originator_id, originator_version, topic, state FROM {0} WHERE ").format(
            table).as_bytes(None)
        self._select_after: dict[tuple[int, bool], bytes] = {}
        self.select_many_after = SQL(
            "SELECT e.originator_id, e.originator_version, e.topic, e.state"
            " FROM unnest(%s::{id_type}[], %s::bigint[]) AS held(originator_id, originator_version)"
            " JOIN {table} AS e ON e.originator_id = held.originator_id"
            " AND e.originator_version > held.originator_version"
        ).format(table=table, id_type=SQL(self.datastore.originator_id_type)).as_bytes(None)

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        if not stored_events:
            return []
        with self.datastore.get_connection() as conn:
            assert conn.autocommit, "a multi-statement query is one implicit transaction only in autocommit"
            # Values rendered as SQL literals by psycopg's adapters (libpq's escaping), so that the
            # save is one simple query with no parameters: Postgres runs it as one implicit
            # transaction, committed at its end and rolled back entirely if any statement fails
            # (a version conflict, a lock timeout). psycopg's own client-side binding would parse
            # the whole query for placeholders on every save.
            literal = Transformer.from_context(conn).as_literal
            values = b", ".join(
                b"(%b, %b, %b, %b)" % (literal(e.originator_id), literal(e.originator_version), literal(e.topic),
                                      literal(e.state))
                for e in stored_events
            )
            insert = self.insert_prefix + values + b" RETURNING notification_id"
            cursor = conn.cursor()
            cursor.execute(b"; ".join([*self.save_statements, insert]))
            for _ in self.save_statements:  # the INSERT's rows are the last result
                cursor.nextset()
            notification_ids = [row["notification_id"] for row in cursor.fetchall()]
        if len(notification_ids) != len(stored_events):  # pragma: no cover - would be a driver bug
            raise OperationalError(f"got {len(notification_ids)} notification ids for {len(stored_events)} events")
        return notification_ids

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
            return [
                StoredEvent(originator_id=row["originator_id"], originator_version=row["originator_version"],
                            topic=row["topic"], state=bytes(row["state"]))
                for row in cursor.fetchall()
            ]
