"""Two tenant shards for the tests: two ledger databases on the suite's Postgres server, their map,
a Ledger on each, and the API over both (docs/shards.md)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from adapters.postgres.env import eventsourcing_env
from adapters.postgres.shards import ShardDirectory, ShardMap
from adapters.servers.postgres_server import create_database
from domain.ledger import Ledger
from projections.runner import Projections
from tests.factories import record

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=timezone.utc)


@dataclass
class TwoShards:
    map: ShardMap
    ledgers: dict[str, Ledger]

    def url(self, name: str) -> str:
        return self.map.urls[name]

    def env(self, name: str) -> dict[str, str]:
        return eventsourcing_env(self.url(name), pool_size=2, max_overflow=2)

    def tenant_on_each(self) -> dict[str, uuid.UUID]:
        """A tenant made on each shard and placed there in the directory: shard -> tenant id."""
        directory = ShardDirectory(self.map)
        tenants = {}
        for name, ledger in self.ledgers.items():
            tenants[name] = ledger.create_tenant(f"Tenant {name}", "admin")
            directory.place(tenants[name], name, "test")
        return tenants


def make_ledger(url: str) -> Ledger:
    return Ledger(eventsourcing_env(url, pool_size=2, max_overflow=2))


@pytest.fixture
def two_shards(servers: tuple[str, str]) -> Iterator[TwoShards]:
    """Shards ``s1`` (the directory's) and ``s2``: a database each, dropped afterwards."""
    server_url = servers[0]
    names = {shard: f"t_{shard}_{uuid.uuid4().hex[:10]}" for shard in ("s1", "s2")}
    urls = {shard: create_database(server_url, db) for shard, db in names.items()}
    shards = TwoShards(ShardMap(urls), {shard: make_ledger(url) for shard, url in urls.items()})
    yield shards
    for ledger in shards.ledgers.values():
        ledger.close()
    with psycopg.connect(server_url, autocommit=True) as conn:
        for db in names.values():
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def settle_sessions(ledger: Ledger, pile_no: str, wallet_id: uuid.UUID, count: int, at: datetime = T0,
                    every: timedelta = timedelta(0)) -> list[str]:
    """``count`` sessions started, charged and settled on ``pile_no``'s gun 1 (what a gateway writes), the
    first ordered ``at``, each next one ``every`` later."""
    trades = []
    for i in range(count):
        start = at + i * every
        trade_no = ledger.request_start(pile_no=pile_no, gun_no=1, wallet_id=wallet_id, hold_fen=5_00, at=start,
                                        author="d")
        ledger.acknowledge_start(trade_no, at=start, ok=True)
        ledger.mark_charging(trade_no, at=start)
        for minute in range(1, 4):
            ledger.record_reading(trade_no, at=start + timedelta(minutes=minute), energy=minute * 100)
        ledger.settle(trade_no, record((0, 300, 0, 0), start), start + timedelta(minutes=5))
        trades.append(trade_no)
    return trades


def catch_up(shards: TwoShards) -> None:
    """Every shard's views caught up with its ledger."""
    for name, ledger in shards.ledgers.items():
        projections = Projections(ledger.applications, shards.env(name))
        try:
            projections.catch_up()
        finally:
            projections.close()
