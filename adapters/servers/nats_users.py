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


def server_list(nats_url: str) -> list[str]:
    """The servers of a ``NATS_URL``: one URL, or several comma-separated (the nodes of a cluster, each
    with the role's user), as ``nats.connect`` takes them; the client fails over between them."""
    return [url.strip() for url in nats_url.split(",") if url.strip()]
