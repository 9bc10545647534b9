"""The API over tenant shards: one Ledger and one pool pair per shard, and each request routed by tenant.

A request's shard comes from who is speaking, never from a parameter: an operator's token's tenant
(``route``, called by the operator dependency and the console's), a driver's token's tenant, the
tenant a login or a payment callback is addressed to. A platform admin has no tenant: their
requests see every shard (``shards_of``): the tenants list and the dashboards are merged from all of
them, a single station, pile, order or tariff is looked for on each. A deployment of one shard (no
``CHARGELEDGER_SHARDS``) is exactly what it was: every request on the one shard, and no directory.

Ledgers are made when a shard is first needed (``Shard.ledger``); the pools of every shard open with
the app (a few connections each). Operator users live on the directory shard (the first).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any
from uuid import UUID

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from adapters.api.errors import ApiError
from adapters.postgres import pile_frames
from adapters.postgres.env import create_tables
from adapters.postgres.shards import ShardDirectory, ShardMap


def _utc(conn: Any) -> None:
    """Instants leave the database in UTC, also when Postgres renders them into JSON itself."""
    conn.execute("SET TIME ZONE 'UTC'")
    conn.commit()


async def _autc(conn: Any) -> None:
    await conn.execute("SET TIME ZONE 'UTC'")
    await conn.commit()


class Shard:
    """One shard as the API uses it: its Ledger (made on first use), a pool and an async pool."""

    def __init__(self, name: str, url: str, make_ledger: Callable[[str], Any], pool_size: int,
                 ledger: Any = None) -> None:
        self.name, self.url = name, url
        self._make_ledger, self._ledger, self._owned = make_ledger, ledger, ledger is None
        self._lock = threading.Lock()
        self.pool = ConnectionPool(url, min_size=1, max_size=pool_size, open=False, configure=_utc)
        self.apool = AsyncConnectionPool(url, min_size=1, max_size=pool_size, open=False, configure=_autc)

    @property
    def ledger(self) -> Any:
        if self._ledger is None:
            with self._lock:
                if self._ledger is None:
                    self._ledger = self._make_ledger(self.url)
        return self._ledger

    def open(self) -> None:
        self.pool.open(wait=True)
        with self.pool.connection() as conn:  # the gateway's frame log, which a pile's frames are read from
            create_tables(conn, *pile_frames.SCHEMA)

    def close(self) -> None:
        self.pool.close()
        if self._owned and self._ledger is not None:
            ledger, self._ledger = self._ledger, None  # closed once, however often the app is shut
            ledger.close()


class ApiShards:
    """Every shard of the deployment, the directory, and placing tenants and piles through it."""

    def __init__(self, shard_map: ShardMap, make_ledger: Callable[[str], Any], *, pool_size: int = 8,
                 ledgers: dict[str, Any] | None = None) -> None:
        self.map = shard_map
        self.directory = ShardDirectory(shard_map)
        given = ledgers or {}
        self.by_name = {name: Shard(name, url, make_ledger, pool_size, given.get(name))
                        for name, url in shard_map.urls.items()}

    @classmethod
    def single(cls, ledger: Any, database_url: str, pool_size: int = 8) -> ApiShards:
        """One shard, ``main``, with the caller's Ledger: a deployment without shards."""
        return cls(ShardMap({"main": database_url}), lambda url: ledger, pool_size=pool_size,
                   ledgers={"main": ledger})

    @property
    def all(self) -> list[Shard]:
        return list(self.by_name.values())

    @property
    def home(self) -> Shard:
        """The directory shard: operator users and the directory of tenants and piles (docs/shards.md)."""
        return self.all[0]

    def shard(self, name: str) -> Shard:
        self.map.url(name)  # UnknownShard
        return self.by_name[name]

    def of_tenant(self, tenant_id: UUID) -> Shard:
        """The tenant's shard (NotFound for a tenant never placed)."""
        return self.by_name[self.directory.shard_of_tenant(tenant_id)]

    def open(self) -> None:
        for shard in self.all:
            shard.open()

    async def open_async(self) -> None:
        for shard in self.all:
            await shard.apool.open(wait=True)

    async def close_async(self) -> None:
        for shard in self.all:
            await shard.apool.close()

    def close(self) -> None:
        for shard in self.all:
            shard.close()

    # ---- placing ---------------------------------------------------------------------------------
    def create_tenant(self, name: str, author: str, shard: str | None = None) -> tuple[UUID, str]:
        """Create a tenant on ``shard`` (or the least-loaded one) and record it in the directory.

        The tenant is created first, then placed: a crash between the two leaves a tenant nobody
        routes to (``chargeledger shards place`` records it), never a placement pointing at nothing."""
        chosen = self.shard(shard).name if shard else self.directory.least_loaded()
        tenant_id = self.by_name[chosen].ledger.create_tenant(name, author)
        self.directory.place(tenant_id, chosen, author)
        return tenant_id, chosen

    def register_pile(self, tenant_id: UUID, station_id: UUID, pile_no: str, kind: str, gun_count: int,
                      author: str) -> UUID:
        """Register a pile on its tenant's shard, its number first claimed platform-wide in the directory."""
        shard = self.of_tenant(tenant_id)
        claimed = self.directory.claim_pile(pile_no, tenant_id)
        try:
            return shard.ledger.register_pile(station_id, pile_no, kind, gun_count, author)  # type: ignore[no-any-return]
        except BaseException:
            if claimed:
                self.directory.release_pile(pile_no, tenant_id)
            raise


# ---- a request's shard ---------------------------------------------------------------------------
def shards(request: Request) -> ApiShards:
    return request.app.state.shards  # type: ignore[no-any-return]


async def route(request: Request, tenant_id: UUID | None) -> None:
    """Set the request's shards from the speaker's tenant (None, a platform admin: every shard). Only a
    tenant's first request in this process looks it up (in a thread); placements never change."""
    all_shards = shards(request)
    if tenant_id is None:
        request.state.shards = all_shards.all
        return
    if all_shards.directory.known(tenant_id):
        request.state.shards = [all_shards.of_tenant(tenant_id)]
    else:
        request.state.shards = [await run_in_threadpool(all_shards.of_tenant, tenant_id)]


def shards_of(request: Request) -> list[Shard]:
    """The shards this request may read: its tenant's, or every one for a platform admin."""
    routed = getattr(request.state, "shards", None)
    if routed is not None:
        return routed  # type: ignore[no-any-return]
    all_shards = shards(request)
    if all_shards.map.single:
        return all_shards.all
    raise RuntimeError(f"{request.url.path}: a request on a sharded deployment was not routed to a shard")


def shard_of(request: Request) -> Shard:
    """The request's one shard; a platform admin on several shards must act within a tenant."""
    found = shards_of(request)
    if len(found) != 1:
        raise ApiError(409, "tenant_required", "the tenants are on several shards: act within one tenant "
                       "(a tenant admin's token, or the tenant's own endpoint)")
    return found[0]


def ledger_of(request: Request) -> Any:
    return shard_of(request).ledger


def pool_of(request: Request) -> ConnectionPool:
    return shard_of(request).pool


def apool_of(request: Request) -> AsyncConnectionPool:
    return shard_of(request).apool


def find_on_shards(request: Request, read: Callable[[Any], Any]) -> Any:
    """``read(ledger)`` on the request's shards in turn: the first that finds it (a platform admin's
    look-up of one station, pile, order or tariff); NotFound from the last if none does."""
    from domain.errors import NotFound

    found = shards_of(request)
    for i, shard in enumerate(found):
        try:
            result = read(shard.ledger)
        except NotFound:
            if i == len(found) - 1:
                raise
            continue
        if len(found) > 1:
            request.state.shards = [shard]  # what follows in this request acts on the shard it was found on
        return result
    raise NotFound("nothing to look in")
