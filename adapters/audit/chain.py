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

import asyncio
import hashlib
import json
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
from psycopg import sql

from adapters.audit.store import EventTable, event_tables, read_events
from adapters.servers.nats_users import AUDITOR, SEAL_STREAM, SEAL_SUBJECT, connect_options
from adapters.postgres.env import lock_schema

LAG = timedelta(minutes=1)  # longest commit delay of a legitimate event after its own timestamp
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_TIMESTAMP_PREFIX = b'{"timestamp":{"_type_":"datetime_iso","_data_":"'

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
        return json.dumps({"ledger": self.ledger, "application": self.application, "position": self.position, "events": self.events,
                           "head": self.head.hex(), "sealed_at": self.sealed_at.isoformat(),
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

    nc = await nats.connect(nats_url, connect_timeout=2, max_reconnect_attempts=2, **connect_options(AUDITOR))
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

    nc = await nats.connect(nats_url, connect_timeout=2, max_reconnect_attempts=2, **connect_options(AUDITOR))
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


# ---- verifying -------------------------------------------------------------------------------------
@dataclass
class Break:
    """One broken link: what is wrong, at which stored event."""

    application: str
    notification_id: int
    kind: str  # edited | deleted | inserted | backdated | chain_rewritten | seal_missing | seal_differs
    message: str
    originator_id: str | None = None
    version: int | None = None
    topic: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ChainReport:
    checked: dict[str, int] = field(default_factory=dict)
    sealed: dict[str, int] = field(default_factory=dict)  # application -> last sealed position
    unsealed: dict[str, int] = field(default_factory=dict)  # events after the last seal
    breaks: list[Break] = field(default_factory=list)
    nats_seals: int | None = None
    unpublished: list[str] = field(default_factory=list)  # seals not yet acknowledged by JetStream

    @property
    def ok(self) -> bool:
        return not self.breaks

    @property
    def first_break(self) -> Break | None:
        return self.breaks[0] if self.breaks else None

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checked": self.checked, "sealed": self.sealed, "unsealed": self.unsealed,
                "nats_seals": self.nats_seals,
                "unpublished": self.unpublished, "first_break": self.first_break.as_dict() if self.breaks else None,
                "breaks": [b.as_dict() for b in self.breaks]}

    def as_text(self) -> str:
        out = ["audit verify: " + ("the chain holds" if self.ok else f"{len(self.breaks)} broken link(s)")]
        for app, n in self.checked.items():
            out.append(f"  {app:10} {n:>10} events checked, sealed up to #{self.sealed.get(app, 0)}, "
                       f"{self.unsealed.get(app, 0)} after the last seal")
        out.append("  NATS copy of the seals: " + ("not checked" if self.nats_seals is None
                                                  else f"{self.nats_seals} seals compared"))
        if self.unpublished:
            out.append(f"  seals not yet published to NATS (run audit seal again): {', '.join(self.unpublished)}")
        for b in self.breaks:
            out.append(f"BROKEN {b.application}#{b.notification_id} [{b.kind}] {b.message}")
        return "\n".join(out)


def _joined(conn: psycopg.Connection[Any], table: EventTable) -> Iterator[tuple[Any, ...]]:
    """Events and chain links side by side by notification id (either side may be missing)."""
    query = sql.SQL(
        "SELECT coalesce(e.notification_id, c.notification_id) AS nid, e.originator_id, e.originator_version, "
        "e.topic, e.state, c.link FROM {t} e FULL OUTER JOIN "
        "(SELECT notification_id, link FROM audit_chain WHERE application = %s) c "
        "ON c.notification_id = e.notification_id ORDER BY nid").format(t=sql.Identifier(table.table))
    with conn.transaction(), conn.cursor(name=f"verify_{table.table}", binary=True) as cur:
        cur.itersize = 20_000
        cur.execute(query, [table.application])
        while rows := cur.fetchmany(20_000):
            yield from rows


def verify(database_url: str, nats_url: str | None = None, *, lag: timedelta = LAG) -> ChainReport:
    """Recompute every chain and name the first broken link of each Application."""
    report = ChainReport()
    with psycopg.connect(database_url) as conn:
        ledger = ensure_schema(conn)
        outside = nats_seals(nats_url, ledger) if nats_url else None
        tables = event_tables(conn)
        seals_in_db = stored_seals(conn)
        if outside is not None:
            report.nats_seals = len(outside)
            _compare_seals(seals_in_db, outside, report)
        # seals as the verifier trusts them: the NATS copy where there is one
        trusted = {(s.application, s.position): s for s in seals_in_db}
        if outside is not None:
            trusted.update({(s.application, s.position): s for s in outside})
        for table in tables:
            seals = sorted((s for s in trusted.values() if s.application == table.application),
                           key=lambda s: s.position)
            _verify_table(conn, table, seals, lag, report)
    report.breaks.sort(key=lambda b: (b.kind in ("seal_missing", "seal_differs"), b.application, b.notification_id))
    return report


def _compare_seals(in_db: list[Seal], outside: list[Seal], report: ChainReport) -> None:
    db = {(s.application, s.position): s for s in in_db}
    published = {(s.application, s.position) for s in outside}
    for s in in_db:
        if not s.published:
            report.unpublished.append(f"{s.application}#{s.position}")
        elif (s.application, s.position) not in published:
            report.breaks.append(Break(s.application, s.position, "seal_missing",
                                       f"seal at #{s.position} is marked published in audit_seals but "
                                       "JetStream has no copy: forged in the database"))
    for s in outside:
        mine = db.get((s.application, s.position))
        if mine is None:
            report.breaks.append(Break(s.application, s.position, "seal_missing",
                                       f"seal at #{s.position} is in NATS but not in audit_seals"))
        elif mine.message() != s.message():
            report.breaks.append(Break(s.application, s.position, "seal_differs",
                                       f"seal at #{s.position} in audit_seals differs from its NATS copy"))


def _verify_table(conn: psycopg.Connection[Any], table: EventTable, seals: list[Seal], lag: timedelta,
                  report: ChainReport) -> None:
    app = table.application
    name = app.encode()
    sealed_to = seals[-1].position if seals else 0
    heads = {s.position: s for s in seals}
    seal_times = [(s.position, s.sealed_at) for s in seals]
    previous = genesis(app)
    checked = unsealed = 0
    chained_to = 0
    first_unchained: int | None = None
    seal_index = 0  # the first seal whose position is >= the current event
    breaks: list[Break] = []

    def broken(nid: int, kind: str, message: str, oid: Any = None, version: Any = None, topic: Any = None) -> None:
        breaks.append(Break(app, nid, kind, message, str(oid) if oid is not None else None, version, topic))

    for nid, oid, version, topic, state, stored in _joined(conn, table):
        while seal_index < len(seal_times) and seal_times[seal_index][0] < nid:
            seal_index += 1
        if stored is not None:
            stored = bytes(stored)
            chained_to = nid
            if state is None:
                broken(nid, "deleted", f"event #{nid} was chained but is no longer in {table.table}")
            else:
                checked += 1
                if link(previous, name, oid, version, topic, state, nid) != stored:
                    broken(nid, "edited", f"event #{nid} ({topic} v{version} of {oid}) no longer hashes to its "
                           "link: its stored bytes or identity were changed (or the event before it was removed "
                           "together with its link)", oid, version, topic)
                # events chained by seal k were recorded after seal k-1 (less the commit lag)
                if seal_index > 0:
                    at = recorded_at(state)
                    if at is None or at < seal_times[seal_index - 1][1] - lag:
                        broken(nid, "backdated", f"event #{nid} ({topic}) is dated {at}, before seal "
                               f"#{seal_times[seal_index - 1][0]} sealed at {seal_times[seal_index - 1][1]}, "
                               "yet comes after it", oid, version, topic)
            previous = stored  # go on from the stored link, so one break is reported once
            seal = heads.get(nid)
            if seal is not None and seal.head != stored:
                broken(nid, "chain_rewritten", f"the link at #{nid} differs from the head of the seal made "
                       f"{seal.sealed_at}: the chain table was rewritten up to here")
        else:
            checked += 1
            if nid <= sealed_to or nid < chained_to:
                broken(nid, "inserted", f"event #{nid} ({topic} v{version} of {oid}) sits inside the sealed "
                       "chain but was never chained: it was inserted afterwards", oid, version, topic)
                continue
            unsealed += 1
            first_unchained = first_unchained or nid
            previous = link(previous, name, oid, version, topic, state, nid)
            at = recorded_at(state)
            if seals and (at is None or at < seals[-1].sealed_at - lag):
                broken(nid, "backdated", f"event #{nid} ({topic}) after the last seal is dated {at}, before "
                       f"that seal ({seals[-1].sealed_at}): slipped in at the end", oid, version, topic)
    for s in seals:
        if s.position > chained_to:
            broken(s.position, "deleted", f"seal at #{s.position} covers links that are gone from audit_chain")
    report.checked[app] = checked
    report.sealed[app] = sealed_to
    report.unsealed[app] = unsealed
    report.breaks.extend(breaks)


def now() -> datetime:
    return datetime.now(timezone.utc)
