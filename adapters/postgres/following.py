"""Following an Application's notification log with a tracking position kept in Postgres.

A follower reads the log after its position in batches; what it derives from a batch (rows of its
own tables) and the new position commit in one transaction, so after any crash it resumes exactly
where it stopped and handles every notification once. The tracking row is locked for the
transaction (``FOR UPDATE``), so followers of the same log in several processes take turns instead
of deriving the same batch twice. Used by the followers (``adapters/followers/``) and by the T/CEC
outbox (``adapters/interconnect/outbox/``), which may not import each other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg.sql import SQL, Identifier

Apply = Callable[[psycopg.Cursor[Any], list[Any]], None]


def tracking_ddl(table: str) -> str:
    """The tracking table: one position per follower (the application followed, or a follower's name)."""
    return f"CREATE TABLE IF NOT EXISTS {table} (application text PRIMARY KEY, position bigint NOT NULL);"


def follow(conn: psycopg.Connection[Any], application: Any, tracking: str, follower: str, apply: Apply, *,
           topics: Sequence[str] | None = None, batch_size: int = 1000) -> int:
    """Bring one tracked follower of ``application``'s notification log up to the end of the log.

    Each batch: lock the follower's row in the ``tracking`` table, read the events after its position
    (only those of ``topics`` when given, filtered in Postgres; up to the log's end as it was when
    the batch began), ``apply`` them, decoded, with a cursor of the batch's transaction, move the
    position, commit. Returns the events applied."""
    table = Identifier(tracking)
    total = 0
    while True:
        with conn.transaction(), conn.cursor() as cursor:
            cursor.execute(SQL("INSERT INTO {} VALUES (%s, 0) ON CONFLICT DO NOTHING").format(table), (follower,))
            cursor.execute(SQL("SELECT position FROM {} WHERE application = %s FOR UPDATE").format(table), (follower,))
            start = cursor.fetchone()[0]  # type: ignore[index]
            end = application.recorder.max_notification_id() or 0  # ids are issued in commit order
            if end <= start:
                return total
            notifications = application.recorder.select_notifications(
                start, batch_size, stop=end, topics=list(topics or ()), inclusive_of_start=False)
            apply(cursor, [application.mapper.to_domain_event(n) for n in notifications])
            position = notifications[-1].id if len(notifications) == batch_size else end
            cursor.execute(SQL("UPDATE {} SET position = %s WHERE application = %s").format(table),
                           (position, follower))
            total += len(notifications)
