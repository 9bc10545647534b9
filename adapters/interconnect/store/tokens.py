"""Bearer tokens: those we issue peers (``tcec_tokens_issued``) and those we hold to call them
(``tcec_tokens_held``).

**Issued** (our ``query_token``): 32 random bytes, URL-safe Base64. Looked up by SHA-256 (the
token is random, so a fast hash is enough); the token itself is kept only sealed, so that asking
again (:meth:`IssuedTokens.issue`) returns **the same** token while less than half its lifetime has
passed, with the seconds it has left (never extended, note A.4). Past half its lifetime, a new token
is issued and the old one stays valid until it expires, so calls in flight do not fail. One issue at
a time per peer (the peer's row is locked), so two workers asked at once give the same answer.

**Held** (our client): one token per peer, shared by every process through the table. It is used
until 80 % of its lifetime; then (or when the peer answered 4002 to it) one process refreshes it
while holding a transaction-scoped advisory lock on the peer, and the others, waiting on the lock,
find the new token when they get it (:meth:`HeldTokens.token`).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from adapters.payments.config import SecretBox

REFRESH_AT = 0.8  # of a held token's lifetime
REUSE_FOR = 0.5  # of an issued token's lifetime: asked again before that, the same token is returned
HELD_LOCK = 7_402_113  # advisory lock class of held-token refreshes (the peer's hash is the second key)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def _context(peer_id: UUID, which: str) -> str:
    return f"chargeledger:tcec-token:{which}:{peer_id}"


class IssuedTokens:
    def __init__(self, pool: Any, box: SecretBox) -> None:
        self.pool, self.box = pool, box

    def issue(self, peer_id: UUID, lifetime: int, now: datetime) -> tuple[str, int]:
        """(token, seconds it has left) for the peer: the current one if young enough, else a new one."""
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("SELECT 1 FROM tcec_peers WHERE peer_id = %s FOR UPDATE", (peer_id,))
            conn.execute("DELETE FROM tcec_tokens_issued WHERE peer_id = %s AND expires_at <= %s", (peer_id, now))
            row = conn.execute(
                "SELECT sealed, expires_at FROM tcec_tokens_issued WHERE peer_id = %s "
                "AND issued_at + (expires_at - issued_at) * %s > %s ORDER BY expires_at DESC LIMIT 1",
                (peer_id, REUSE_FOR, now)).fetchone()
            if row is not None:
                token = self.box.open(row[0], _context(peer_id, "issued")).decode()
                return token, int((row[1] - now).total_seconds())
            token = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
            conn.execute("INSERT INTO tcec_tokens_issued (token_hash, peer_id, sealed, issued_at, expires_at) "
                         "VALUES (%s, %s, %s, %s, %s)",
                         (token_hash(token), peer_id, self.box.seal(token.encode(), _context(peer_id, "issued")),
                          now, now + timedelta(seconds=lifetime)))
            return token, lifetime

    def owner(self, token: str, now: datetime) -> UUID | None:
        """The peer a valid token belongs to (None: unknown or expired)."""
        if len(token) > 256:
            return None
        with self.pool.connection() as conn:
            row = conn.execute("SELECT peer_id FROM tcec_tokens_issued WHERE token_hash = %s AND expires_at > %s",
                               (token_hash(token), now)).fetchone()
        return None if row is None else row[0]

    def count(self, peer_id: UUID) -> int:
        with self.pool.connection() as conn:
            return int(conn.execute("SELECT count(*) FROM tcec_tokens_issued WHERE peer_id = %s",
                                    (peer_id,)).fetchone()[0])


class HeldTokens:
    def __init__(self, pool: Any, box: SecretBox) -> None:
        self.pool, self.box = pool, box

    def token(self, peer_id: UUID, fetch: Callable[[], tuple[str, int]], now: Callable[[], datetime],
              stale: str | None = None) -> str:
        """A token to call the peer with: the shared one while fresh (and not ``stale``, the one the peer
        just refused), else one ``fetch`` gets (token, lifetime in s) while this process holds the lock."""
        with self.pool.connection() as conn:
            token = self._fresh(conn, peer_id, now(), stale)
        if token is not None:
            return token
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (HELD_LOCK, str(peer_id)))
            token = self._fresh(conn, peer_id, now(), stale)  # another process may have refreshed it meanwhile
            if token is not None:
                return token
            token, lifetime = fetch()
            obtained = now()
            conn.execute(
                "INSERT INTO tcec_tokens_held (peer_id, sealed, obtained_at, expires_at) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (peer_id) DO UPDATE SET sealed = excluded.sealed, obtained_at = excluded.obtained_at, "
                "expires_at = excluded.expires_at",
                (peer_id, self.box.seal(token.encode(), _context(peer_id, "held")), obtained,
                 obtained + timedelta(seconds=lifetime)))
            return token

    def _fresh(self, conn: Any, peer_id: UUID, now: datetime, stale: str | None) -> str | None:
        row = conn.execute("SELECT sealed, obtained_at, expires_at FROM tcec_tokens_held WHERE peer_id = %s",
                             (peer_id,)).fetchone()
        if row is None:
            return None
        sealed, obtained, expires = row
        if now >= obtained + (expires - obtained) * REFRESH_AT:
            return None
        token = self.box.open(sealed, _context(peer_id, "held")).decode()
        return None if token == stale else token

    def discard(self, peer_id: UUID, stale: str) -> None:
        """Forget the held token if it is still ``stale`` (a newer one another process stored stays)."""
        with self.pool.connection() as conn, conn.transaction():
            row = conn.execute("SELECT sealed FROM tcec_tokens_held WHERE peer_id = %s FOR UPDATE",
                               (peer_id,)).fetchone()
            if row is not None and self.box.open(row[0], _context(peer_id, "held")).decode() == stale:
                conn.execute("DELETE FROM tcec_tokens_held WHERE peer_id = %s", (peer_id,))
