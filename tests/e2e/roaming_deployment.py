"""The deployment of the roaming end-to-end tests (tests/e2e/test_interconnect_roaming.py,
test_interconnect_driver_roaming.py): a platform's API app with the T/CEC door (and, given driver settings,
the driver API with its roaming endpoints) served by uvicorn on a loopback port it can be taken off and put
back on, on its own database (``b_side``); A's outbox as `chargeledger tcec-outbox` in a process of its own,
which a test kills and starts again; any other `chargeledger` command as a subprocess (``cli``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import uvicorn
from fastapi import FastAPI
from psycopg_pool import ConnectionPool

from adapters.api.app import create_app
from adapters.api.auth import AuthSettings
from adapters.api.driver.settings import DriverApiSettings
from adapters.api.guards import ServerSettings, server_config
from adapters.interconnect.door import InterconnectSettings, mount
from adapters.interconnect.tcec.interfaces import Role
from adapters.postgres.env import eventsourcing_env
from adapters.servers.postgres_server import create_database
from domain.ledger import Ledger

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 30.0
A_ID, B_ID = "APLATFORM", "BPLATFORM"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def b_side(servers: tuple[str, str]) -> Iterator[tuple[str, Ledger, ConnectionPool]]:
    """B's database, its ledger, and a pool on it for the test's own reads (A's is the ``database_url`` fixture)."""
    name = f"t_roam_b_{uuid.uuid4().hex[:8]}"
    url = create_database(servers[0], name)
    ledger = Ledger(eventsourcing_env(url))
    with ConnectionPool(url, min_size=1, max_size=2, open=True) as pool:
        yield url, ledger, pool
    ledger.close()
    with psycopg.connect(servers[0], autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Served:
    """An API app with the T/CEC door, served by uvicorn in a thread on ``port``; ``stop`` takes it off
    the port (connections to it are refused), ``start`` serves a fresh app there again. With ``driver``
    it serves drivers too (the driver API and its roaming endpoints); its calls to peers then go out with
    the production HTTP client, to the peer's configured base URL (a real loopback URL in these tests)."""

    def __init__(self, ledger: Ledger, database_url: str, keys: str, port: int, *,
                 driver: DriverApiSettings | None = None) -> None:
        self.ledger, self.database_url, self.keys, self.port = ledger, database_url, keys, port
        self.driver = driver
        self.app: FastAPI | None = None  # the app served now: its state has the driver identity
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        app = self.app = create_app(self.ledger, self.database_url, AuthSettings.generate(), pool_size=2,
                                    driver=self.driver)
        mount(app, InterconnectSettings(self.keys))
        self.server = uvicorn.Server(server_config(app, ServerSettings(), host="127.0.0.1", port=self.port,
                                                   log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn:{self.port}", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + DEADLINE
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(timeout=DEADLINE)
            assert not self.thread.is_alive(), "the server did not stop"
        self.server = self.thread = None


CHARGELEDGER = [sys.executable, "-c", "import sys, app; sys.exit(app.main())"]


def link_a_and_b(a_store: Any, b_store: Any, tenant_id: uuid.UUID, port: int, *, status_interval: int,
                 a_url: str) -> tuple[Any, Any]:
    """A (infrastructure, our operator ``tenant_id``) and B (its customer platform, served on ``port``) linked
    both ways, one credential set per direction: (B's link on A, A's link on B); ``a_url``: where B reaches A."""
    b_on_a = a_store.peers.configure(tenant_id, B_ID, our_operator_id=A_ID, role=Role.CUSTOMER,
                                     base_url=f"http://127.0.0.1:{port}/evcs/v1", status_interval=status_interval)
    a_on_b = b_store.peers.configure(uuid.uuid4(), A_ID, our_operator_id=B_ID, base_url=a_url,
                                     role=Role.INFRASTRUCTURE, outbound=b_on_a.inbound)
    a_store.peers.set_outbound(tenant_id, B_ID, a_on_b.inbound)
    return b_on_a, a_on_b


def environment(database_url: str, nats_url: str, keys: str) -> dict[str, str]:
    """A `chargeledger` process's settings: its platform's database and sealing keys."""
    return {**os.environ, "DATABASE_URL": database_url, "NATS_URL": nats_url,
            "CHARGELEDGER_INTERCONNECT_KEYS": keys, "PYTHONPATH": str(ROOT), "LOG_LEVEL": "INFO"}


def cli(database_url: str, nats_url: str, keys: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`chargeledger ARGS` run to its end on that platform's database."""
    return subprocess.run([*CHARGELEDGER, *args], cwd=ROOT, env=environment(database_url, nats_url, keys),
                          capture_output=True, text=True, timeout=DEADLINE * 2)


class OutboxProcess:
    """`chargeledger tcec-outbox` on A's database, its output in ``log``; it pulls no catalogue (A has no
    infrastructure peer)."""

    def __init__(self, database_url: str, nats_url: str, keys: str, log: Path) -> None:
        self.env = environment(database_url, nats_url, keys)
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [*CHARGELEDGER, "tcec-outbox", "--interval", "0.2", "--retry-first", "2", "--pull-interval", "0"],
                cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        """kill -9: no chance to finish anything."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=DEADLINE)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


def rows(database_url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    import psycopg
    with psycopg.connect(database_url) as conn:
        return conn.execute(sql, params).fetchall()


Predicate = Callable[[], Any]
