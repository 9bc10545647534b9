"""Following an Application's notification log with a tracking position kept in Postgres.

A follower reads the log after its position in batches; what it derives from a batch (rows of its
own tables) and the new position commit in one transaction, so after any crash it resumes exactly
where it stopped and handles every notification once. The tracking row is locked for the
transaction (``FOR UPDATE``), so followers of the same log in several processes take turns instead
of deriving the same batch twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from eventsourcing.persistence import Notification
from psycopg.sql import SQL, Identifier

from adapters.postgres import create_tables

Note = Callable[[psycopg.Cursor[Any], Sequence[Notification]], None]


def tracking_ddl(table: str) -> str:
    """The tracking table: one position per application followed."""
    return f"CREATE TABLE IF NOT EXISTS {table} (application text PRIMARY KEY, position bigint NOT NULL);"


def follow(database_url: str, tracking: str, application: Any, note: Note, batch_size: int = 1000) -> int:
    """Hand every notification of ``application``'s log after the position in ``tracking`` to
    ``note`` (with a cursor in the batch's transaction), batch by batch to the end of the log.
    Returns how many notifications were read."""
    name, table = application.name, Identifier(tracking)
    seen = 0
    with psycopg.connect(database_url) as conn:
        while True:
            with conn.transaction(), conn.cursor() as cursor:
                cursor.execute(SQL("INSERT INTO {} VALUES (%s, 0) ON CONFLICT DO NOTHING").format(table), (name,))
                cursor.execute(SQL("SELECT position FROM {} WHERE application = %s FOR UPDATE").format(table), (name,))
                after = cursor.fetchone()[0]  # type: ignore[index]
                batch = application.recorder.select_notifications(after, batch_size, inclusive_of_start=False)
                if not batch:
                    return seen
                note(cursor, batch)
                cursor.execute(SQL("UPDATE {} SET position = %s WHERE application = %s").format(table),
                               (batch[-1].id, name))
                seen += len(batch)


class LogFollower:
    """What a follower role keeps: the ledger it acts on, the database of its own tables (created,
    under the schema lock, when it is made: ``schema``), and its batch size."""

    schema = ""

    def __init__(self, ledger: Any, database_url: str, *, batch_size: int = 1000) -> None:
        self.ledger = ledger
        self.database_url = database_url
        self.batch_size = batch_size
        with psycopg.connect(database_url, autocommit=True) as conn:
            create_tables(conn, self.schema)
