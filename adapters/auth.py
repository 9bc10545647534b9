"""Who is calling: operator credentials, password hashing, and signed expiring tokens.

* Passwords are hashed with Argon2id (``argon2-cffi``, its default parameters); the hash string
  carries its own salt and parameters, and an old hash is upgraded on the next good login.
* Tokens are JWTs signed with HMAC-SHA256 (``PyJWT``) under a key from the settings
  (``CHARGELEDGER_TOKEN_KEY``, at least 32 bytes; never in the code). Claims: ``sub`` (user),
  ``role``, ``tenant`` (absent for a platform admin), ``stations`` (an agent's scope), ``iat``,
  ``exp``, ``iss``. The tenant and the station scope come from these claims only.
* ``role`` says which API a token is for. The operator API accepts ``platform_admin``,
  ``tenant_admin`` and ``agent``; a token with any other role (``driver``, issued by the driver API
  with the same signer) is refused there, and vice versa.

Credentials live in a table (``operator_users``), not in the event store: a password hash is a
secret that must be replaceable and erasable, and an append-only store keeps every old hash
forever (docs/operator-api.md).
"""

from __future__ import annotations

import argparse
import getpass
import os
import secrets
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from psycopg.rows import dict_row

from adapters.postgres import create_tables

PLATFORM_ADMIN, TENANT_ADMIN, AGENT, DRIVER = "platform_admin", "tenant_admin", "agent", "driver"
OPERATOR_ROLES = (PLATFORM_ADMIN, TENANT_ADMIN, AGENT)
ISSUER = "chargeledger"
ALGORITHM = "HS256"
MIN_KEY_BYTES = 32
CREDENTIALS_DDL = """
CREATE TABLE IF NOT EXISTS operator_users (
    username text PRIMARY KEY, password_hash text NOT NULL, role text NOT NULL,
    tenant_id uuid, stations uuid[] NOT NULL DEFAULT '{}', created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(), disabled boolean NOT NULL DEFAULT false,
    CHECK (role IN ('platform_admin', 'tenant_admin', 'agent')),
    CHECK ((role = 'platform_admin') = (tenant_id IS NULL)))"""

_hasher = PasswordHasher()


class AuthError(Exception):
    """Refused credentials or token; ``code`` is stable, ``status`` the HTTP status."""

    def __init__(self, code: str, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


@dataclass(frozen=True)
class Principal:
    """The verified caller. ``tenant_id`` None means platform-wide; ``stations`` None means all of the tenant's."""

    subject: str
    role: str
    tenant_id: UUID | None = None
    stations: frozenset[UUID] | None = None

    def claims(self) -> dict[str, Any]:
        claims: dict[str, Any] = {"sub": self.subject, "role": self.role}
        if self.tenant_id is not None:
            claims["tenant"] = str(self.tenant_id)
        if self.stations is not None:
            claims["stations"] = sorted(str(s) for s in self.stations)
        return claims

    @classmethod
    def from_claims(cls, claims: dict[str, Any]) -> Principal:
        try:
            tenant = UUID(claims["tenant"]) if claims.get("tenant") else None
            stations = frozenset(UUID(s) for s in claims["stations"]) if "stations" in claims else None
            return cls(str(claims["sub"]), str(claims["role"]), tenant, stations)
        except (KeyError, TypeError, ValueError):
            raise AuthError("invalid_token", "the token's claims are malformed") from None


@dataclass(frozen=True)
class AuthSettings:
    token_key: bytes
    token_ttl: timedelta = timedelta(hours=8)

    def __post_init__(self) -> None:
        if len(self.token_key) < MIN_KEY_BYTES:
            raise ValueError(f"the token key must be at least {MIN_KEY_BYTES} bytes")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> AuthSettings:
        """``CHARGELEDGER_TOKEN_KEY`` (required), ``CHARGELEDGER_TOKEN_TTL`` seconds (default 8 h)."""
        environ = dict(os.environ if environ is None else environ)
        key = environ.get("CHARGELEDGER_TOKEN_KEY", "")
        if not key:
            raise ValueError("set CHARGELEDGER_TOKEN_KEY to a random secret of at least 32 bytes "
                             "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`)")
        return cls(key.encode(), timedelta(seconds=int(environ.get("CHARGELEDGER_TOKEN_TTL", 8 * 3600))))

    @classmethod
    def generate(cls) -> AuthSettings:
        """A fresh random key (tests, a one-off local run): tokens die with the process."""
        return cls(secrets.token_bytes(48))


class TokenSigner:
    def __init__(self, settings: AuthSettings) -> None:
        self.settings = settings

    def issue(self, principal: Principal, now: datetime | None = None) -> tuple[str, datetime]:
        now = now or datetime.now(timezone.utc)
        expires = now + self.settings.token_ttl
        claims = {**principal.claims(), "iss": ISSUER, "iat": now, "exp": expires}
        return jwt.encode(claims, self.settings.token_key, algorithm=ALGORITHM), expires

    def verify(self, token: str, roles: tuple[str, ...]) -> Principal:
        """The principal of a valid, unexpired token whose role is one of ``roles``."""
        try:
            claims = jwt.decode(token, self.settings.token_key, algorithms=[ALGORITHM], issuer=ISSUER,
                                options={"require": ["exp", "iat", "iss", "sub", "role"]}, leeway=5)
        except jwt.ExpiredSignatureError:
            raise AuthError("token_expired", "the token has expired; sign in again") from None
        except jwt.PyJWTError:
            raise AuthError("invalid_token", "the token is not valid") from None
        principal = Principal.from_claims(claims)
        if principal.role not in roles:
            raise AuthError("wrong_token_role", f"a {principal.role} token is not accepted here", status=403)
        if principal.role != PLATFORM_ADMIN and principal.tenant_id is None:
            raise AuthError("invalid_token", "the token has no tenant")
        return principal


# ---- passwords ------------------------------------------------------------------------------------
def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))  # spent on unknown users, so timing does not tell


class CredentialStore:
    """Operator users in ``operator_users``, over a psycopg connection pool."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        with pool.connection() as conn:
            create_tables(conn, CREDENTIALS_DDL)

    def create_user(self, username: str, password: str, role: str, created_by: str,
                    tenant_id: UUID | None = None, stations: list[UUID] | None = None) -> None:
        if role not in OPERATOR_ROLES:
            raise ValueError(f"role is one of {', '.join(OPERATOR_ROLES)}")
        if len(password) < 10:
            raise ValueError("a password has at least 10 characters")
        with self.pool.connection() as conn:
            conn.execute("INSERT INTO operator_users (username, password_hash, role, tenant_id, stations, created_by) "
                         "VALUES (%s, %s, %s, %s, %s, %s)",
                         (username, hash_password(password), role, tenant_id, list(stations or []), created_by))

    def authenticate(self, username: str, password: str) -> Principal:
        with self.pool.connection() as conn:
            row = conn.cursor(row_factory=dict_row).execute(
                "SELECT * FROM operator_users WHERE username = %s AND NOT disabled", (username,)).fetchone()
        if row is None:
            verify_password(_DUMMY_HASH, password)
            raise AuthError("bad_credentials", "unknown user or wrong password")
        if not verify_password(row["password_hash"], password):
            raise AuthError("bad_credentials", "unknown user or wrong password")
        if _hasher.check_needs_rehash(row["password_hash"]):
            with self.pool.connection() as conn:
                conn.execute("UPDATE operator_users SET password_hash = %s WHERE username = %s",
                             (hash_password(password), username))
        stations = frozenset(row["stations"]) if row["role"] == AGENT else None
        return Principal(username, row["role"], row["tenant_id"], stations)


# ---- CLI: chargeledger operators add ... (the first platform admin has to come from somewhere) ----
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("username")
    parser.add_argument("--role", choices=OPERATOR_ROLES, default=PLATFORM_ADMIN)
    parser.add_argument("--tenant", type=UUID, help="tenant id (tenant admins and agents)")
    parser.add_argument("--station", type=UUID, action="append", default=[], help="an agent's station (repeatable)")


def run(args: argparse.Namespace) -> int:
    """Create an operator user in ``args.database_url``; the password is read from stdin or a prompt."""
    from psycopg_pool import ConnectionPool

    password = sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else getpass.getpass("password: ")
    with ConnectionPool(args.database_url, min_size=1, max_size=1, open=True) as pool:
        try:
            CredentialStore(pool).create_user(args.username, password, args.role, "cli", args.tenant, args.station)
        except ValueError as exc:
            print(exc, file=sys.stderr)
            return 2
    print(f"created {args.role} {args.username}")
    return 0
