"""The deployment of the roaming end-to-end test (tests/e2e/test_interconnect_roaming.py): B, the customer
platform, served by uvicorn on a loopback port it can be taken off and put back on; A's outbox as
`chargeledger tcec-outbox` in a process of its own, which the test kills and starts again.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn

from adapters.api.app import create_app
from adapters.api.auth import AuthSettings
from adapters.api.guards import ServerSettings, server_config
from adapters.interconnect.door import InterconnectSettings, mount
from domain.ledger import Ledger

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    """An API app with the T/CEC door, served by uvicorn in a thread on ``port``; ``stop`` takes it off
    the port (connections to it are refused), ``start`` serves a fresh app there again."""

    def __init__(self, ledger: Ledger, database_url: str, keys: str, port: int) -> None:
        self.ledger, self.database_url, self.keys, self.port = ledger, database_url, keys, port
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        app = create_app(self.ledger, self.database_url, AuthSettings.generate(), pool_size=2)
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


class OutboxProcess:
    """`chargeledger tcec-outbox` on A's database, its output in ``log``."""

    def __init__(self, database_url: str, nats_url: str, keys: str, log: Path) -> None:
        self.env = {**os.environ, "DATABASE_URL": database_url, "NATS_URL": nats_url,
                    "CHARGELEDGER_INTERCONNECT_KEYS": keys, "PYTHONPATH": str(ROOT), "LOG_LEVEL": "INFO"}
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-c", "import sys, app; sys.exit(app.main())", "tcec-outbox", "--interval", "0.2",
                 "--retry-first", "2"], cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT)

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
