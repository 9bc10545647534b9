"""A deployment for the fault suite: the embedded Postgres and NATS, and every role its own OS process
started from the CLI, as docs/operations.md describes it (``chargeledger relay`` twice, ``gateway
--no-relay --no-watchdog``, ``watchdog``, ``projections run``, ``api`` and ``simulate`` piles).

Each process runs in a process group of its own (``start_new_session``), so :meth:`Cluster.kill` is a
kill -9 of the role with whatever it started, and :meth:`Cluster.close` (a fixture finalizer, and an
``atexit`` hook should the interpreter end first) kills every group still alive and stops the servers.
The servers keep their port and data across a stop and a start (an outage, not a new deployment).
"""

from __future__ import annotations

import atexit
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from adapters.servers.nats_users import ADMIN, GATEWAY, READER, RELAY
from adapters.payments.config import SecretBox
from adapters.servers.embedded import EmbeddedNats, EmbeddedPostgres, create_database, free_port

ROOT = Path(__file__).resolve().parent.parent
CLI = "import sys, app; sys.exit(app.main(sys.argv[1:]))"


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, poll: float = 0.1) -> float:
    """Wait until ``predicate()`` is true; returns the seconds it took. Fails after ``timeout``."""
    started = time.monotonic()
    while True:
        try:
            if predicate():
                return time.monotonic() - started
        except (psycopg.OperationalError, psycopg.errors.UndefinedTable, OSError):
            pass  # a server on its way back
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not reached within {timeout:g} s: {what}")
        time.sleep(poll)


class Cluster:
    """Servers under ``directory``; roles started, killed and restarted by name."""

    def __init__(self, directory: Path, *, piles: int, guns: int, first_pile: str, speed: float) -> None:
        self.directory = directory
        self.postgres = EmbeddedPostgres(directory / "postgres")
        self.nats = EmbeddedNats(directory / "nats")
        self.processes: dict[str, subprocess.Popen] = {}
        self.piles, self.guns, self.first_pile, self.speed = piles, guns, first_pile, speed
        self.gateway_port = free_port()
        self.api_port = free_port()
        self.token_key = secrets.token_urlsafe(48)
        self.database_url = ""
        self._closed = False
        atexit.register(self.close)

    # ---- servers -------------------------------------------------------------------------------
    def start_servers(self) -> None:
        self.postgres.start()
        self.nats.start()
        self.database_url = create_database(self.postgres.url, "faults")

    def nats_url(self, role: str = ADMIN) -> str:
        return self.nats.url_for(role)

    # ---- roles ---------------------------------------------------------------------------------
    def command(self, name: str) -> tuple[str | None, list[str]]:
        """(NATS role, CLI arguments) of a process; ``relay-b`` is a second relay, ``simulate`` the piles."""
        if name.startswith("relay"):
            return RELAY, ["relay"]
        if name == "gateway":
            return GATEWAY, ["gateway", "--host", "127.0.0.1", "--port", str(self.gateway_port), "--no-relay",
                             "--no-watchdog"]
        if name == "watchdog":
            return READER, ["watchdog", "--interval", "1"]
        if name == "projections":
            return READER, ["projections", "run"]
        if name == "api":
            return READER, ["api", "--host", "127.0.0.1", "--port", str(self.api_port)]
        if name == "simulate":
            return None, ["simulate", "--port", str(self.gateway_port), "--piles", str(self.piles), "--guns",
                          str(self.guns), "--first-pile", self.first_pile, "--plugged", "--speed", f"{self.speed:g}",
                          "--heartbeat", "2", "--record-retry", "1", "--drain", "--drain-timeout", "120",
                          "--progress", "1000"]
        raise ValueError(f"no role {name!r}")

    def env(self, nats_role: str | None) -> dict[str, str]:
        env = {**os.environ, "LOG_LEVEL": "WARNING", "CHARGELEDGER_VAR": str(self.directory / "var"),
               "DATABASE_URL": self.database_url, "CHARGELEDGER_TOKEN_KEY": self.token_key,
               "CHARGELEDGER_PAYMENT_KEYS": SecretBox.generate_setting("k1"),
               "CHARGELEDGER_PUBLIC_URL": f"http://127.0.0.1:{self.api_port}"}
        env.pop("NATS_URL", None)
        if nats_role is not None:
            env["NATS_URL"] = self.nats.url_for(nats_role)
        return env

    def start(self, name: str) -> subprocess.Popen:
        old = self.processes.get(name)
        assert old is None or old.poll() is not None, f"{name} is already running"
        nats_role, argv = self.command(name)
        with open(self.log_path(name), "ab") as log:
            log.write(f"\n==== {time.strftime('%H:%M:%S')} start {name}\n".encode())
            log.flush()
            proc = subprocess.Popen([sys.executable, "-c", CLI, *argv], cwd=ROOT, env=self.env(nats_role),
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.processes[name] = proc
        return proc

    def kill(self, name: str) -> None:
        """kill -9 of the role's process group."""
        proc = self.processes[name]
        assert proc.poll() is None, f"{name} had already ended:\n{self.log(name)}"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)

    def terminate(self, name: str, timeout: float) -> int:
        """SIGTERM, then the exit status (killed after ``timeout``: the status says so)."""
        proc = self.processes[name]
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
            raise AssertionError(f"{name} did not end within {timeout:g} s of SIGTERM:\n{self.log(name)}") from None

    def pid(self, name: str) -> int:
        return self.processes[name].pid

    def alive(self, *names: str) -> None:
        for name in names or tuple(self.processes):
            proc = self.processes[name]
            assert proc.poll() is None, f"{name} died (exit {proc.returncode}):\n{self.log(name)}"

    def log_path(self, name: str) -> Path:
        return self.directory / f"{name}.log"

    def log(self, name: str, chars: int = 4000) -> str:
        try:
            return self.log_path(name).read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def close(self) -> None:
        """Kill every process group still alive, then stop the servers. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        for proc in self.processes.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(30)
        for server in (self.nats, self.postgres):
            try:
                server.stop()
            except Exception:  # noqa: BLE001 - stop the other one regardless
                pass
        atexit.unregister(self.close)
