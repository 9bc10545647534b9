"""The eventsourcing Applications: one per aggregate family, each with its own table.

They are thin: load, call a command method on the aggregate, save. Flows that touch several
aggregates live in :mod:`domain.ledger`. Commands that race on one aggregate are retried by
:func:`retry_on_conflict`: the event store's primary key (aggregate id, version) is the
optimistic lock, so a lost race is an IntegrityError and nothing of it was written.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError

from domain.errors import AlreadyExists, ConcurrencyExhausted, NotFound
from domain.registry import Pile, Station, Tenant
from domain.session import ChargingSession
from domain.tariff import Tariff
from domain.wallet import Wallet

T = TypeVar("T")
SNAPSHOT_INTERVAL = 100
# Hot aggregates stay in memory and commands get a deep copy, so a command that raises changes
# nothing. Registry, Tariffs and Wallets are fast-forwarded on every get (one indexed query),
# because API and gateway processes both change them. Sessions are not: the process that holds a pile writes nearly all of its
# session's events, and when another process did write, the stale copy's save is refused by the
# version check, evicted, and the command retried from a fresh load (see LedgerApplication.update).
CACHED = {"AGGREGATE_CACHE_MAXSIZE": "20000", "AGGREGATE_CACHE_FASTFORWARD": "y"}
CACHED_TRUSTING_VERSION_CHECK = {"AGGREGATE_CACHE_MAXSIZE": "20000", "AGGREGATE_CACHE_FASTFORWARD": "n"}


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
    """Shared helpers: typed get with a domain NotFound, and create that refuses duplicates."""

    def get(self, aggregate_id: UUID, kind: type[T], what: str) -> T:
        try:
            aggregate = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            raise NotFound(f"no {what} {aggregate_id}", id=str(aggregate_id)) from None
        if not isinstance(aggregate, kind):
            raise NotFound(f"no {what} {aggregate_id}", id=str(aggregate_id))
        return aggregate

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
        """As :meth:`update`, also returning the saved aggregate and the events the save recorded."""

        def attempt() -> tuple[Any, T, list[Any]]:
            aggregate = self.get(aggregate_id, kind, what)
            result = change(aggregate)
            recordings = self.save(aggregate)
            return result, aggregate, [r.domain_event for r in recordings]

        return retry_on_conflict(attempt, on_conflict=lambda: self.evict(aggregate_id))

    def evict(self, aggregate_id: UUID) -> None:
        """Forget a cached aggregate, so the next get loads it from the store."""
        if self.repository.cache is not None:
            try:
                self.repository.cache.get(aggregate_id, evict=True)
            except KeyError:
                pass


class Registry(LedgerApplication):
    name = "Registry"
    env = CACHED  # noqa: RUF012

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
