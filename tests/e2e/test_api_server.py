"""The API as `chargeledger api` serves it, over real sockets (uvicorn on a free loopback port): a
login flood is throttled while other tenants are served, password hashes never run more than the
cap at once nor on the shared thread pool, and slow, idle or too many connections are closed."""

from __future__ import annotations

import asyncio
import math
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from argon2 import PasswordHasher

from adapters.api.auth import TENANT_ADMIN, AuthSettings
from adapters.api.app import create_app
from adapters.api.guards import ServerSettings
from adapters.api.login_guard import LoginLimits
from adapters.postgres.env import eventsourcing_env
from domain.ledger import Ledger
from projections.runner import Projections
from tests.http_server import serving
from tests.operator_tokens import PASSWORD, operator_headers
from tests.e2e.test_projections import build_tenant

V = "/operator/v1"
DEADLINE = 30.0


@dataclass
class CountingHasher:
    """The real Argon2 hasher, instrumented: how many verifications run at once, on which threads;
    each one holds its slot until ``release`` is set, so a test can act while the slots are full."""

    inner: PasswordHasher = field(default_factory=PasswordHasher)
    running: int = 0
    peak: int = 0
    calls: int = 0
    threads: set[str] = field(default_factory=set)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def verify(self, stored: str, password: str) -> bool:
        with self.lock:
            self.running += 1
            self.calls += 1
            self.peak = max(self.peak, self.running)
            self.threads.add(threading.current_thread().name)
        try:
            self.release.wait(DEADLINE)
            return bool(self.inner.verify(stored, password))
        finally:
            with self.lock:
                self.running -= 1

    def hash(self, password: str) -> str:
        return str(self.inner.hash(password))

    def check_needs_rehash(self, stored: str) -> bool:
        return bool(self.inner.check_needs_rehash(stored))


@pytest.fixture
def tenants(ledger: Ledger, database_url: str) -> tuple[Any, Any]:
    a = build_tenant(ledger, "Alpha", "3201060001", "alpha-admin")
    b = build_tenant(ledger, "Beta", "4401060001", "beta-admin")
    with Projections(ledger.applications, eventsourcing_env(database_url)) as projections:
        projections.catch_up()
    return a, b


async def flood(port: int, requests: int, at_once: int, headers_of: Any, body_of: Any,
                during: Any) -> tuple[list[httpx.Response], Any]:
    """``requests`` wrong-password logins, ``at_once`` in flight; ``during`` runs while they are."""
    limits = httpx.Limits(max_connections=at_once + 4)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=DEADLINE) as client:
        gate = asyncio.Semaphore(at_once)

        async def one(i: int) -> httpx.Response:
            async with gate:
                return await client.post(f"{V}/auth/token", json=body_of(i), headers=headers_of(i))

        tasks = [asyncio.create_task(one(i)) for i in range(requests)]
        seen = await during(client)
        return list(await asyncio.gather(*tasks)), seen


def other_tenant_during_flood(hasher: CountingHasher, cap: int, headers: dict[str, str]) -> Any:
    async def during(client: httpx.AsyncClient) -> int:
        deadline = time.monotonic() + DEADLINE
        while hasher.running < cap:  # every hash slot taken by the flood...
            assert time.monotonic() < deadline, "the flood never filled the hash slots"
            await asyncio.sleep(0.01)
        r = await client.get(f"{V}/stations", headers=headers)  # ...and another tenant is served
        hasher.release.set()
        return r.status_code
    return during


def test_a_login_flood_from_one_address_is_throttled_and_other_tenants_are_served(
        ledger: Ledger, database_url: str, tenants: tuple[Any, Any]) -> None:
    a, b = tenants
    app = create_app(ledger, database_url, AuthSettings.generate())
    limits = LoginLimits()
    with serving(app, ServerSettings()) as port:
        operator_headers(app, TENANT_ADMIN, a.tenant_id, subject="victim@alpha")
        other = operator_headers(app, TENANT_ADMIN, b.tenant_id)
        hasher = CountingHasher()
        app.state.accounts.gate.hasher = hasher
        during = other_tenant_during_flood(hasher, limits.hash_concurrency, other)
        started = time.monotonic()
        answers, other_status = asyncio.run(flood(
            port, 240, 80, lambda i: {}, lambda i: {"username": "victim@alpha", "password": f"guess {i:05d}"},
            during))
        lasted = time.monotonic() - started
    assert other_status == 200
    statuses = [r.status_code for r in answers]
    assert set(statuses) <= {401, 429}, statuses
    # the free attempts, then one each time the lock (1 s, doubling) has run out while the flood lasted
    let_through = limits.username_free + math.ceil(math.log2(1 + lasted / limits.backoff_base)) + 1
    assert limits.username_free <= statuses.count(401) <= let_through, (statuses.count(401), lasted)
    assert all(int(r.headers["retry-after"]) >= 1 for r in answers if r.status_code == 429)
    assert hasher.calls == statuses.count(401)
    assert hasher.peak == limits.hash_concurrency
    assert all(name.startswith("password-hash") for name in hasher.threads), hasher.threads


def test_a_login_flood_from_many_addresses_never_runs_more_hashes_than_the_cap(
        ledger: Ledger, database_url: str, tenants: tuple[Any, Any]) -> None:
    """Each request from its own address (X-Forwarded-For, trusted from loopback) for its own name:
    the throttle sees no repeat, so the hash gate is what holds: a few hash, the rest wait in a
    short queue or are told to come back (503 login_busy)."""
    _, b = tenants
    app = create_app(ledger, database_url, AuthSettings.generate())
    limits = LoginLimits()
    with serving(app, ServerSettings()) as port:
        other = operator_headers(app, TENANT_ADMIN, b.tenant_id)
        hasher = CountingHasher()
        app.state.accounts.gate.hasher = hasher
        during = other_tenant_during_flood(hasher, limits.hash_concurrency, other)
        answers, other_status = asyncio.run(flood(
            port, 240, 80, lambda i: {"x-forwarded-for": f"198.51.100.{i % 250}"},
            lambda i: {"username": f"nobody-{i}", "password": "a wrong password"}, during))
    assert other_status == 200
    statuses = [r.status_code for r in answers]
    assert set(statuses) <= {401, 503}, statuses
    assert statuses.count(503) > 0 and statuses.count(401) == hasher.calls
    assert all(r.json()["code"] == "login_busy" and r.headers["retry-after"] for r in answers if r.status_code == 503)
    assert hasher.peak == limits.hash_concurrency


def test_the_right_password_signs_in_over_http(ledger: Ledger, database_url: str, tenants: tuple[Any, Any]) -> None:
    a, _ = tenants
    app = create_app(ledger, database_url, AuthSettings.generate())
    with serving(app, ServerSettings()) as port:
        operator_headers(app, TENANT_ADMIN, a.tenant_id, subject="ops@alpha")
        r = httpx.post(f"http://127.0.0.1:{port}{V}/auth/token", json={"username": "ops@alpha", "password": PASSWORD})
        assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
        assert "server" not in r.headers and "date" in r.headers
        assert r.headers["x-content-type-options"] == "nosniff"


# ---- slow, idle and too many connections ------------------------------------------------------------------
def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (bounded by DEADLINE)."""
    sock.settimeout(DEADLINE)
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


@pytest.fixture
def quick_app(ledger: Ledger, database_url: str) -> Any:
    return create_app(ledger, database_url, AuthSettings.generate())


QUICK = ServerSettings(header_timeout=0.5, body_timeout=1.0, keep_alive_timeout=1)


def test_a_client_that_stalls_in_the_request_line_is_disconnected(quick_app: Any) -> None:
    with serving(quick_app, QUICK) as port, socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /operator/v1/sta")
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408") or answer == b""


def test_a_client_that_drips_headers_is_disconnected(quick_app: Any) -> None:
    """Slowloris: a header line now and then keeps the connection busy but never completes."""
    with serving(quick_app, QUICK) as port, socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /operator/v1/stations HTTP/1.1\r\nHost: x\r\n")
        sock.settimeout(0.2)
        deadline = time.monotonic() + DEADLINE
        closed = False
        while not closed and time.monotonic() < deadline:
            try:
                sock.sendall(b"X-Drip: 1\r\n")
                closed = sock.recv(4096) == b""
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                closed = True
        assert closed


def test_a_body_sent_slower_than_the_body_timeout_is_cut(quick_app: Any) -> None:
    body = b'{"username": "someone", "password": "' + b"p" * 150 + b'"}'
    with serving(quick_app, QUICK) as port, socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /operator/v1/auth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
        sock.settimeout(0.1)
        sent, answer, closed = 0, b"", False
        while sent < len(body) and not closed:
            try:
                sock.sendall(body[sent:sent + 1])
                sent += 1
                chunk = sock.recv(4096)
                answer += chunk
                closed = chunk == b""
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                closed = True
        assert closed and sent < len(body), (sent, answer)
        assert answer.startswith(b"HTTP/1.1 408") or answer == b""


def test_an_idle_keep_alive_connection_is_closed(quick_app: Any) -> None:
    with serving(quick_app, QUICK) as port, socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /operator/v1/stations HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = read_until_closed(sock)  # answered, then closed after the keep-alive timeout
    assert answer.startswith(b"HTTP/1.1 401") and b'"missing_token"' in answer


def test_a_kept_alive_connection_serves_the_next_request(quick_app: Any) -> None:
    with serving(quick_app, QUICK) as port:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(3):
                assert client.get(f"{V}/stations").status_code == 401


def test_connections_beyond_the_cap_are_refused(quick_app: Any) -> None:
    settings = ServerSettings(header_timeout=DEADLINE, max_connections=4)
    with serving(quick_app, settings) as port:
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
        try:
            for sock in held:
                sock.sendall(b"GET /operator/v1/stat")
            deadline = time.monotonic() + DEADLINE  # until the server has taken the held ones in
            while (r := httpx.get(f"http://127.0.0.1:{port}{V}/stations", timeout=DEADLINE)).status_code != 503:
                assert r.status_code == 401 and time.monotonic() < deadline, "no refusal beyond the cap"
                time.sleep(0.05)
        finally:
            for sock in held:
                sock.close()
        deadline = time.monotonic() + DEADLINE
        while httpx.get(f"http://127.0.0.1:{port}{V}/stations", timeout=DEADLINE).status_code != 401:
            assert time.monotonic() < deadline
            time.sleep(0.05)
