"""Postgres for every role: the eventsourcing environment from one DATABASE_URL, and the schema lock.

**Schema lock.** Every role creates the tables it needs when it starts (``CREATE TABLE / INDEX IF
NOT EXISTS``, ``CREATE TYPE``, ``CREATE OR REPLACE FUNCTION``), and the roles may start at the same
instant on an empty database (docs/operations.md). ``IF NOT EXISTS`` does not make that safe: two
transactions creating the same table both pass the check and one fails on the catalogue's unique
index (``Key (typname, typnamespace)=(wallets_snapshots, 2200) already exists``). So every piece of
start-up DDL, in every role, runs while its transaction holds one advisory lock, :data:`SCHEMA_LOCK`:
:func:`create_tables` (or :func:`lock_schema` as the first statement of a transaction that creates
tables), or :func:`schema_lock` around eventsourcing's ``create_table`` (which spreads creation
over several transactions on pooled connections). The lock is transaction-scoped, so it is let go
at commit or rollback, and by Postgres if the process dies.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

SCHEMA_LOCK = 7_402_001  # the one advisory lock key under which every role creates its tables


def lock_schema(cursor: Any) -> None:
    """Take the schema lock for the rest of the current transaction (a cursor or a connection not in
    autocommit; waits while another process creates tables)."""
    cursor.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))


def create_tables(conn: Any, *statements: str) -> None:
    """Run start-up DDL in one transaction that holds the schema lock (on any psycopg connection)."""
    with conn.transaction():
        lock_schema(conn)
        for statement in statements:
            conn.execute(statement)


@contextmanager
def schema_lock(datastore: Any) -> Iterator[None]:
    """Hold the schema lock while the body runs, in a transaction on a connection of its own (so a
    body that takes pooled connections, like eventsourcing's ``create_table``, cannot starve it)."""
    with psycopg.connect(**datastore.pool.kwargs, connect_timeout=10) as conn:
        lock_schema(conn)
        yield


def eventsourcing_env(database_url: str, *, pool_size: int = 4, max_overflow: int = 8) -> dict[str, str]:
    """The environment eventsourcing's PostgresFactory reads, for every Application alike.

    Each Application keeps its own table (``registry_events``, ``sessions_events``, ...) and its own
    small pool. Snapshots go to ``<name>_snapshots``. Events are written by
    :class:`adapters.postgres.recorder.LockedInsertRecorder` (one round trip per save, same tables); every
    recorder creates its tables under the schema lock (:class:`adapters.postgres.recorder.PostgresFactory`).
    """
    info = conninfo_to_dict(database_url)
    return {
        # eventsourcing's Postgres factory, whose recorders create their tables under the schema lock.
        "PERSISTENCE_MODULE": "adapters.postgres.recorder:PostgresFactory",
        "POSTGRES_DBNAME": str(info.get("dbname", "postgres")),
        "POSTGRES_HOST": str(info.get("host", "127.0.0.1")),
        "POSTGRES_PORT": str(info.get("port", "5432")),
        "POSTGRES_USER": str(info.get("user", "postgres")),
        "POSTGRES_PASSWORD": str(info.get("password", "")),
        "POSTGRES_POOL_SIZE": str(pool_size),
        "POSTGRES_MAX_OVERFLOW": str(max_overflow),
        "POSTGRES_CONNECT_TIMEOUT": "10",
        # A reader sees events only once their transaction committed; the recorder's table lock
        # keeps notification ids in commit order (see docs/architecture.md).
        "POSTGRES_LOCK_TIMEOUT": "5",
        # eventsourcing's recorder with each save one call of a database function (one round trip).
        "APPLICATION_RECORDER_TOPIC": "adapters.postgres.recorder:LockedInsertRecorder",
    }
