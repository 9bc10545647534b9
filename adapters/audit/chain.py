"""Tamper evidence: a hash chain over every stored event, sealed in Postgres and in NATS JetStream.

**Order.** One chain per Application, over its event table in notification-id order (the order
events committed in: the Applications insert under an exclusive table lock). Chains of different
Applications are independent, so a new Sessions event never changes the Wallets chain.

**Link.** ``link_n = SHA-256(link_(n-1) ‖ frame(application) ‖ u64(notification id) ‖
frame(originator id) ‖ u64(version) ‖ frame(topic) ‖ frame(state))`` where ``frame(x)`` is a u32
length then the bytes, so no two different events encode alike. ``link_0`` is SHA-256 of
``"chargeledger audit chain v1\\0" + application``. Every link is kept in ``audit_chain``
(application, notification id, link).

**Seal.** ``audit seal`` extends each chain over the events committed since the last seal and
records a seal (application, position = last notification id chained, events chained, head =
the link at that position, sealed at) in ``audit_seals``, in the same transaction as the new
links; then it publishes the seal to the JetStream stream ``CHARGELEDGER_SEALS`` with
``Nats-Msg-Id`` ``seal:<application>:<position>``, so a copy lives outside the database.

What the sealer does about events committed after a seal:

* it first waits for the writers of the table (``LOCK TABLE … IN SHARE MODE``, held only for the
  ``max(notification_id)`` query): after that every id up to the horizon is committed or never will
  be, so the chain never skips an event that commits later with a lower id;
* it only ever extends the chain from its last position and previous head; an event that appears
  later *below* that position (an insert into a gap) is never chained and ``verify`` names it;
* it checks each new event was recorded after the previous seal (less ``LAG``, the longest a
  command takes from creating its event to committing it): a row slipped in at the end dated into
  the sealed past is reported by the seal and again by every ``verify``.

**Verify** walks the events and the links together by notification id and names the first broken
link: an event whose bytes or identity no longer hash to its link (*edited*), a link whose event is
gone (*deleted*), an event inside the chained range without a link (*inserted*), an event after
the last seal dated before it (*backdated*); it checks each seal's head against the links
(a rewritten chain table), and the Postgres seals against their NATS copies.
"""

from __future__ import annotations

import hashlib
import json
import struct
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from adapters.audit.seals import Seal, ensure_schema
from adapters.audit.store import EventTable, event_tables, read_events

LAG = timedelta(minutes=1)  # longest commit delay of a legitimate event after its own timestamp
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_TIMESTAMP_PREFIX = b'{"timestamp":{"_type_":"datetime_iso","_data_":"'


def genesis(application: str) -> bytes:
    return hashlib.sha256(b"chargeledger audit chain v1\x00" + application.encode()).digest()


def link(previous: bytes, application: bytes, originator_id: Any, version: int, topic: str, state: bytes,
         notification_id: int) -> bytes:
    """The chain link of one stored event (``application`` already encoded as UTF-8)."""
    oid = str(originator_id).encode()
    top = topic.encode()
    return hashlib.sha256(b"".join((
        previous, _U32.pack(len(application)), application, _U64.pack(notification_id),
        _U32.pack(len(oid)), oid, _U64.pack(version), _U32.pack(len(top)), top,
        _U32.pack(len(state)), state,
    ))).digest()


def recorded_at(state: bytes) -> datetime | None:
    """The recording time an event's stored JSON starts with (``timestamp``), without decoding it all."""
    if state.startswith(_TIMESTAMP_PREFIX):
        end = state.find(b'"', len(_TIMESTAMP_PREFIX))
        try:
            return datetime.fromisoformat(state[len(_TIMESTAMP_PREFIX):end].decode())
        except ValueError:
            return None
    try:
        value = json.loads(state)["timestamp"]
        return datetime.fromisoformat(value["_data_"] if isinstance(value, dict) else value)
    except (ValueError, KeyError, TypeError):
        return None


# ---- sealing -------------------------------------------------------------------------------------
def seal(database_url: str, *, lag: timedelta = LAG) -> list[Seal]:
    """Extend every Application's chain to its committed end and seal it. Returns the new seals."""
    seals = []
    with psycopg.connect(database_url) as conn:
        ledger = ensure_schema(conn)
        for table in event_tables(conn):
            made = _seal_table(conn, ledger, table, lag)
            if made is not None:
                seals.append(made)
    return seals


def _seal_table(conn: psycopg.Connection[Any], ledger: str, table: EventTable, lag: timedelta) -> Seal | None:
    app = table.application
    # 1. the horizon: wait out the table's writers, read the last committed id, let go at once (a lock
    #    taken in a savepoint would be held until the end of the outer transaction)
    with conn.transaction():
        conn.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(sql.Identifier(table.table)))
        horizon, sealed_at = conn.execute(sql.SQL("SELECT coalesce(max(notification_id), 0), now() FROM {}").format(
            sql.Identifier(table.table))).fetchone()
    # 2. extend the chain from the last seal to the horizon, and seal, in one transaction
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"chargeledger audit seal {app}"])
        last = conn.execute("SELECT position, events, head, sealed_at FROM audit_seals WHERE application = %s "
                            "ORDER BY position DESC LIMIT 1", [app]).fetchone()
        position, count, head, previous_at = last if last else (0, 0, genesis(app), None)
        head = bytes(head)
        if horizon <= position:
            return None
        name = app.encode()
        links: list[tuple[str, int, bytes]] = []
        backdated: list[int] = []
        for oid, version, topic, state, nid in read_events(conn, table.table, after=position, upto=horizon):
            head = link(head, name, oid, version, topic, state, nid)
            links.append((app, nid, head))
            at = recorded_at(state)
            if previous_at is not None and (at is None or at < previous_at - lag):
                backdated.append(nid)
        if not links:
            return None
        with conn.cursor().copy("COPY audit_chain (application, notification_id, link) FROM STDIN") as copy:
            for row in links:
                copy.write_row(row)
        new = Seal(ledger, app, links[-1][1], count + len(links), head, sealed_at, tuple(backdated))
        conn.execute("INSERT INTO audit_seals (application, position, events, head, sealed_at, backdated) "
                     "VALUES (%s, %s, %s, %s, %s, %s)",
                     [new.application, new.position, new.events, new.head, new.sealed_at,
                      json.dumps(list(new.backdated))])
    return new
