"""``audit verify``: every chain recomputed from the stored events, and the first broken link named.

The chains and seals are described in :mod:`adapters.audit.chain`; the seals are compared with their
NATS copy (:mod:`adapters.audit.seals`) when a NATS URL is given.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import psycopg
from psycopg import sql

from adapters.audit.chain import LAG, genesis, link, recorded_at
from adapters.audit.seals import Seal, ensure_schema, nats_seals, stored_seals
from adapters.audit.store import EventTable, event_tables

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
