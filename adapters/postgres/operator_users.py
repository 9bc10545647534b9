"""The ``operator_users`` table: who may sign in to the operator API, with which role and scope.

A row is the truth for every request (adapters/api/operator/accounts.py reads it by primary key for
each token it accepts): role, tenant, an agent's stations, ``disabled``, and ``token_generation``,
which a token must carry to be accepted. Logout, a password change or reset, and disabling a user
add one to the generation, so every token issued before stops working at once; enabling a user
again does not bring old tokens back.

Users are rows, not aggregates: a password hash is a secret that must be replaceable and
erasable, and the append-only event store would keep every hash forever (docs/operator-api.md).
Async over a psycopg ``AsyncConnectionPool``: the API's request path never hops to a thread for it;
the CLI runs the same code under ``asyncio.run``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from psycopg.rows import dict_row

from adapters.postgres.env import SCHEMA_LOCK

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS operator_users (
    username text PRIMARY KEY, password_hash text NOT NULL, role text NOT NULL,
    tenant_id uuid, stations uuid[] NOT NULL DEFAULT '{}', created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(), disabled boolean NOT NULL DEFAULT false,
    CHECK (role IN ('platform_admin', 'tenant_admin', 'agent')),
    CHECK ((role = 'platform_admin') = (tenant_id IS NULL)))""",
    "ALTER TABLE operator_users ADD COLUMN IF NOT EXISTS token_generation bigint NOT NULL DEFAULT 0",
)
COLUMNS = "username, role, tenant_id, stations, disabled, token_generation, password_hash"


@dataclass(frozen=True)
class OperatorUser:
    username: str
    role: str
    tenant_id: UUID | None
    stations: frozenset[UUID]
    disabled: bool
    generation: int
    password_hash: str = field(repr=False)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> OperatorUser:
        return cls(row["username"], row["role"], row["tenant_id"], frozenset(row["stations"]), row["disabled"],
                   row["token_generation"], row["password_hash"])

    def public(self) -> dict[str, Any]:
        """What an admin may see of a user (never the hash)."""
        return {"username": self.username, "role": self.role,
                "tenant_id": None if self.tenant_id is None else str(self.tenant_id),
                "stations": sorted(str(s) for s in self.stations), "disabled": self.disabled}


class OperatorUsers:
    def __init__(self, pool: Any) -> None:
        self.pool = pool  # psycopg_pool.AsyncConnectionPool, opened by the owner

    async def create_schema(self) -> None:
        """Create or upgrade the table; one process at a time (roles may start together)."""
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            for statement in SCHEMA:
                await conn.execute(statement)

    async def _one(self, sql: str, params: tuple[Any, ...]) -> OperatorUser | None:
        async with self.pool.connection() as conn:
            cursor = await conn.cursor(row_factory=dict_row).execute(sql, params)
            row = await cursor.fetchone()
        return None if row is None else OperatorUser.from_row(row)

    async def find(self, username: str) -> OperatorUser | None:
        """The user's current row: one primary-key lookup (what each authenticated request costs)."""
        return await self._one(f"SELECT {COLUMNS} FROM operator_users WHERE username = %s", (username,))

    async def add(self, username: str, password_hash: str, role: str, created_by: str,
                  tenant_id: UUID | None = None, stations: Iterable[UUID] = ()) -> bool:
        """False if the name is taken (in any tenant)."""
        added = await self._one(
            "INSERT INTO operator_users (username, password_hash, role, tenant_id, stations, created_by) "
            f"VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (username) DO NOTHING RETURNING {COLUMNS}",
            (username, password_hash, role, tenant_id, list(stations), created_by))
        return added is not None

    async def set_disabled(self, username: str, disabled: bool) -> OperatorUser | None:
        """Disabling also revokes the user's tokens (enabling again does not revive them)."""
        return await self._one(
            "UPDATE operator_users SET disabled = %s, token_generation = token_generation + %s "
            f"WHERE username = %s RETURNING {COLUMNS}", (disabled, 1 if disabled else 0, username))

    async def set_password(self, username: str, password_hash: str) -> OperatorUser | None:
        """A new password revokes every token issued before it."""
        return await self._one(
            "UPDATE operator_users SET password_hash = %s, token_generation = token_generation + 1 "
            f"WHERE username = %s RETURNING {COLUMNS}", (password_hash, username))

    async def revoke_tokens(self, username: str) -> OperatorUser | None:
        return await self._one(
            f"UPDATE operator_users SET token_generation = token_generation + 1 WHERE username = %s RETURNING {COLUMNS}",
            (username,))

    async def set_stations(self, username: str, stations: Iterable[UUID]) -> OperatorUser | None:
        """An agent's scope; read per request, so the agent's current tokens see it at once."""
        return await self._one(f"UPDATE operator_users SET stations = %s WHERE username = %s RETURNING {COLUMNS}",
                               (list(stations), username))

    async def rehash(self, username: str, old_hash: str, new_hash: str) -> None:
        """Upgrade a hash made with older parameters (same password: tokens stay valid)."""
        async with self.pool.connection() as conn:
            await conn.execute("UPDATE operator_users SET password_hash = %s WHERE username = %s AND password_hash = %s",
                               (new_hash, username, old_hash))

    async def listing(self, tenant_id: UUID | None) -> list[OperatorUser]:
        """Every user (``tenant_id`` None) or one tenant's, by name."""
        where, params = ("", ()) if tenant_id is None else ("WHERE tenant_id = %s", (tenant_id,))
        async with self.pool.connection() as conn:
            cursor = await conn.cursor(row_factory=dict_row).execute(
                f"SELECT {COLUMNS} FROM operator_users {where} ORDER BY username", params)  # noqa: S608
            return [OperatorUser.from_row(row) for row in await cursor.fetchall()]
