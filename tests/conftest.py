"""Real servers for the suite: the project's own Postgres and NATS (or DATABASE_URL / NATS_URL).

They start once per test run under ./var/test; every test that touches the ledger gets a fresh
database of its own, dropped afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from adapters.postgres import eventsourcing_env
from adapters.servers import create_database, resolve_servers
from domain.ledger import Ledger

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def servers() -> Iterator[tuple[str, str]]:
    database_url, nats_url, started = resolve_servers(ROOT / "var" / "test")
    yield database_url, nats_url
    for server in reversed(started):
        server.stop()


@pytest.fixture
def database_url(servers: tuple[str, str]) -> Iterator[str]:
    server_url = servers[0]
    name = f"t_{uuid.uuid4().hex[:12]}"
    url = create_database(server_url, name)
    yield url
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def nats_url(servers: tuple[str, str]) -> str:
    return servers[1]


@pytest.fixture
def ledger(database_url: str) -> Iterator[Ledger]:
    led = Ledger(eventsourcing_env(database_url))
    yield led
    led.close()
