"""Readiness checks: is a dependency of this role reachable now?

Each check is a callable returning ``(ok, detail)``; it opens its own short-lived connection with a
short timeout, so a hung dependency makes ``/readyz`` answer "not ready" within seconds rather than
hang, and a check never borrows (or waits for) a connection the role's own work needs.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from urllib.parse import urlsplit

import psycopg

Check = Callable[[], tuple[bool, str]]
TIMEOUT = 2.0  # seconds a check waits for its dependency


def database(url: str, timeout: float = TIMEOUT) -> Check:
    """Postgres answers ``SELECT 1`` on a new connection."""
    def check() -> tuple[bool, str]:
        try:
            with psycopg.connect(url, connect_timeout=max(1, int(timeout))) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as error:
            return False, f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error) else ''}"
        return True, "ok"
    return check


def nats(url: str, timeout: float = TIMEOUT) -> Check:
    """A NATS server greets a TCP connection with its INFO line (each URL of a cluster list tried in turn)."""
    def check() -> tuple[bool, str]:
        errors = []
        for one in url.split(","):
            parts = urlsplit(one.strip() if "://" in one else f"nats://{one.strip()}")
            try:
                with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 4222), timeout) as sock:
                    sock.settimeout(timeout)
                    if sock.recv(5) == b"INFO ":
                        return True, "ok"
                    errors.append(f"{parts.hostname}:{parts.port}: no INFO greeting")
            except OSError as error:
                errors.append(f"{parts.hostname}:{parts.port}: {type(error).__name__}: {error}")
        return False, "; ".join(errors)
    return check
