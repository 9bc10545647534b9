"""Real servers for the suite: the project's own Postgres and NATS (or DATABASE_URL / NATS_URL).

They start once per test run in a directory of their own under ./var/test (so several runs can share
a machine), removed afterwards; every test that touches the ledger gets a fresh database of its own,
dropped afterwards.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import nats
import nats.js.errors
import psycopg
import pytest
from hypothesis import settings

from adapters.postgres.env import eventsourcing_env
from adapters.followers.relay import STREAM
from adapters.servers import nats_users
from adapters.servers.embedded import create_database, nats_url_for, resolve_servers
from domain.ledger import Ledger
from tests.payment_fakes import PayWorld, build_pay_world

# No per-example deadline: on a shared 2-core machine a scheduling stall is not a slow example, and
# hypothesis would report it as DeadlineExceeded (or Flaky on replay). pytest-timeout still bounds a run.
settings.register_profile("shared-machine", deadline=None)
settings.load_profile("shared-machine")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def started_servers() -> Iterator[tuple[str, str, list]]:
    base = ROOT / "var" / "test"
    base.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=base))
    run_dir.chmod(0o755)  # the embedded Postgres may run as its own system user
    database_url, nats_url, started = resolve_servers(run_dir)
    yield database_url, nats_url, started
    for server in reversed(started):
        server.release()
    shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def servers(started_servers: tuple[str, str, list]) -> tuple[str, str]:
    """(Postgres server URL, NATS URL of the admin user: the suite's fixtures may do anything)."""
    return started_servers[0], started_servers[1]


@pytest.fixture(scope="session")
def nats_role_urls(started_servers: tuple[str, str, list]) -> dict[str, str]:
    """Each role's own NATS URL (its user's credentials), as `chargeledger <role>` would connect."""
    _, nats_url, started = started_servers
    return {role: nats_url_for(role, nats_url, started) for role in nats_users.ROLES}


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
    """NATS with the ledger's stream removed, so a test's subscribers see only its own events."""
    asyncio.run(_delete_stream(servers[1]))
    return servers[1]


async def _delete_stream(url: str) -> None:
    nc = await nats.connect(url)
    try:
        await nc.jetstream().delete_stream(STREAM)
    except nats.js.errors.NotFoundError:
        pass
    finally:
        await nc.close()


@pytest.fixture
def ledger(database_url: str) -> Iterator[Ledger]:
    led = Ledger(eventsourcing_env(database_url))
    yield led
    led.close()


@pytest.fixture
def payment_keys() -> str | None:
    """The sealing keys (``CHARGELEDGER_PAYMENT_KEYS``) of ``world``'s payment channels; None: fresh ones.
    A module whose API must open the same channels overrides this with its own keys."""
    return None


@pytest.fixture
def world(ledger: Ledger, database_url: str, payment_keys: str | None) -> Iterator[PayWorld]:
    """A tenant with a WeChat Pay and an Alipay channel, both played on loopback (tests/payment_fakes.py)."""
    from adapters.payments.config import SecretBox

    w = build_pay_world(ledger, eventsourcing_env(database_url),
                        box=SecretBox.from_setting(payment_keys) if payment_keys else None)
    yield w
    w.close()
