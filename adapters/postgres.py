"""Postgres for the eventsourcing Applications: from one DATABASE_URL to their environment."""

from __future__ import annotations

from psycopg.conninfo import conninfo_to_dict


def eventsourcing_env(database_url: str, *, pool_size: int = 4, max_overflow: int = 8) -> dict[str, str]:
    """The environment eventsourcing's PostgresFactory reads, for every Application alike.

    Each Application keeps its own table (``registry_events``, ``sessions_events``, ...) and its own
    small pool. Snapshots go to ``<name>_snapshots``. Events are written by
    :class:`adapters.recorder.LockedInsertRecorder` (one round trip per save, same tables).
    """
    info = conninfo_to_dict(database_url)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
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
        # eventsourcing's recorder with each save sent as one multi-statement query (one round trip).
        "APPLICATION_RECORDER_TOPIC": "adapters.recorder:LockedInsertRecorder",
    }
