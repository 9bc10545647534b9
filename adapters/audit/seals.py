"""The seals: where each chain was sealed, in Postgres (``audit_seals``) and in NATS JetStream.

A seal names the ledger, the Application, the position (last notification id chained), the number
of events chained and the head link (see :mod:`adapters.audit.chain` for how links are made). The
NATS copy, one message per seal with ``Nats-Msg-Id`` ``seal:<ledger>:<application>:<position>`` on
the stream ``CHARGELEDGER_SEALS``, is what ``verify`` trusts: it lives outside the database.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from adapters.postgres.env import lock_schema
from adapters.servers.nats_users import AUDITOR, SEAL_STREAM, SEAL_SUBJECT, connect_options, server_options

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_chain (
    application text NOT NULL,
    notification_id bigint NOT NULL,
    link bytea NOT NULL,
    PRIMARY KEY (application, notification_id));
CREATE TABLE IF NOT EXISTS audit_seals (
    seal_id bigserial PRIMARY KEY,
    application text NOT NULL,
    position bigint NOT NULL,
    events bigint NOT NULL,
    head bytea NOT NULL,
    sealed_at timestamptz NOT NULL,
    backdated jsonb NOT NULL DEFAULT '[]',
    published_at timestamptz,
    UNIQUE (application, position));
CREATE TABLE IF NOT EXISTS audit_ledger (
    ledger_id uuid PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now());
"""


@dataclass(frozen=True)
class Seal:
    ledger: str
    application: str
    position: int
    events: int
    head: bytes
    sealed_at: datetime
    backdated: tuple[int, ...] = ()
    published: bool = field(default=True, compare=False)  # acknowledged by JetStream (not in the message)

    def message(self) -> bytes:
        return json.dumps({"ledger": self.ledger, "application": self.application, "position": self.position,
                           "events": self.events, "head": self.head.hex(), "sealed_at": self.sealed_at.isoformat(),
                           "backdated": list(self.backdated)}, sort_keys=True).encode()

    @classmethod
    def from_message(cls, data: bytes) -> Seal:
        d = json.loads(data)
        return cls(d["ledger"], d["application"], d["position"], d["events"], bytes.fromhex(d["head"]),
                   datetime.fromisoformat(d["sealed_at"]), tuple(d.get("backdated", ())))

    @property
    def msg_id(self) -> str:
        return f"seal:{self.ledger}:{self.application}:{self.position}"

    @property
    def subject(self) -> str:
        return f"{SEAL_SUBJECT}.{self.ledger}.{self.application}"


def ensure_schema(conn: psycopg.Connection[Any]) -> str:
    """Create the audit tables if needed; returns this ledger's id, which names its seals in NATS."""
    with conn.transaction():
        lock_schema(conn)
        conn.execute(SCHEMA)
        conn.execute("INSERT INTO audit_ledger (ledger_id) SELECT gen_random_uuid() "
                      "WHERE NOT EXISTS (SELECT 1 FROM audit_ledger)")
        return str(conn.execute("SELECT ledger_id FROM audit_ledger ORDER BY created_at LIMIT 1").fetchone()[0])


def stored_seals(conn: psycopg.Connection[Any], application: str | None = None,
                 unpublished: bool = False) -> list[Seal]:
    ledger = ensure_schema(conn)
    query = ("SELECT application, position, events, head, sealed_at, backdated, published_at IS NOT NULL "
             "FROM audit_seals WHERE true")
    params: list[Any] = []
    if application is not None:
        query += " AND application = %s"
        params.append(application)
    if unpublished:
        query += " AND published_at IS NULL"
    rows = conn.execute(query + " ORDER BY application, position", params).fetchall()
    return [Seal(ledger, a, p, e, bytes(h), s, tuple(b), pub) for a, p, e, h, s, b, pub in rows]


# ---- NATS: the copy outside the database --------------------------------------------------------
async def _ensure_seal_stream(js: Any) -> None:
    import nats.js.errors
    from nats.js.api import StorageType, StreamConfig

    config = StreamConfig(name=SEAL_STREAM, subjects=[f"{SEAL_SUBJECT}.>"], storage=StorageType.FILE,
                          duplicate_window=15 * 60.0)
    try:
        await js.add_stream(config)
    except nats.js.errors.BadRequestError:
        await js.update_stream(config)


async def _publish(nats_url: str, seals: Iterable[Seal]) -> list[Seal]:
    import nats

    nc = await nats.connect(**server_options(nats_url), connect_timeout=2, max_reconnect_attempts=2, **connect_options(AUDITOR))
    published = []
    try:
        js = nc.jetstream(timeout=5)
        await _ensure_seal_stream(js)
        for s in seals:
            await js.publish(s.subject, s.message(), headers={"Nats-Msg-Id": s.msg_id})
            published.append(s)
    finally:
        await nc.close()
    return published


def publish_seals(database_url: str, nats_url: str) -> int:
    """Publish every seal not yet acknowledged by JetStream; a repeat is dropped by its message id."""
    with psycopg.connect(database_url) as conn:
        pending = stored_seals(conn, unpublished=True)
        if not pending:
            return 0
        done = asyncio.run(_publish(nats_url, pending))
        with conn.transaction():
            for s in done:
                conn.execute("UPDATE audit_seals SET published_at = now() WHERE application = %s AND position = %s",
                             [s.application, s.position])
    return len(done)


async def _read_nats_seals(nats_url: str, ledger: str) -> list[Seal]:
    import nats
    import nats.js.errors

    nc = await nats.connect(**server_options(nats_url), connect_timeout=2, max_reconnect_attempts=2, **connect_options(AUDITOR))
    try:
        js = nc.jetstream(timeout=5)
        try:
            await js.stream_info(SEAL_STREAM)
        except nats.js.errors.NotFoundError:
            return []
        seals, seq = [], 1
        while True:
            try:
                msg = await js.get_msg(SEAL_STREAM, seq, subject=f"{SEAL_SUBJECT}.{ledger}.>", next=True)
            except nats.js.errors.NotFoundError:
                return seals
            seals.append(Seal.from_message(msg.data))
            seq = msg.seq + 1
    finally:
        await nc.close()


def nats_seals(nats_url: str, ledger: str) -> list[Seal]:
    """This ledger's seals as JetStream holds them."""
    return asyncio.run(_read_nats_seals(nats_url, ledger))
