"""What the relay retries: a database or NATS failure of any length (and ``Stopped``, which ends a wait)."""

from __future__ import annotations

import asyncio

import nats.errors
import psycopg
from eventsourcing.persistence import PersistenceError

NATS_ERRORS = (nats.errors.Error, asyncio.TimeoutError, OSError)
DATABASE_ERRORS = (psycopg.Error, PersistenceError)


class Stopped(Exception):
    """The relay was stopped while it waited for NATS."""
