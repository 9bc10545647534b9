"""The eventsourcing Applications: one per aggregate family, each with its own table.

They are thin: load, call a command method on the aggregate, save. Flows that touch several
aggregates live in :mod:`domain.ledger`. Commands that race on one aggregate are retried by
:func:`retry_on_conflict`: the event store's primary key (aggregate id, version) is the
optimistic lock, so a lost race is an IntegrityError and nothing of it was written.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from copy import deepcopy
from functools import cached_property
from typing import Any, Protocol, TypeVar, runtime_checkable
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.domain import BaseAggregate
from eventsourcing.persistence import IntegrityError, Notification, ProgrammingError, Recording, StoredEvent
from eventsourcing.popo import POPOApplicationRecorder
from eventsourcing.utils import strtobool

from domain.errors import AlreadyExists, ConcurrencyExhausted, DomainError, NotFound
from domain.registry import Pile, Station, Tenant
from domain.session import ChargingSession
from domain.tariff import Tariff
from domain.wallet import Wallet

T = TypeVar("T")
SNAPSHOT_INTERVAL = 100
# Every Application keeps hot aggregates in memory (commands get a deep copy, so a command that
# raises changes nothing) and trusts the event store's version check for commands: a command runs
# on the cached copy with no query, and a copy that another process made stale cannot be saved
# (the primary key (aggregate id, version) refuses it), so the command is run again from a fresh
# load. A refusal or a no-op decided on a cached copy is confirmed against the store (one indexed
# query) before it is believed, because a stale copy may refuse what the current state allows (a
# hold on a wallet topped up by another process). See LedgerApplication.update_recorded.
#
# Plain reads differ per Application. Registry, Tariffs and Wallets (and Payments) fast-forward
# the cached copy on every read (one indexed query), because API and gateway processes both
# change them and a read decides things nothing will version-check (is the pile enabled, which
# tariff version does a session start with). Sessions trust their cache for reads too: the
# process holding a pile writes nearly all of its sessions' events.
CACHED = {"AGGREGATE_CACHE_MAXSIZE": "20000", "AGGREGATE_CACHE_FASTFORWARD": "n", "FAST_FORWARD_READS": "y"}
CACHED_TRUSTING_VERSION_CHECK = {"AGGREGATE_CACHE_MAXSIZE": "20000", "AGGREGATE_CACHE_FASTFORWARD": "n",
                                 "FAST_FORWARD_READS": "n"}


class StaleCopy(IntegrityError):
    """A command decided on a cached copy that the store has moved past: run it again from a fresh load."""


def retry_on_conflict(command: Callable[[], T], attempts: int = 50,
                      on_conflict: Callable[[], object] | None = None) -> T:
    """Run a load-change-save command, again from a fresh load if another writer won the race."""
    for attempt in range(attempts):
        try:
            return command()
        except IntegrityError:
            if on_conflict is not None:
                on_conflict()
            time.sleep(random.uniform(0, 0.001 * 2 ** min(attempt, 6)))
    raise ConcurrencyExhausted(f"gave up after {attempts} concurrent-update retries")


class LedgerApplication(Application[UUID]):
    """Shared helpers: typed get with a domain NotFound, create that refuses duplicates, update."""

    @cached_property
    def fast_forward_reads(self) -> bool:
        return strtobool(self.env.get("FAST_FORWARD_READS", "y"))

    def get(self, aggregate_id: UUID, kind: type[T], what: str, *, fresh: bool | None = None,
            copy: bool = True) -> T:
        """The aggregate, from the cache when it is there.

        ``fresh`` (default: the Application's ``FAST_FORWARD_READS``) brings a cached aggregate up
        to date with the store first; ``fresh=False`` trusts the cache (for what never changes,
        like a pile's station, or for commands, whose save is version-checked). ``copy=False``
        returns the cached instance itself, shared with every other caller: only for reading,
        never for a command.
        """
        if fresh is None:
            fresh = self.fast_forward_reads
        try:
            if fresh and self.is_cached(aggregate_id):
                cached = self.repository.get(aggregate_id, deepcopy_from_cache=False)
                aggregate = self._fast_forward({aggregate_id: cached}, copy)[aggregate_id]
            else:
                aggregate = self.repository.get(aggregate_id, deepcopy_from_cache=copy)
        except AggregateNotFoundError:
            raise NotFound(f"no {what} {aggregate_id}", id=str(aggregate_id)) from None
        if not isinstance(aggregate, kind):
            raise NotFound(f"no {what} {aggregate_id}", id=str(aggregate_id))
        return aggregate

    def get_all(self, *wanted: tuple[UUID, type, str], copy: bool = True) -> list[Any]:
        """Several aggregates, each ``(id, kind, what)``, brought up to date in one query."""
        return get_together((self, wanted), copy=copy)[0]

    def _split_cached(self, wanted: Sequence[tuple[UUID, type, str]],
                      copy: bool) -> tuple[dict[UUID, Any], dict[UUID, Any]]:
        """(loaded now from the store, cached instances to bring forward) for ``wanted``."""
        loaded: dict[UUID, Any] = {}
        cached: dict[UUID, Any] = {}
        for aggregate_id, kind, what in wanted:
            if self.is_cached(aggregate_id):
                cached[aggregate_id] = self.get(aggregate_id, kind, what, fresh=False, copy=False)
            else:
                loaded[aggregate_id] = self.get(aggregate_id, kind, what, fresh=False, copy=copy)
        return loaded, cached

    def is_cached(self, aggregate_id: UUID) -> bool:
        if self.repository.cache is None:
            return False
        try:
            self.repository.cache.get(aggregate_id)
        except KeyError:
            return False
        return True

    def exists(self, aggregate_id: UUID) -> bool:
        """Whether the aggregate was ever saved: no query when it is cached (nothing is ever deleted)."""
        return self.is_cached(aggregate_id) or bool(self._stored_after({aggregate_id: 0}, first_only=True))

    def _stored_after(self, versions: dict[UUID, int], *, first_only: bool = False) -> list[Any]:
        """Stored events after the given versions: one query with our recorder, one per id otherwise."""
        select_after = getattr(self.recorder, "select_events_after", None)
        if select_after is not None:
            return select_after(versions, first_only=first_only)
        limit = 1 if first_only else None
        return [e for i, v in versions.items() for e in self.recorder.select_events(i, gt=v, limit=limit)]

    def _fast_forward(self, cached: dict[UUID, Any], copy: bool,
                      stored: list[Any] | None = None) -> dict[UUID, Any]:
        """Bring cached instances up to date (one query, unless the events after them are given as
        ``stored``); returns copies if ``copy``, else shared instances.

        The cached instances are never changed in place (another thread may be reading one): an
        aggregate that moved is copied, brought forward and put back in the cache.
        """
        if not cached:
            return cached
        moved: dict[UUID, Any] = {}
        if stored is None:
            stored = self._stored_after({i: a.version for i, a in cached.items()})
        for stored_event in stored:
            aggregate_id = stored_event.originator_id
            aggregate = moved.get(aggregate_id) or deepcopy(cached[aggregate_id])
            moved[aggregate_id] = self.mapper.to_domain_event(stored_event).mutate(aggregate)
        for aggregate_id, aggregate in moved.items():
            self.repository.cache.put(aggregate_id, aggregate)
        current = {**cached, **moved}
        return {i: deepcopy(a) for i, a in current.items()} if copy else current

    def _caught_up(self, aggregate_id: UUID, version: int) -> bool:
        return not self._stored_after({aggregate_id: version}, first_only=True)

    def save(self, *objs: Any, **kwargs: Any) -> list[Any]:
        """``Application.save``, without its runtime Protocol checks when given plain aggregates.

        ``ProcessingEvent.collect_events`` asks ``isinstance(obj, DomainEventProtocol)`` of every
        object, which on Python 3.11 walks the Protocol's attributes each time: about a fifth of
        the Python time of a batch of readings. Aggregates are collected here with a plain class
        check; the rest of the save (record, snapshots, notify) is the library's own.
        """
        if not all(isinstance(obj, BaseAggregate) for obj in objs):
            return super().save(*objs, **kwargs)
        processing_event = self.collect(objs)
        processing_event.saved_kwargs.update(kwargs)
        recordings = self._record(processing_event)
        self.after_record(processing_event, recordings)
        return recordings

    def collect(self, aggregates: Sequence[BaseAggregate]) -> ProcessingEvent[UUID]:
        """The pending events of ``aggregates``, to record (see :meth:`save`)."""
        processing_event: ProcessingEvent[UUID] = ProcessingEvent()
        for aggregate in aggregates:
            processing_event.events.extend(aggregate.collect_events())
            processing_event.aggregates[aggregate.id] = aggregate
        return processing_event

    def after_record(self, processing_event: ProcessingEvent[UUID], recordings: list[Recording[UUID]]) -> None:
        """What a save does once its events are stored: snapshots, then the notify hooks."""
        self._take_snapshots(processing_event)
        self._notify(recordings)
        self.notify(processing_event.events)  # deprecated hook, called as Application.save does

    def cache_recorded(self, processing_event: ProcessingEvent[UUID]) -> None:
        """Put the saved aggregates in the cache, as ``Application._record`` does after its insert."""
        if self.repository.cache is not None and not self.repository.fastforward:
            for aggregate_id, aggregate in processing_event.aggregates.items():
                self.repository.cache.put(aggregate_id, aggregate)

    def create(self, aggregate: Any, what: str) -> Any:
        try:
            return self.save(aggregate)
        except IntegrityError:
            raise AlreadyExists(f"{what} {aggregate.id} already exists", id=str(aggregate.id)) from None

    def update(self, aggregate_id: UUID, kind: type[T], what: str, change: Callable[[T], Any]) -> Any:
        """Load, apply ``change``, save; retried on a concurrent update. Returns ``change``'s result."""
        return self.update_recorded(aggregate_id, kind, what, change)[0]

    def update_recorded(self, aggregate_id: UUID, kind: type[T], what: str,
                        change: Callable[[T], Any]) -> tuple[Any, T, list[Any]]:
        """As :meth:`update`, also returning the saved aggregate and the events the save recorded.

        The command runs on the cached copy without a query. What it decides is believed once the
        store confirms it: a save is confirmed by the version check; a refusal (a DomainError) or a
        no-op (nothing to save, e.g. an idempotency key seen before) by one query showing that no
        event was stored after the copy. Otherwise the copy is evicted and the command runs again.
        """

        def attempt() -> tuple[Any, T, list[Any]]:
            result, aggregate = self.decide(aggregate_id, kind, what, change)
            recordings = self.save(aggregate)
            version = aggregate.version  # type: ignore[attr-defined]  # unchanged when nothing was recorded
            if not recordings and not self._caught_up(aggregate_id, version):
                raise StaleCopy(f"{what} {aggregate_id} moved past version {version}")
            return result, aggregate, [r.domain_event for r in recordings]

        return retry_on_conflict(attempt, on_conflict=lambda: self.evict(aggregate_id))

    def decide(self, aggregate_id: UUID, kind: type[T], what: str, change: Callable[[T], Any]) -> tuple[Any, T]:
        """Run ``change`` on a copy of the cached aggregate, without saving it: (its result, the copy).

        A refusal (a DomainError) is believed only once one query shows nothing was stored after the
        copy; otherwise :class:`StaleCopy` (an IntegrityError: evict and run again). What the
        copy decided is confirmed by the version check of the save that follows.
        """
        aggregate = self.get(aggregate_id, kind, what, fresh=False)
        version = aggregate.version  # type: ignore[attr-defined]
        try:
            result = change(aggregate)
        except DomainError:
            if self._caught_up(aggregate_id, version):
                raise
            raise StaleCopy(f"{what} {aggregate_id} moved past version {version}") from None
        return result, aggregate

    def evict(self, aggregate_id: UUID) -> None:
        """Forget a cached aggregate, so the next get loads it from the store."""
        if self.repository.cache is not None:
            try:
                self.repository.cache.get(aggregate_id, evict=True)
            except KeyError:
                pass


def get_together(*requests: tuple[LedgerApplication, Sequence[tuple[UUID, type, str]]],
                 copy: bool = True) -> list[list[Any]]:
    """Aggregates of several Applications, each request ``(application, [(id, kind, what), ...])``
    as :meth:`LedgerApplication.get_all` answers it, with every cached one brought up to date in
    one query across the Applications' tables (when they share a database; one query per
    Application otherwise)."""
    split = [app._split_cached(wanted, copy) for app, wanted in requests]
    held = [(app, {i: a.version for i, a in cached.items()}) for (app, _), (_, cached) in zip(requests, split)]
    stored: list[list[Any]] | list[None] = [None] * len(requests)
    together = getattr(requests[0][0].recorder, "select_events_after_with", None)
    if together is not None and len([v for _, v in held if v]) > 1:
        stored = together([(app.recorder, versions) for app, versions in held]) or stored
    answers = []
    for (app, wanted), (loaded, cached), events in zip(requests, split, stored):
        aggregates = {**loaded, **app._fast_forward(cached, copy, events)}
        for aggregate_id, kind, what in wanted:
            if not isinstance(aggregates[aggregate_id], kind):
                raise NotFound(f"no {what} {aggregate_id}", id=str(aggregate_id))
        answers.append([aggregates[aggregate_id] for aggregate_id, _, _ in wanted])
    return answers


def save_together(*parts: tuple[LedgerApplication, Sequence[BaseAggregate]],
                  alongside: Sequence[Any] = ()) -> list[list[Recording[UUID]]]:
    """Save aggregates of several Applications in ONE transaction; each part's recordings.

    Each part is ``(application, aggregates)``. On our Postgres recorder (the Applications' tables
    in one database) the events of every part, and the ``alongside`` statements (e.g. the driver
    API's idempotency record: :class:`adapters.postgres.recorder.Statement`, handed to the recorder as they
    are), commit in one transaction (:meth:`adapters.postgres.recorder.LockedInsertRecorder.insert_together`):
    all or nothing, whatever happens to the process. On the in-memory (POPO) recorders every part
    is checked, then inserted, under all their locks at once: all or nothing too (``alongside`` then
    takes :class:`InMemoryRow` items, checked and written under the same locks: the fault simulator's
    tables). Any other mix of recorders cannot be written atomically and is refused.

    A conflict (an aggregate saved meanwhile, an id already taken) raises ``IntegrityError`` and
    nothing is written. Once stored, each Application does what its own save does: cache the
    aggregates, take its snapshots, call its notify hooks.
    """
    parts = tuple(sorted(parts, key=lambda part: part[0].name))
    processing = [app.collect(aggregates) for app, aggregates in parts]
    stored = [[app.mapper.to_stored_event(e) for e in pe.events] for (app, _), pe in zip(parts, processing)]
    recorders = [app.recorder for app, _ in parts]
    together = getattr(recorders[0], "insert_together", None)
    if together is not None:
        notification_ids = together(list(zip(recorders, stored)), alongside=alongside)
    elif all(isinstance(recorder, POPOApplicationRecorder) for recorder in recorders) and \
            all(isinstance(row, InMemoryRow) for row in alongside):
        notification_ids = _insert_in_memory(recorders, stored, alongside)
    else:
        raise ProgrammingError(f"cannot save {[app.name for app, _ in parts]} in one transaction on these recorders")
    answer = []
    for (app, _), pe, events, ids in zip(parts, processing, stored, notification_ids):
        recordings = [Recording(d, Notification(originator_id=s.originator_id, originator_version=s.originator_version,
                                                topic=s.topic, state=s.state, id=n))
                      for d, s, n in zip(pe.events, events, ids, strict=True)]
        app.cache_recorded(pe)
        app.after_record(pe, recordings)
        answer.append(recordings)
    return answer


@runtime_checkable
class InMemoryRow(Protocol):
    """A row written alongside events on in-memory recorders (:func:`save_together`): ``check`` raises
    if it cannot be written (a unique key taken), ``write`` writes it. Both run under the recorders'
    locks, after the events' own check, so the row and the events are written together or not at all."""

    def check(self) -> None: ...

    def write(self) -> None: ...


def _insert_in_memory(recorders: Sequence[POPOApplicationRecorder], stored: Sequence[Sequence[StoredEvent]],
                      alongside: Sequence[InMemoryRow] = ()) -> list[Sequence[int]]:
    """Insert into several in-memory recorders as one write: all checked, then all inserted, under
    every recorder's lock (taken in the parts' fixed order). Uses the POPO recorder's own check and
    insert, which its ``insert_events`` runs under its lock for one recorder."""
    with ExitStack() as locks:
        for recorder in recorders:
            locks.enter_context(recorder._database_lock)
        for recorder, events in zip(recorders, stored):
            recorder._assert_uniqueness(events)
        for row in alongside:
            row.check()
        ids = [recorder._update_table(events) or [] for recorder, events in zip(recorders, stored)]
        for row in alongside:
            row.write()
    for recorder in recorders:
        recorder._notify_listeners()
    return ids


class Registry(LedgerApplication):
    name = "Registry"
    env = CACHED  # noqa: RUF012
    # A pile gathers events for as long as it runs (every link drop, every gun status change: tens a
    # day), so a gateway that restarts must not replay years of them per pile: piles are snapshotted.
    snapshotting_intervals = {Pile: SNAPSHOT_INTERVAL}  # noqa: RUF012

    def tenant(self, tenant_id: UUID) -> Tenant:
        return self.get(tenant_id, Tenant, "tenant")

    def station(self, station_id: UUID) -> Station:
        return self.get(station_id, Station, "station")

    def pile(self, pile_no: str) -> Pile:
        return self.get(Pile.create_id(pile_no), Pile, "pile")


class Tariffs(LedgerApplication):
    name = "Tariffs"
    env = CACHED  # noqa: RUF012

    def tariff(self, tariff_id: UUID) -> Tariff:
        return self.get(tariff_id, Tariff, "tariff")


class Sessions(LedgerApplication):
    name = "Sessions"
    env = CACHED_TRUSTING_VERSION_CHECK  # noqa: RUF012
    snapshotting_intervals = {ChargingSession: SNAPSHOT_INTERVAL}  # noqa: RUF012

    def session(self, trade_no: str) -> ChargingSession:
        return self.get(ChargingSession.create_id(trade_no), ChargingSession, "session")


class Wallets(LedgerApplication):
    name = "Wallets"
    env = CACHED  # noqa: RUF012
    snapshotting_intervals = {Wallet: SNAPSHOT_INTERVAL}  # noqa: RUF012

    def wallet(self, wallet_id: UUID) -> Wallet:
        return self.get(wallet_id, Wallet, "wallet")


APPLICATIONS = (Registry, Tariffs, Sessions, Wallets)
