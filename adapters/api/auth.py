"""Who is calling: principals, password hashing, user names, signed expiring tokens.

* Passwords are hashed with Argon2id (``argon2-cffi``, its default parameters); the hash string
  carries its own salt and parameters, and an old hash is upgraded on the next good login.
* Tokens are JWTs signed with HMAC-SHA256 (``PyJWT``) under a key from the settings
  (``CHARGELEDGER_TOKEN_KEY``, at least 32 bytes; never in the code). Claims: ``sub`` (user),
  ``role``, ``tenant`` (absent for a platform admin), ``iat``, ``exp``, ``iss``; a driver's tenant
  comes from these claims. An operator token also carries ``gen``, its user's token generation:
  the operator API checks every request against the user's current row (adapters/postgres/operator_users.py),
  so role, tenant, an agent's stations and "disabled" are the user's as they are now, and a token
  whose ``gen`` is not the user's current one (logout, password change, disable) is refused.
* ``role`` says which API a token is for. The operator API accepts ``platform_admin``,
  ``tenant_admin`` and ``agent``; a token with any other role (``driver``, issued by the driver API
  with the same signer) is refused there, and vice versa.

Credentials live in a table (``operator_users``), not in the event store: a password hash is a
secret that must be replaceable and erasable, and an append-only store keeps every old hash
forever (docs/operator-api.md).
"""

from __future__ import annotations

import os
import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from domain.clock import utcnow

PLATFORM_ADMIN, TENANT_ADMIN, AGENT, DRIVER = "platform_admin", "tenant_admin", "agent", "driver"
OPERATOR_ROLES = (PLATFORM_ADMIN, TENANT_ADMIN, AGENT)
ISSUER = "chargeledger"
ALGORITHM = "HS256"
MIN_KEY_BYTES = 32
USERNAME_CHARS = r"[A-Za-z0-9._@+-]{3,64}"  # ASCII only: no look-alikes, no bidi or invisible characters
USERNAME_PATTERN = f"^{USERNAME_CHARS}$"
USERNAME_RULE = "3 to 64 of the characters A-Z a-z 0-9 . _ - @ +"
MIN_PASSWORD, MAX_PASSWORD = 10, 500
UNPRINTABLE = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}  # controls, format (bidi, zero-width), unassigned


class AuthError(Exception):
    """Refused credentials or token; ``code`` is stable, ``status`` the HTTP status."""

    def __init__(self, code: str, message: str, status: int = 401, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.status, self.retry_after = code, message, status, retry_after


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

    def issue(self, principal: Principal, now: datetime | None = None,
              generation: int | None = None) -> tuple[str, datetime]:
        """A token for ``principal``; ``generation`` (operators) is the user's current token generation."""
        now = now or utcnow()
        expires = now + self.settings.token_ttl
        claims = {**principal.claims(), "iss": ISSUER, "iat": now, "exp": expires}
        if generation is not None:
            claims["gen"] = generation
        return jwt.encode(claims, self.settings.token_key, algorithm=ALGORITHM), expires

    def decode(self, token: str, roles: tuple[str, ...]) -> dict[str, Any]:
        """The claims of a valid, unexpired token whose role is one of ``roles``."""
        try:
            claims = jwt.decode(token, self.settings.token_key, algorithms=[ALGORITHM], issuer=ISSUER,
                                options={"require": ["exp", "iat", "iss", "sub", "role"]}, leeway=5)
        except jwt.ExpiredSignatureError:
            raise AuthError("token_expired", "the token has expired; sign in again") from None
        except jwt.PyJWTError:
            raise AuthError("invalid_token", "the token is not valid") from None
        if claims["role"] not in roles:
            raise AuthError("wrong_token_role", f"a {claims['role']} token is not accepted here", status=403)
        return dict(claims)

    def verify(self, token: str, roles: tuple[str, ...]) -> Principal:
        """The principal of a valid, unexpired token whose role is one of ``roles``, from its claims alone."""
        principal = Principal.from_claims(self.decode(token, roles))
        if principal.role != PLATFORM_ADMIN and principal.tenant_id is None:
            raise AuthError("invalid_token", "the token has no tenant")
        return principal


# ---- user names and passwords ---------------------------------------------------------------------
def check_username(name: str) -> str:
    """``name`` if it is a safe user name (USERNAME_RULE), else ValueError."""
    if not re.fullmatch(USERNAME_CHARS, name):
        raise ValueError(f"a user name is {USERNAME_RULE}")
    return name


def check_printable(text: str) -> str:
    """``text`` if it has no control, format (bidi, zero-width) or unassigned characters, else ValueError."""
    if any(unicodedata.category(c) in UNPRINTABLE for c in text):
        raise ValueError("control, format and unassigned characters are not allowed")
    return text


def check_password(password: str) -> str:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise ValueError(f"a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return password


def hash_password(password: str, hasher: Any = None) -> str:
    """Argon2id with argon2-cffi's defaults (64 MiB, 3 passes, 4 lanes): run it off the event loop."""
    return str((hasher or PasswordHasher()).hash(password))


def password_matches(stored_hash: str, password: str, hasher: Any = None) -> bool:
    try:
        return bool((hasher or PasswordHasher()).verify(stored_hash, password))
    except (VerificationError, InvalidHashError):
        return False
