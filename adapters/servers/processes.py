"""What the embedded servers share: the address they listen on, free ports, and which processes are
theirs, and who owns them (the process that stops them).

A server started by one process may be found running by another (``chargeledger servers`` and the
roles, or a run left over from a crash). The one that started it records itself in an owner file
(pid and start time); one that finds it running borrows it while that process lives, and takes it
over (owns it, so someone stops it) when that process is gone.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Self

import psutil

HOST = "127.0.0.1"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


def free_port() -> int:
    """Let the kernel pick a free port; there is a small race until the server binds it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports: every socket is held until all are chosen (one at a time, the kernel
    may hand the same port out twice once the first socket is closed)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def accepts_tcp(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def tail(path: Path, chars: int = 4000) -> str:
    """The end of a server's log, for an error message."""
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"


def live_process(pid: int, name: str) -> psutil.Process | None:
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


def process_serves(pid: int, name: str, path: Path) -> bool:
    """True if `pid` is a live `name` process started for `path` (an argument of its argv)."""
    proc = live_process(pid, name)
    try:
        return proc is not None and str(path) in proc.cmdline()
    except psutil.Error:
        return False


def record_owner(owner_file: Path) -> None:
    """This process started (or took over) the server: it is the one that stops it."""
    me = psutil.Process()
    owner_file.write_text(f"{me.pid} {me.create_time()}\n")


def owner_elsewhere(owner_file: Path) -> bool:
    """True if another live process started the server (recorded by :func:`record_owner`).

    The pid and the process's start time together name it, so a reused pid is not taken for it."""
    try:
        pid, created = owner_file.read_text().split()
        return int(pid) != os.getpid() and psutil.Process(int(pid)).create_time() == float(created)
    except (OSError, ValueError, psutil.Error):
        return False


def adopts(owner_file: Path) -> bool:
    """Whether a process that found a server already running owns it from now on: only if the
    process that started it is gone (an orphan left by a crash), so that someone stops it.
    Otherwise it borrows the server, and leaves it running when it exits (``release``)."""
    if owner_elsewhere(owner_file):
        return False
    record_owner(owner_file)
    return True


class EmbeddedServer:
    """What the embedded servers share: a role releases one it is done with (stopped only if this
    process owns it), and a ``with`` block starts and stops one."""

    owned: bool  # this process started the server (or took over an orphan): release() stops it then only

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def release(self) -> None:
        """A role is done with the server: stop it if this process owns it, else leave it serving."""
        if self.owned:
            self.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
