"""Who may say what on NATS: one user per role, each allowed only the subjects its work needs.

The ledger's events reach NATS through one door, the relay, which publishes what Postgres committed.
Every other role only follows the stream, so a leaked gateway, reader or auditor credential cannot put
a command on the stream (a forged ``ChargingSession.Opened`` to start a pile for free): the server
refuses the publish. The gateway still re-checks every command against the ledger before it sends a
frame (``pile_link``), so even a message that did get onto the stream starts nothing by itself.

Roles:

* ``relay``: publishes ``chargeledger.>`` and manages the ``CHARGELEDGER`` stream (create, update, info,
  read its last message).
* ``gateway`` and ``reader`` (projections or anyone downstream): follow the stream through consumers of
  their own; publish nothing on ``chargeledger.>``.
* ``auditor``: publishes seals to ``chargeledger_seals.>`` and manages that stream; follows the ledger's.
* ``admin``: everything (the operator's own tools and the test suite's fixtures).

Each role's replies come back on an inbox prefix of its own (``_INBOX_<role>.``), and it may subscribe
only there, so one role cannot read another's request replies either.

The embedded server (``adapters.servers.nats_server.EmbeddedNats``) is configured with these users and a password
per role generated at its first start (kept in ``credentials.json`` beside its data, mode 0600). With an
external server, give each process a ``NATS_URL`` carrying its role's credentials
(``nats://gateway:<password>@host:4222``) and configure the server with :func:`authorization`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

STREAM = "CHARGELEDGER"
SUBJECT_PREFIX = "chargeledger"
SEAL_STREAM = "CHARGELEDGER_SEALS"
SEAL_SUBJECT = "chargeledger_seals"

ADMIN, RELAY, GATEWAY, READER, AUDITOR = "admin", "relay", "gateway", "reader", "auditor"


def _stream_admin(stream: str) -> list[str]:
    return [f"$JS.API.STREAM.{verb}.{stream}" for verb in ("CREATE", "UPDATE", "INFO", "MSG.GET")] + [
        f"$JS.API.DIRECT.GET.{stream}.>"]


def _follower(stream: str) -> list[str]:
    """What a consumer of ``stream`` publishes: consumer management, flow-control replies and acks."""
    return ["$JS.API.STREAM.NAMES", f"$JS.API.STREAM.INFO.{stream}", f"$JS.API.STREAM.MSG.GET.{stream}",
            f"$JS.API.DIRECT.GET.{stream}.>",
            f"$JS.API.CONSUMER.CREATE.{stream}", f"$JS.API.CONSUMER.CREATE.{stream}.>",
            f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.>", f"$JS.API.CONSUMER.INFO.{stream}.>",
            f"$JS.API.CONSUMER.DELETE.{stream}.>", f"$JS.API.CONSUMER.MSG.NEXT.{stream}.>",
            f"$JS.ACK.{stream}.>", "$JS.FC.>"]


PUBLISH: dict[str, list[str]] = {
    RELAY: [f"{SUBJECT_PREFIX}.>", "$JS.API.INFO", *_stream_admin(STREAM)],
    GATEWAY: ["$JS.API.INFO", *_follower(STREAM)],
    READER: ["$JS.API.INFO", *_follower(STREAM)],
    AUDITOR: [f"{SEAL_SUBJECT}.>", "$JS.API.INFO", *_stream_admin(SEAL_STREAM), *_follower(STREAM)],
}
ROLES = (ADMIN, *PUBLISH)


def inbox_prefix(role: str) -> str:
    return f"_INBOX_{role}"


def permissions(role: str) -> dict[str, Any] | None:
    """The server-side permissions of a role (None: the admin may do anything)."""
    if role == ADMIN:
        return None
    if role not in PUBLISH:
        raise ValueError(f"unknown NATS role {role!r}; known: {', '.join(ROLES)}")
    return {"publish": {"allow": PUBLISH[role]}, "subscribe": {"allow": [f"{inbox_prefix(role)}.>"]}}


def authorization(passwords: dict[str, str]) -> dict[str, Any]:
    """The ``authorization`` block of a nats-server configuration for these role passwords."""
    users = []
    for role in ROLES:
        user: dict[str, Any] = {"user": role, "password": passwords[role]}
        allowed = permissions(role)
        if allowed is not None:
            user["permissions"] = allowed
        users.append(user)
    return {"users": users}


def connect_options(role: str) -> dict[str, Any]:
    """Keyword arguments for ``nats.connect`` that a process of ``role`` needs (its inbox prefix)."""
    return {"inbox_prefix": inbox_prefix(role), "name": f"chargeledger {role}"}


def server_options(nats_url: str) -> dict[str, Any]:
    """Keyword arguments for ``nats.connect`` that name the servers of ``nats_url`` and its user.

    ``nats_url`` may name several servers, comma-separated (a cluster: every node, so a client whose
    node dies reconnects to another). The user and password go to the client as options rather than
    in each server's URL, so they are also sent to the nodes the client learns of from the cluster
    itself (a discovered node's URL carries no credentials)."""
    servers, user, password = [], None, None
    for url in (part.strip() for part in nats_url.split(",")):
        if not url:
            continue
        parts = urlsplit(url if "://" in url else f"nats://{url}")
        if parts.username is not None:
            user = unquote(parts.username)
            password = None if parts.password is None else unquote(parts.password)
        host = parts.hostname or "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        servers.append(urlunsplit((parts.scheme, f"{host}:{parts.port or 4222}", "", "", "")))
    if not servers:
        raise ValueError("no NATS server in the URL")
    options: dict[str, Any] = {"servers": servers}
    if user is not None and password is None:
        options["token"] = user  # nats://<token>@host
    elif user is not None:
        options.update(user=user, password=password)
    return options
