"""Tenant shards: the shard map from configuration, and the directory of which tenant and pile live where.

A shard is a complete ledger database (the same schema as a single-database deployment); a tenant
lives on exactly one, with its stations, piles, tariffs, wallets and sessions, so every command and
every start (one transaction on a wallet and a session) stays inside one database (docs/shards.md).

* :class:`ShardMap` reads ``CHARGELEDGER_SHARDS`` (``s1=<url>,s2=<url>``). Unset, there is one shard,
  ``main``, at ``DATABASE_URL``: a single-database deployment, unchanged, with no directory at all.
* :class:`ShardDirectory` is two tables on the map's first shard (the *directory shard*):
  ``shard_tenants`` (tenant -> shard) and ``shard_piles`` (pile number -> tenant, shard). A tenant is
  placed once, by name or on the least-loaded shard, and never moves: a placement is an insert that
  refuses to change an existing row. Lookups are cached for the life of the process (a placement never
  changes), unknown piles for :data:`UNKNOWN_TTL` seconds only (a pile registered a moment later must be
  found). :meth:`ShardDirectory.shards_of_piles` answers a batch of misses in one query: what a gateway
  calls on a reconnect storm.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg

from adapters.postgres.env import create_tables
from domain.errors import AlreadyExists, DomainError, NotFound

MAIN = "main"  # the one shard of a deployment without CHARGELEDGER_SHARDS (its NATS subjects unqualified)
NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")  # lower case: never an Application's name (subjects, docs/shards.md)
UNKNOWN_TTL = 5.0  # seconds an unknown pile number is remembered as unknown

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS shard_tenants (
    tenant_id uuid PRIMARY KEY, shard text NOT NULL, placed_by text NOT NULL,
    placed_at timestamptz NOT NULL DEFAULT now())""",
    """CREATE TABLE IF NOT EXISTS shard_piles (
    pile_no text PRIMARY KEY, tenant_id uuid NOT NULL REFERENCES shard_tenants, shard text NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now())""",
    "CREATE INDEX IF NOT EXISTS shard_piles_shard ON shard_piles (shard)",
)


class ShardConfigError(ValueError):
    """``CHARGELEDGER_SHARDS`` (or a ``--shard``) names no usable shard: said at start, never guessed."""


class UnknownShard(DomainError):
    code = "unknown_shard"


class TenantPlaced(DomainError):
    """A placement that would move a tenant: a tenant never moves silently."""

    code = "tenant_placed"


@dataclass(frozen=True)
class ShardMap:
    """Shard name -> database URL, in configuration order; the first holds the directory."""

    urls: Mapping[str, str]

    @classmethod
    def parse(cls, text: str) -> ShardMap:
        """``s1=postgresql://…,s2=postgresql://…`` (a URL may itself hold commas: only ``,name=`` splits)."""
        urls: dict[str, str] = {}
        for part in re.split(r",(?=\s*[a-z][a-z0-9_-]{0,31}=)", text.strip()):
            name, sep, url = part.strip().partition("=")
            if not sep or not NAME.match(name) or not url.strip():
                raise ShardConfigError(f"CHARGELEDGER_SHARDS: expected name=<postgres url>, got {part.strip()[:40]!r} "
                                       "(names: a lower-case letter, then letters, digits, - or _)")
            if name in urls:
                raise ShardConfigError(f"CHARGELEDGER_SHARDS: shard {name} named twice")
            urls[name] = url.strip()
        return cls(urls)

    @classmethod
    def from_env(cls, environ: Mapping[str, str], database_url: str | None = None) -> ShardMap:
        """The configured shards, else one shard ``main`` at ``database_url`` (or ``DATABASE_URL``)."""
        text = environ.get("CHARGELEDGER_SHARDS", "").strip()
        if text:
            return cls.parse(text)
        url = database_url or environ.get("DATABASE_URL", "")
        if not url:
            raise ShardConfigError("no DATABASE_URL and no CHARGELEDGER_SHARDS")
        return cls({MAIN: url})

    @property
    def names(self) -> list[str]:
        return list(self.urls)

    @property
    def single(self) -> bool:
        return len(self.urls) == 1

    @property
    def directory_url(self) -> str:
        return next(iter(self.urls.values()))

    def url(self, name: str) -> str:
        if name not in self.urls:
            raise UnknownShard(f"no shard {name!r}; the shards are {', '.join(self.urls)}", shard=name)
        return self.urls[name]


class ShardDirectory:
    """Which shard each tenant and pile is on (tables on the directory shard; one shard: no tables)."""

    def __init__(self, shard_map: ShardMap) -> None:
        self.map = shard_map
        self._tenants: dict[UUID, str] = {}
        self._piles: dict[str, tuple[UUID, str]] = {}
        self._unknown: dict[str, float] = {}  # pile number -> when it was found unknown
        self._lock = threading.Lock()
        if not shard_map.single:
            with self._connect() as conn:
                create_tables(conn, *SCHEMA)

    def _connect(self) -> Any:
        return psycopg.connect(self.map.directory_url, autocommit=True, connect_timeout=10)

    # ---- tenants -------------------------------------------------------------------------------------
    def least_loaded(self) -> str:
        """The shard with the fewest piles registered, then the fewest tenants, then the first in the map."""
        if self.map.single:
            return self.map.names[0]
        with self._connect() as conn:
            piles = dict(conn.execute("SELECT shard, count(*) FROM shard_piles GROUP BY shard").fetchall())
            tenants = dict(conn.execute("SELECT shard, count(*) FROM shard_tenants GROUP BY shard").fetchall())
        order = {name: i for i, name in enumerate(self.map.names)}
        return min(self.map.names, key=lambda s: (piles.get(s, 0), tenants.get(s, 0), order[s]))

    def place(self, tenant_id: UUID, shard: str, placed_by: str) -> str:
        """Record ``tenant_id`` on ``shard``; the same placement again is a no-op, another one refused."""
        self.map.url(shard)
        if self.map.single:
            return shard
        with self._connect() as conn:
            conn.execute("INSERT INTO shard_tenants (tenant_id, shard, placed_by) VALUES (%s, %s, %s) "
                         "ON CONFLICT (tenant_id) DO NOTHING", (tenant_id, shard, placed_by))
            (placed,) = conn.execute("SELECT shard FROM shard_tenants WHERE tenant_id = %s", (tenant_id,)).fetchone()
        if placed != shard:
            raise TenantPlaced(f"tenant {tenant_id} is on shard {placed}; tenants never move", tenant_id=str(tenant_id),
                               shard=placed)
        self._tenants[tenant_id] = shard
        return shard

    def known(self, tenant_id: UUID) -> bool:
        """Whether :meth:`shard_of_tenant` answers without a query."""
        return self.map.single or tenant_id in self._tenants

    def shard_of_tenant(self, tenant_id: UUID) -> str:
        """The tenant's shard; NotFound if it was never placed (never a guess)."""
        if self.map.single:
            return self.map.names[0]
        shard = self._tenants.get(tenant_id)
        if shard is None:
            with self._connect() as conn:
                row = conn.execute("SELECT shard FROM shard_tenants WHERE tenant_id = %s", (tenant_id,)).fetchone()
            if row is None:
                raise NotFound(f"no tenant {tenant_id}", id=str(tenant_id))
            shard = self._tenants.setdefault(tenant_id, row[0])
        return shard

    def tenants(self) -> dict[UUID, str]:
        """Every placed tenant and its shard (empty with one shard: every tenant is on it)."""
        if self.map.single:
            return {}
        with self._connect() as conn:
            return dict(conn.execute("SELECT tenant_id, shard FROM shard_tenants").fetchall())

    # ---- piles ---------------------------------------------------------------------------------------
    def claim_pile(self, pile_no: str, tenant_id: UUID) -> bool:
        """Reserve ``pile_no`` for ``tenant_id`` on its shard before it is registered there: True if this
        call made the row (the caller releases it should the registration fail), False if the tenant
        had it already; AlreadyExists if another tenant has it (a pile number is unique platform-wide)."""
        if self.map.single:
            return False
        shard = self.shard_of_tenant(tenant_id)
        with self._connect() as conn:
            made = conn.execute("INSERT INTO shard_piles (pile_no, tenant_id, shard) VALUES (%s, %s, %s) "
                                "ON CONFLICT (pile_no) DO NOTHING", (pile_no, tenant_id, shard)).rowcount == 1
            (owner,) = conn.execute("SELECT tenant_id FROM shard_piles WHERE pile_no = %s", (pile_no,)).fetchone()
        if owner != tenant_id:
            raise AlreadyExists(f"pile {pile_no} is already registered", pile_no=pile_no)
        self._unknown.pop(pile_no, None)
        return made

    def release_pile(self, pile_no: str, tenant_id: UUID) -> None:
        """Undo a :meth:`claim_pile` whose registration failed."""
        with self._connect() as conn:
            conn.execute("DELETE FROM shard_piles WHERE pile_no = %s AND tenant_id = %s", (pile_no, tenant_id))
        self._piles.pop(pile_no, None)

    def shard_of_pile(self, pile_no: str) -> str | None:
        """The shard a pile is registered on (None: no such pile): what a gateway routes a login by."""
        return self.shards_of_piles([pile_no]).get(pile_no)

    def shards_of_piles(self, pile_nos: Iterable[str]) -> dict[str, str]:
        """pile number -> shard for every known pile of ``pile_nos``: cached ones at once, the misses in
        one query (a reconnect storm's batch of logins costs one round trip)."""
        wanted = list(dict.fromkeys(pile_nos))
        if self.map.single:
            return dict.fromkeys(wanted, self.map.names[0])
        now = time.monotonic()
        found = {p: self._piles[p][1] for p in wanted if p in self._piles}
        misses = [p for p in wanted if p not in found and now - self._unknown.get(p, -UNKNOWN_TTL) >= UNKNOWN_TTL]
        if misses:
            with self._connect() as conn:
                rows = conn.execute("SELECT pile_no, tenant_id, shard FROM shard_piles WHERE pile_no = ANY(%s)",
                                    (misses,)).fetchall()
            with self._lock:
                for pile_no, tenant_id, shard in rows:
                    self._piles[pile_no] = (tenant_id, shard)
                    found[pile_no] = shard
                for pile_no in set(misses) - found.keys():
                    self._unknown[pile_no] = now
        return found

    def load(self) -> dict[str, int]:
        """Piles and tenants per shard (``chargeledger shards list``)."""
        counts = {name: {"tenants": 0, "piles": 0} for name in self.map.names}
        if self.map.single:
            return {f"{name}.{k}": v for name, c in counts.items() for k, v in c.items()}
        with self._connect() as conn:
            for kind, table in (("tenants", "shard_tenants"), ("piles", "shard_piles")):
                for shard, n in conn.execute(f"SELECT shard, count(*) FROM {table} GROUP BY shard"):  # noqa: S608
                    counts.setdefault(shard, {"tenants": 0, "piles": 0})[kind] = n
        return {f"{name}.{k}": v for name, c in counts.items() for k, v in c.items()}
