"""What a login needs to know about a pile, kept by the gateway and read for many logins at once.

A pile that logs in (0x01) is answered from its :class:`PileFacts`: that it exists and is enabled,
its tenant, station (and the station's time zone), guns and their last status. Before, every
login was a thread-pool call reading the pile's aggregate (a query, the events replayed); when a
gateway died and thousands of piles logged in to the survivors at once, those calls queued behind
one another and behind everything else in the pool, and the heartbeats of the piles already online
waited behind them on the event loop (docs/performance.md, "reconnect storm").

:class:`LoginFacts` keeps the facts of every pile that logged in here, with the aggregate version
they were read at, and answers logins in batches: the logins that arrive while one batch is being
read form the next, and a batch is one call in a thread of its own (never behind the ledger's pool):

* one query asks which of the batch's known piles moved since their facts were read (events after
  their versions: an index range each, usually no row); a pile that moved is brought forward by those
  events (the Pile's own event methods, applied to a pile holding only its facts: :data:`FORWARD`);
* one query reads the piles not known here, or moved otherwise: each pile's newest snapshot and the
  events after it, for the whole batch (:data:`LOAD`); their facts are rebuilt from the aggregates.

So a login is answered from the store as it is when its batch is read, as before (a pile disabled
a moment ago is refused at once; nothing waits for the relay or NATS), at the cost of one or two
queries for a batch of logins instead of one read per login. The facts are never the ledger's: the
link's observations still go to the pile's aggregate through the write-behind.

Every pile's facts are read once when the gateway starts (:meth:`LoginFacts.preload`, in chunks of
:data:`PRELOAD_CHUNK` piles, in the logins' thread in lulls between logins), so that a reconnect storm of
piles that never logged in here (another gateway died) finds them known and only checks them (the first
query above) instead of rebuilding each one's aggregate while heartbeats wait for the GIL. The facts of
piles that changed since are read again at their login, as any moved pile's are. What the facts share
(tenant and station ids, zones, gun tuples) is held once (``shared``): a fleet's facts are a few hundred
bytes a pile. :func:`load_piles` is the one-query read, used by the status writes too
(:class:`pile_link.write_behind.PilesLoadedFirst`) and by what logins are owed (:mod:`pile_link.owed_reads`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic
from psycopg.sql import SQL, Identifier

from domain.errors import DomainError, NotFound, PileUnavailable
from domain.registry import Pile
from pile_link.batches import Batches

log = logging.getLogger("chargeledger.pile_link")

MAX_BATCH = 2000  # logins read in one batch; more wait for the next
PRELOAD_CHUNK = 200  # piles read in one step of the preload, in a lull between logins
PRELOAD_QUIET = 0.2  # s without a login before a step of the preload (none during a ramp of logins)

# The newest snapshot of each pile asked for, and the events after it (or after version 0), in one query.
LOAD = SQL("""
WITH asked(id) AS (SELECT unnest(%s::uuid[])),
snap AS (SELECT DISTINCT ON (s.originator_id) s.originator_id, s.originator_version, s.topic, s.state
         FROM {snapshots} s JOIN asked ON s.originator_id = asked.id
         ORDER BY s.originator_id, s.originator_version DESC)
SELECT 0 AS part, originator_id, originator_version, topic, state FROM snap
UNION ALL
SELECT 1, e.originator_id, e.originator_version, e.topic, e.state
FROM asked JOIN {events} e ON e.originator_id = asked.id
LEFT JOIN snap ON snap.originator_id = asked.id
WHERE e.originator_version > COALESCE(snap.originator_version, 0)
ORDER BY 1, 2, 3
""")
# The Pile's events whose methods change nothing but the facts (or nothing a login reads): known facts are
# brought forward by them; a pile with any other event since its facts were read is read again.
FORWARD = frozenset(f"Pile.{name}" for name in (
    "Enabled", "Disabled", "Moved", "Connected", "Disconnected", "GunStatusChanged", "FaultRaised", "FaultCleared",
    "FrameRefused", "TariffAssigned", "BillingModelConfirmed", "CommandRequested", "CommandAnswered"))
# Every registered pile (each aggregate's first event is its creation; the registry holds tenants and stations too).
ALL_PILES = SQL("SELECT originator_id FROM {events} WHERE originator_version = 1 AND topic = %s ORDER BY 1")


@dataclass(frozen=True, slots=True)
class PileFacts:
    """A pile as a login needs it, read at ``version`` of its aggregate (and what the owed reads need
    after it: the tariff assigned to the pile itself and the billing model it last confirmed)."""

    pile_id: UUID
    version: int
    tenant_id: UUID
    station_id: UUID
    enabled: bool
    timezone: str
    guns: tuple[tuple[int, str, bool, tuple[str, ...]], ...]  # (gun, status, plugged, faults)
    tariff_id: UUID | None = None  # the pile's own tariff (None: its station's)
    billing_model: tuple[str, int] | None = None  # (tariff id, version) the pile last confirmed

    @classmethod
    def of(cls, pile: Pile, timezone: str, shared: dict[Any, Any] | None = None) -> PileFacts:
        """``shared``: equal values held once across piles (ids of tenants and stations, zones, gun tuples)."""
        guns = tuple((int(n), g["status"], g["plugged"], tuple(sorted(g["faults"]))) for n, g in pile.guns.items())
        model = pile.billing_model
        billing = (model["tariff_id"], model["version"]) if model else None
        if shared is None:
            return cls(pile.id, pile.version, pile.tenant_id, pile.station_id, pile.enabled, timezone, guns,
                       pile.tariff_id, billing)
        one = shared.setdefault
        return cls(pile.id, pile.version, one(pile.tenant_id, pile.tenant_id), one(pile.station_id, pile.station_id),
                   pile.enabled, one(timezone, timezone), one(guns, guns), pile.tariff_id and one(pile.tariff_id,
                   pile.tariff_id), billing and one(billing, billing))

    def holds(self, tariff_id: UUID, version: int) -> bool:
        """The billing model the pile confirmed is this tariff version (``domain.use_cases.piles.holds_tariff``)."""
        return self.billing_model == (str(tariff_id), version)


def login_refusal(pile_no: str, facts: PileFacts) -> DomainError | None:
    """Why the pile may not log in (as ``Ledger.pile_login`` says), or None."""
    if not facts.enabled:
        return PileUnavailable(f"pile {pile_no} is disabled", pile_no=pile_no)
    return None


class LoginFacts:
    """The facts of the piles that logged in here, and the batches that read them."""

    def __init__(self, registry: Any, timezone_of: Callable[[UUID], str], stats: Any) -> None:
        self.registry = registry  # domain.applications.Registry
        self.timezone_of = timezone_of  # a station's zone (the gateway's cache)
        self.stats = stats
        self.known: dict[str, PileFacts] = {}
        self.shared: dict[Any, Any] = {}  # values the facts of many piles share, held once
        self.last_login = float("-inf")  # loop time of the last login asked
        self.asked = 0  # logins asked so far (pile_link/runtime.py tells a storm by it)
        self.preloaded = asyncio.Event()  # set when the preload is over, done or given up
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="logins")
        self.batches: Batches[PileFacts] = Batches(self.read_batch, MAX_BATCH, self.counted)

    async def login(self, pile_no: str) -> PileFacts:
        """The pile's facts as the store has them now; raises NotFound or PileUnavailable as a login would."""
        self.last_login = asyncio.get_running_loop().time()
        self.asked += 1
        facts = await self.batches.ask(pile_no)
        refusal = login_refusal(pile_no, facts)
        if refusal is not None:
            raise refusal
        return facts

    async def preload(self) -> None:
        """Read every pile's facts (at the gateway's start), a chunk at a time in the logins' thread in lulls
        between logins (a ramp of logins at start is read as before, and not slowed by the preload); facts a
        login read are kept (either is checked at login)."""
        loop = asyncio.get_running_loop()
        try:
            pile_ids = await loop.run_in_executor(self.executor, self.pile_ids)
            while pile_ids:
                while not self.batches.idle or loop.time() - self.last_login < PRELOAD_QUIET:
                    await asyncio.sleep(PRELOAD_QUIET)  # logins first: the preload waits for a lull
                known = {facts.pile_id for facts in self.known.values()}
                chunk = [pile_id for pile_id in pile_ids[:PRELOAD_CHUNK] if pile_id not in known]
                del pile_ids[:PRELOAD_CHUNK]
                if not chunk:
                    continue
                read = await loop.run_in_executor(self.executor, functools.partial(self.read_facts, chunk))
                for pile_no, facts in read.items():
                    self.known.setdefault(pile_no, facts)
                self.stats["login_facts_preloaded"] += len(read)
        except Exception as error:  # noqa: BLE001 - only a head start: logins read what is not known
            log.warning("login facts not preloaded (%s: %s); logins read them as they come",
                        type(error).__name__, error)
        finally:
            self.preloaded.set()

    def pile_ids(self) -> list[UUID]:
        recorder = self.registry.recorder
        query = ALL_PILES.format(events=Identifier(recorder.datastore.schema, recorder.events_table_name))
        with recorder.datastore.get_connection() as conn, conn.cursor() as cursor:
            cursor.execute(query, [get_topic(Pile.Registered)])
            return [row["originator_id"] for row in cursor.fetchall()]

    def read_facts(self, pile_ids: list[UUID]) -> dict[str, PileFacts]:
        """The facts of ``pile_ids`` as the store has them now, by pile number (in the logins' thread)."""
        return {pile.pile_no: PileFacts.of(pile, self.timezone_of(pile.station_id), self.shared)
                for pile in load_piles(self.registry, pile_ids).values() if isinstance(pile, Pile)}

    async def read_batch(self, pile_nos: list[str]) -> dict[str, PileFacts | DomainError]:
        """One batch in the logins' thread (:meth:`read`); the facts read are kept."""
        read = functools.partial(self.read, pile_nos)
        answers = await asyncio.get_running_loop().run_in_executor(self.executor, read)
        self.known.update({pile_no: a for pile_no, a in answers.items() if isinstance(a, PileFacts)})
        return answers

    def counted(self, seconds: float) -> None:
        self.stats["login_batches"] += 1
        self.stats["login_batch_ms"] += int(seconds * 1000)

    def read(self, pile_nos: list[str]) -> dict[str, PileFacts | DomainError]:
        """One batch (in the logins' thread): the known facts still current, the rest read again."""
        ids = {Pile.create_id(pile_no): pile_no for pile_no in pile_nos}
        held = {pile_id: self.known[pile_no].version for pile_id, pile_no in ids.items() if pile_no in self.known}
        moved: dict[UUID, list[StoredEvent]] = {}
        for stored in self.registry.recorder.select_events_after(held) if held else ():
            moved.setdefault(stored.originator_id, []).append(stored)
        answers: dict[str, PileFacts | DomainError] = {ids[i]: self.known[ids[i]] for i in held if i not in moved}
        self.stats["login_facts_hit"] += len(answers)
        for pile_id, events in moved.items():
            forward = self.brought_forward(self.known[ids[pile_id]], ids[pile_id], events)
            if forward is not None:
                answers[ids[pile_id]] = forward
                self.stats["login_facts_forward"] += 1
        wanted = [pile_id for pile_id in ids if ids[pile_id] not in answers]
        self.stats["login_facts_read"] += len(wanted)
        piles = load_piles(self.registry, wanted) if wanted else {}
        for pile_id in wanted:
            pile = piles.get(pile_id)
            if not isinstance(pile, Pile):
                answers[ids[pile_id]] = NotFound(f"no pile {pile_id}", id=str(pile_id))
            else:
                answers[ids[pile_id]] = PileFacts.of(pile, self.timezone_of(pile.station_id), self.shared)
                self.cache(pile)
        return answers

    def brought_forward(self, facts: PileFacts, pile_no: str, events: list[StoredEvent]) -> PileFacts | None:
        """The facts after ``events`` (those stored after ``facts.version``), applied by the Pile's own event
        methods to a pile holding only the facts; None (read it again) if one is not of :data:`FORWARD`."""
        pile = object.__new__(Pile)
        pile.__dict__.update(_id=facts.pile_id, _version=facts.version, _created_on=None, _modified_on=None,
                             _pending_events=[], pile_no=pile_no, tenant_id=facts.tenant_id,
                             station_id=facts.station_id, enabled=facts.enabled, online=False, connection=None,
                             guns={str(n): {"enabled": True, "status": status, "plugged": plugged, "faults": list(f)}
                                   for n, status, plugged, f in facts.guns}, tariff_id=facts.tariff_id,
                             billing_model=None if facts.billing_model is None else
                             {"tariff_id": facts.billing_model[0], "version": facts.billing_model[1]})
        for stored in events:
            event = self.registry.mapper.to_domain_event(stored)
            if type(event).__qualname__ not in FORWARD:
                return None
            event.mutate(pile)
        timezone = facts.timezone if pile.station_id == facts.station_id else self.timezone_of(pile.station_id)
        return PileFacts.of(pile, timezone, self.shared)

    def cache(self, pile: Pile) -> None:
        """Hand the aggregate read to the registry's cache (if it holds none): the login's ``Connected``,
        written behind, and what the pile is owed then bring it up to date in one query a batch."""
        cache = self.registry.repository.cache
        if cache is not None and not self.registry.is_cached(pile.id):
            cache.put(pile.id, pile)

    def close(self) -> None:
        self.executor.shutdown(wait=True)


def load_piles(registry: Any, pile_ids: list[UUID]) -> dict[UUID, Any]:
    """The aggregates of ``pile_ids`` in ``registry`` (absent: never registered), each from its newest
    snapshot and the events after it, in one query."""
    recorder = registry.recorder
    schema = recorder.datastore.schema
    snapshots = registry.snapshots.recorder.events_table_name
    query = LOAD.format(snapshots=Identifier(schema, snapshots), events=Identifier(schema, recorder.events_table_name))
    with recorder.datastore.get_connection() as conn, conn.cursor() as cursor:
        cursor.execute(query, [pile_ids])
        rows = cursor.fetchall()
    mapper = registry.mapper
    aggregates: dict[UUID, Any] = {}
    for row in rows:
        event = mapper.to_domain_event(StoredEvent(originator_id=row["originator_id"],
                                                   originator_version=row["originator_version"],
                                                   topic=row["topic"], state=bytes(row["state"])))
        # event.mutate, as eventsourcing's project_aggregate does, without its assert on a runtime Protocol
        # (an isinstance check through typing's machinery per event: a fifth of a storm's loading)
        aggregates[row["originator_id"]] = event.mutate(aggregates.get(row["originator_id"]))
    return aggregates

