"""The JetStream side of the relay: subjects, message ids and headers, the ledger id they carry, and
the stream itself (made, updated, or waited for)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import nats.js.errors
from eventsourcing.persistence import Notification
from nats.js.api import StorageType, StreamConfig

from adapters.postgres.env import lock_schema
from adapters.servers.nats_users import STREAM, SUBJECT_PREFIX

log = logging.getLogger(__name__)

DUPLICATE_WINDOW = 15 * 60.0  # seconds; far longer than any publish retry loop


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


async def ensure_stream(js: Any) -> None:
    """Make the stream, or bring its configuration up to date (``DUPLICATE_WINDOW`` is read here)."""
    config = StreamConfig(name=STREAM, subjects=[f"{SUBJECT_PREFIX}.>"], storage=StorageType.FILE,
                          duplicate_window=DUPLICATE_WINDOW)
    try:
        await js.add_stream(config)
    except nats.js.errors.BadRequestError:
        await js.update_stream(config)


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
