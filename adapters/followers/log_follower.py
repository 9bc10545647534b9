"""Following an Application's notification log with a tracking position kept in Postgres.

A follower reads the log after its position in batches; what it derives from a batch (rows of its
own tables) and the new position commit in one transaction, so after any crash it resumes exactly
where it stopped and handles every notification once. The tracking row is locked for the
transaction (``FOR UPDATE``), so followers of the same log in several processes take turns instead
of deriving the same batch twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.sql import SQL, Identifier

from adapters.postgres.env import create_tables
from adapters.postgres.following import Apply, follow, tracking_ddl

__all__ = ["Apply", "DueWork", "LogFollower", "follow", "iter_events", "tracking_ddl"]


@dataclass(frozen=True)
class DueWork:
    """Rows of a follower's work table to act on once due: leased, acted on, deleted or put back.

    A sweep takes the due rows (their ``due`` moved ``lease`` ahead, skipping rows another sweep
    holds: ``FOR UPDATE SKIP LOCKED``), so concurrent sweeps share the work and one killed mid-way
    leaves its rows to be taken again after the lease. A row whose action fails, for whatever reason,
    is put back with its error and a pause of ``retry`` doubled per attempt (at most 2^10 times): it
    never blocks the rows behind it. The table has the columns ``due``, ``attempts``, ``last_error``.
    """

    table: str
    key: str  # the primary-key column
    columns: tuple[str, ...]  # what the action is given, after the key
    lease: timedelta
    retry: timedelta
    log: logging.Logger

    def sweep(self, database_url: str, now: datetime, limit: int, act: Callable[..., Any]) -> list[Any]:
        """``act(key, *columns)`` for every due row; returns the keys whose action returned true."""
        table, key = Identifier(self.table), Identifier(self.key)
        done = []
        with psycopg.connect(database_url, autocommit=True, connect_timeout=10) as conn:
            rows = conn.execute(SQL(
                "UPDATE {table} SET due = %s WHERE {key} IN (SELECT {key} FROM {table} WHERE due <= %s "
                "ORDER BY due LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING {key}, attempts, {columns}").format(
                table=table, key=key, columns=SQL(", ").join(map(Identifier, self.columns))),
                (now + self.lease, now, limit)).fetchall()
            for row_key, attempts, *columns in rows:
                try:
                    if act(row_key, *columns):
                        done.append(row_key)
                except Exception as error:  # noqa: BLE001 - one row's failure must not hold back the others
                    pause = self.retry * 2 ** min(attempts, 10)
                    conn.execute(SQL("UPDATE {} SET attempts = attempts + 1, last_error = %s, due = %s "
                                     "WHERE {} = %s").format(table, key),
                                 (f"{type(error).__name__}: {error}", now + pause, row_key))
                    self.log.error("%s %s refused: %s; trying again in %s", self.table, row_key, error, pause)
                    continue
                conn.execute(SQL("DELETE FROM {} WHERE {} = %s").format(table, key), (row_key,))
        return done


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


def iter_events(application: Any, batch: int = 1000) -> Iterator[Any]:
    """Every domain event of an Application, in notification order (no tracking: a full read)."""
    start = None
    while True:
        notifications = application.recorder.select_notifications(start, batch, inclusive_of_start=False)
        if not notifications:
            return
        for n in notifications:
            yield application.mapper.to_domain_event(n)
        start = notifications[-1].id
