"""The JetStream side of the relay: subjects, message ids and headers, the ledger id they carry, and
the stream itself (made, updated, or waited for)."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import nats.js.errors
from eventsourcing.persistence import Notification
from nats.js.api import StorageType, StreamConfig

from adapters.postgres.env import lock_schema
from adapters.servers.nats_users import STREAM, SUBJECT_PREFIX

log = logging.getLogger(__name__)

DUPLICATE_WINDOW = 15 * 60.0  # seconds; far longer than any publish retry loop
REPLICAS_SETTING = "NATS_REPLICAS"  # the stream's replicas, when the deployment's own count should not decide
CLUSTER_REPLICAS = 3  # on a cluster of at least this many nodes: a node's loss loses nothing, a quorum remains


MAIN_SHARD = "main"  # adapters.postgres.shards.MAIN: the shard whose subjects and ids are unqualified


def subject_prefix(shard: str = MAIN_SHARD) -> str:
    """``chargeledger`` for the shard ``main`` (a single-database deployment: subjects as they always
    were), ``chargeledger.<shard>`` for any other, so two shards' events never share a subject
    (docs/shards.md). Shard names are lower case and Application names capitalised: never confused."""
    return SUBJECT_PREFIX if shard == MAIN_SHARD else f"{SUBJECT_PREFIX}.{shard}"


def subject_for(application: str, topic: str, shard: str = MAIN_SHARD) -> str:
    """``domain.session:ChargingSession.Settled`` -> ``chargeledger.Sessions.ChargingSession.Settled``
    (shard ``s2``: ``chargeledger.s2.Sessions.ChargingSession.Settled``)."""
    qualname = topic.rsplit(":", 1)[-1]
    return f"{subject_prefix(shard)}.{application}.{qualname}"


def guard_subject(application: str, shard: str = MAIN_SHARD) -> str:
    """The subjects of one shard's Application (``chargeledger.Sessions.>``, shard ``s2``:
    ``chargeledger.s2.Sessions.>``): the relay's order guard (:mod:`.window`) and where its ``sync`` reads
    the last event back. ``main``'s never match another shard's subjects (a lower-case shard name is never
    a capitalised Application name)."""
    return f"{subject_prefix(shard)}.{application}.>"


def qualified_ledger(ledger: str, shard: str = MAIN_SHARD) -> str:
    """The ledger id a shard's ``Nats-Msg-Id`` starts with: ``<shard>.<ledger id>`` (``main``: the id alone)."""
    return ledger if shard == MAIN_SHARD else f"{shard}.{ledger}"


def message_id(ledger: str, application: str, notification_id: int) -> str:
    return f"{ledger}:{application}:{notification_id}"


def notification_of(msg_id: str, ledger: str, application: str) -> int | None:
    """The notification id a ``Nats-Msg-Id`` names, if it is ``ledger``'s event of ``application``."""
    parts = msg_id.split(":")
    if len(parts) != 3 or parts[:2] != [ledger, application] or not parts[2].isdigit():
        return None
    return int(parts[2])


def ledger_identity(recorder: Any) -> str:
    """This database's ledger id, made on first use: the first 12 hex digits of a random UUID."""
    with recorder.datastore.transaction(commit=True) as cur:
        lock_schema(cur)
        cur.execute("CREATE TABLE IF NOT EXISTS ledger_identity (id text PRIMARY KEY, "
                    "created_at timestamptz NOT NULL DEFAULT now())")
        cur.execute("LOCK TABLE ledger_identity IN EXCLUSIVE MODE")  # two relays starting at once agree
        cur.execute("INSERT INTO ledger_identity (id) SELECT left(replace(gen_random_uuid()::text, '-', ''), 12) "
                    "WHERE NOT EXISTS (SELECT 1 FROM ledger_identity)")
        cur.execute("SELECT id FROM ledger_identity")
        return str(cur.fetchone()["id"])


def headers_for(ledger: str, application: str, n: Notification) -> dict[str, str]:
    return {
        "Nats-Msg-Id": message_id(ledger, application, n.id),
        "Chargeledger-Application": application,
        "Chargeledger-Notification-Id": str(n.id),
        "Chargeledger-Originator-Id": str(n.originator_id),
        "Chargeledger-Originator-Version": str(n.originator_version),
        "Chargeledger-Topic": n.topic,
    }


def replicas_setting(value: str | None = None) -> int | None:
    """``NATS_REPLICAS`` (1 to 5), or None when unset (the deployment decides, :func:`replicas_for`)."""
    value = os.environ.get(REPLICAS_SETTING, "") if value is None else value
    if not value.strip():
        return None
    if not value.strip().isdigit() or not 1 <= int(value) <= 5:
        raise ValueError(f"{REPLICAS_SETTING}={value!r}: the stream's replicas are a number from 1 to 5")
    return int(value)


def replicas_for(server_info: dict[str, Any], setting: int | None, current: int | None) -> int:
    """The stream's replicas: ``setting`` if given; else R3 on a cluster of 3 nodes or more (the server's
    INFO names its cluster and every node's client address), R1 on a single server. Never fewer than the
    stream has (``current``) unless set: a node down while the relay connects must not shrink it."""
    if setting is not None:
        return setting
    nodes = len(set(server_info.get("connect_urls") or [])) if server_info.get("cluster") else 1
    wanted = CLUSTER_REPLICAS if nodes >= CLUSTER_REPLICAS else 1
    return max(wanted, current or 1)


async def ensure_stream(js: Any, server_info: dict[str, Any] | None = None, setting: int | None = None) -> int:
    """Make the stream, or bring its configuration up to date (``DUPLICATE_WINDOW`` is read here, the
    replicas by :func:`replicas_for`; ``allow_atomic``: the relay publishes atomic batches, :mod:`.window`).
    Returns the stream's replicas."""
    try:
        current: int | None = (await js.stream_info(STREAM)).config.num_replicas
    except nats.js.errors.NotFoundError:
        current = None
    replicas = replicas_for(server_info or {}, setting, current)
    config = StreamConfig(name=STREAM, subjects=[f"{SUBJECT_PREFIX}.>"], storage=StorageType.FILE,
                          duplicate_window=DUPLICATE_WINDOW, num_replicas=replicas, allow_atomic=True)
    if current is None:
        try:
            await js.add_stream(config)
        except nats.js.errors.BadRequestError:  # another relay made it meanwhile
            await js.update_stream(config)
    else:
        await js.update_stream(config)
    if current is not None and current != replicas:
        log.warning("relay: stream %s: replicas %d -> %d", STREAM, current, replicas)
    return replicas


async def stream_exists(js: Any) -> bool:
    try:
        await js.stream_info(STREAM)
    except nats.js.errors.NotFoundError:
        return False
    return True


async def wait_for_stream(js: Any, pause: float = 0.5) -> None:
    """Until the relay has made the stream (a follower's NATS user may not create it)."""
    if not await stream_exists(js):
        log.warning("stream %s does not exist yet; waiting for the relay to create it", STREAM)
        while not await stream_exists(js):
            await asyncio.sleep(pause)
