"""Operator tokens for tests: a token is only good while its user exists, is enabled and has not
logged out (docs/operator-api.md), so a test that needs "a tenant admin of A" writes that user
into ``operator_users`` first, as ``chargeledger operators add`` would, then signs its token.

The user row is written directly (one Argon2 hash computed once per run, not per user) so a test
can make many principals cheaply. Each distinct (role, tenant, stations) gets its own user name
unless ``subject`` is given; naming the same subject again updates that user's role and scope.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from functools import cache
from typing import Any
from uuid import UUID

from adapters.api.auth import AGENT, PLATFORM_ADMIN, Principal, hash_password

PASSWORD = "operator test password"


@cache
def password_hash() -> str:
    return hash_password(PASSWORD)


def default_subject(role: str, tenant_id: UUID | None, stations: Iterable[UUID] | None) -> str:
    scope = f"{tenant_id}:{sorted(str(s) for s in stations or [])}"
    return f"{role}.{hashlib.sha256(scope.encode()).hexdigest()[:10]}@test"


def operator_token(app: Any, role: str, tenant_id: UUID | None = None, stations: Iterable[UUID] | None = None,
                   subject: str | None = None) -> str:
    """A valid operator token of ``app`` for this principal (the user is created or updated)."""
    stations = list(stations or []) if role == AGENT else []
    tenant_id = None if role == PLATFORM_ADMIN else tenant_id
    subject = subject or default_subject(role, tenant_id, stations)
    with app.state.pool.connection() as conn:
        generation = conn.execute(
            "INSERT INTO operator_users (username, password_hash, role, tenant_id, stations, created_by) "
            "VALUES (%s, %s, %s, %s, %s, 'test') ON CONFLICT (username) DO UPDATE SET role = excluded.role, "
            "tenant_id = excluded.tenant_id, stations = excluded.stations, disabled = false "
            "RETURNING token_generation",
            (subject, password_hash(), role, tenant_id, stations)).fetchone()[0]
    return str(app.state.signer.issue(Principal(subject, role, tenant_id), generation=generation)[0])


def operator_headers(app: Any, role: str, tenant_id: UUID | None = None, stations: Iterable[UUID] | None = None,
                     subject: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {operator_token(app, role, tenant_id, stations, subject)}"}
