"""What a sign-in may cost: throttles per client address and per user name, and a gate that runs
password hashes a few at a time on threads of their own.

Each Argon2id verification takes 64 MiB and ~0.2 s of a core. Unguarded, a flood of wrong passwords
fills the thread pool every other request shares and the memory with hashes (issue 10, finding 8:
240 requests 80 at a time took other tenants' requests to 11 s and the process to 2.5 GB). So:

* ``LoginThrottle``: every attempt counts as a failure when it starts (so 80 at once cannot all
  slip past a count that is only written when they fail); after ``free`` failures a key is locked
  for ``backoff_base`` seconds, doubling with each further failure up to ``backoff_max``. A locked
  key is refused at once with 429 ``too_many_attempts`` and ``Retry-After``, costing no hash. A
  success forgets the user name's failures and takes back its own count from the address. A key
  quiet for ``forget_after`` seconds starts afresh; each table keeps at most ``max_entries`` keys
  (the oldest are dropped first).
* ``HashGate``: at most ``hash_concurrency`` hashes run at once, on the gate's own executor (never
  the pool that serves other requests), and at most ``hash_waiting`` more wait; beyond that the
  answer is 503 ``login_busy`` with ``Retry-After`` at once. Memory for hashing is bounded by
  ``hash_concurrency`` x 64 MiB.

State is per process, in memory (docs/operations.md says what that means with several API workers).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher

from adapters.api.auth import AuthError, password_matches


@dataclass(frozen=True)
class LoginLimits:
    username_free: int = 5
    address_free: int = 20
    backoff_base: float = 1.0
    backoff_max: float = 300.0
    forget_after: float = 900.0
    max_entries: int = 10_000
    hash_concurrency: int = 2
    hash_waiting: int = 16


class TooManyAttempts(AuthError):
    def __init__(self, wait: float) -> None:
        seconds = max(1, math.ceil(wait))
        super().__init__("too_many_attempts", f"too many failed sign-ins; try again in {seconds} s", status=429,
                         retry_after=seconds)


class LoginBusy(AuthError):
    def __init__(self) -> None:
        super().__init__("login_busy", "too many sign-ins are being checked; try again shortly", status=503,
                         retry_after=1)


@dataclass
class _Failures:
    count: int
    last: float
    locked_until: float


class Throttle:
    """Failures per key with exponential backoff (see the module)."""

    def __init__(self, *, free: int, backoff_base: float, backoff_max: float, forget_after: float,
                 max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.free, self.backoff_base, self.backoff_max = free, backoff_base, backoff_max
        self.forget_after, self.max_entries, self.clock = forget_after, max_entries, clock
        self._table: dict[str, _Failures] = {}  # oldest failure first

    def __len__(self) -> int:
        return len(self._table)

    def _current(self, key: str, now: float) -> _Failures | None:
        entry = self._table.get(key)
        if entry is not None and now - entry.last > self.forget_after and now >= entry.locked_until:
            del self._table[key]
            return None
        return entry

    def locked_for(self, key: str) -> float:
        """Seconds until ``key`` may try again (0: now)."""
        now = self.clock()
        entry = self._current(key, now)
        return 0.0 if entry is None else max(0.0, entry.locked_until - now)

    def count(self, key: str) -> None:
        """One failure of ``key``; TooManyAttempts if it is locked (then nothing is counted)."""
        now = self.clock()
        wait = self.locked_for(key)
        if wait > 0:
            raise TooManyAttempts(wait)
        entry = self._table.pop(key, None) or _Failures(0, now, 0.0)
        entry.count += 1
        entry.last = now
        if entry.count >= self.free:
            entry.locked_until = now + min(self.backoff_max, self.backoff_base * 2 ** (entry.count - self.free))
        self._make_room()
        self._table[key] = entry

    def refund(self, key: str) -> None:
        """Take back one counted failure (the attempt turned out good, or got no verdict)."""
        entry = self._table.get(key)
        if entry is not None:
            entry.count = max(0, entry.count - 1)
            if entry.count < self.free:
                entry.locked_until = 0.0

    def forget(self, key: str) -> None:
        self._table.pop(key, None)

    def _make_room(self) -> None:
        while len(self._table) >= self.max_entries:  # the least recently failed goes first
            del self._table[next(iter(self._table))]


class LoginThrottle:
    """The address and the user name of a sign-in, each with its own allowance."""

    def __init__(self, limits: LoginLimits, clock: Callable[[], float] = time.monotonic) -> None:
        common = {"backoff_base": limits.backoff_base, "backoff_max": limits.backoff_max,
                  "forget_after": limits.forget_after, "max_entries": limits.max_entries, "clock": clock}
        self.addresses = Throttle(free=limits.address_free, **common)
        self.usernames = Throttle(free=limits.username_free, **common)

    def begin(self, address: str, username: str) -> None:
        """Count an attempt on both, or refuse it (TooManyAttempts) if either is locked."""
        wait = max(self.addresses.locked_for(address), self.usernames.locked_for(username))
        if wait > 0:
            raise TooManyAttempts(wait)
        self.addresses.count(address)
        self.usernames.count(username)

    def succeeded(self, address: str, username: str) -> None:
        self.usernames.forget(username)
        self.addresses.refund(address)

    def undecided(self, address: str, username: str) -> None:
        self.addresses.refund(address)
        self.usernames.refund(username)


class HashGate:
    """Password hashing a few at a time, on threads of its own (see the module)."""

    def __init__(self, concurrency: int = 2, waiting: int = 16, hasher: Any = None) -> None:
        self.hasher = hasher or PasswordHasher()  # verify / hash / check_needs_rehash, as argon2's
        self.concurrency, self.waiting = concurrency, waiting
        self._executor = ThreadPoolExecutor(concurrency, thread_name_prefix="password-hash")
        self._slots = asyncio.Semaphore(concurrency)
        self._pending = 0

    async def _run(self, work: Callable[..., Any], *args: Any) -> Any:
        if self._pending >= self.concurrency + self.waiting:
            raise LoginBusy()
        self._pending += 1
        try:
            async with self._slots:  # a request that gives up while waiting never reaches the executor
                return await asyncio.get_running_loop().run_in_executor(self._executor, work, *args)
        finally:
            self._pending -= 1

    async def matches(self, stored_hash: str, password: str) -> bool:
        return bool(await self._run(self._matches, stored_hash, password))

    def _matches(self, stored_hash: str, password: str) -> bool:
        return password_matches(stored_hash, password, self.hasher)

    async def hash(self, password: str) -> str:
        return str(await self._run(self.hasher.hash, password))

    def needs_rehash(self, stored_hash: str) -> bool:
        return bool(self.hasher.check_needs_rehash(stored_hash))

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
