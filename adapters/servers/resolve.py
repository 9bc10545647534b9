"""Which servers a role uses: ``DATABASE_URL`` / ``NATS_URL`` when the environment gives them, else
the embedded ones under ``./var/`` (started here, or adopted); their URLs, and what to log of them."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from adapters.servers import nats_users
from adapters.servers.nats_server import EmbeddedNats
from adapters.servers.postgres_server import EmbeddedPostgres


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
    """A server URL fit for a log line: its password replaced by ``***`` (in each of a cluster's URLs)."""
    if "," in url:
        return ",".join(redacted(part) for part in url.split(","))
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
