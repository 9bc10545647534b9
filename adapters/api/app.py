"""The HTTP API's application factory: one FastAPI app, errors with stable codes, routers mounted.

Every refusal has the same body (adapters/api/errors.py lists the codes). The server's own defences
(timeouts, connection and body caps, security headers; the API docs only where configured) are in
adapters/api/guards.py; sign-in and the per-request token check in adapters/api/operator/accounts.py;
the operator routers in adapters/api/operator/ (router.py says which module serves what).

Given ``driver`` settings (``adapters.api.driver.settings.DriverApiSettings``: the payment channels'
sealing keys and the public URL, from ``CHARGELEDGER_PAYMENT_KEYS`` / ``CHARGELEDGER_PUBLIC_URL``),
the app also serves drivers: login, wallet, top-up and refund (``adapters.api.payments``) and the
session API (``adapters.api.driver.routes``), with driver tokens from the same signer as the
operators' (the role claim keeps them apart). Other routers (interconnect) mount on the app this
returns; they find the ledger, the database pool and the token signer on ``app.state``. So do the
console's pages (``adapters.web.mount``, called on the app this returns: the API never imports the
pages); they add their headers (a Content-Security-Policy) through ``app.state.header_policies``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from adapters.api.auth import AuthSettings, TokenSigner
from adapters.api.errors import add_error_handlers
from adapters.api.health import health_router
from adapters.api.guards import BodyLimit, BodyLimits, HeaderPolicies, SecurityHeaders, ServerSettings
from adapters.api.login_guard import LoginLimits
from adapters.api.operator.accounts import Accounts
from adapters.api.operator.router import router as operator_router
from adapters.api.shards import ApiShards
from adapters.postgres.operator_users import OperatorUsers

if TYPE_CHECKING:
    from adapters.api.driver.settings import DriverApiSettings


def create_app(ledger: Any, database_url: str, settings: AuthSettings, *, pool_size: int = 8,
               driver: DriverApiSettings | None = None, api_docs: bool | None = None,
               server: ServerSettings | None = None, login: LoginLimits | None = None,
               shards: ApiShards | None = None) -> FastAPI:
    """The API; ``api_docs`` (default: ``server.api_docs``, off) serves /docs, /redoc and /openapi.json.

    ``shards`` (adapters/api/shards.py): the tenant shards, each request routed to its tenant's; without
    it, one shard (``ledger`` at ``database_url``), as a deployment without ``CHARGELEDGER_SHARDS``."""
    server = server or ServerSettings()
    docs = server.api_docs if api_docs is None else api_docs
    shards = shards or ApiShards.single(ledger, database_url, pool_size)
    home = shards.home  # the directory shard: operator users and the shard directory (docs/shards.md)
    signer = TokenSigner(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await shards.open_async()
        app.state.apool = home.apool  # for the hottest reads: no thread hop per request
        users = OperatorUsers(home.apool)
        await users.create_schema()
        app.state.accounts = Accounts(users, signer, login or LoginLimits())
        yield
        app.state.accounts.close()
        await shards.close_async()
        shards.close()

    app = FastAPI(title="chargeledger", version="1", lifespan=lifespan,
                  description="Operator API over the chargeledger event-sourced ledger. See docs/operator-api.md.",
                  docs_url="/docs" if docs else None, redoc_url="/redoc" if docs else None,
                  openapi_url="/openapi.json" if docs else None)
    shards.open()
    app.state.shards = shards
    app.state.ledger = home.ledger
    app.state.pool = home.pool
    app.state.signer = signer
    app.state.body_limits = BodyLimits(server.max_body_bytes)
    app.add_middleware(BodyLimit, limits=app.state.body_limits)
    app.state.header_policies = HeaderPolicies()
    app.state.server_settings = server
    app.add_middleware(SecurityHeaders, hsts=server.hsts, policies=app.state.header_policies)

    add_error_handlers(app)
    app.include_router(health_router(database_url))  # /healthz, /readyz for the balancer (health.py)
    app.include_router(operator_router)
    if driver is not None:
        mount_driver_api(app, ledger, driver)
    return app


def mount_driver_api(app: FastAPI, ledger: Any, driver: DriverApiSettings) -> None:
    """The payment service, driver identity and sessions built from ``driver`` (DriverApiSettings), per
    shard (adapters/api/driver/sides.py, over the app's shards, whose one shard is ``ledger`` unless
    sharded), and both
    driver routers, which find a driver's shard by their tenant."""
    from adapters.api.driver.routes import driver_router
    from adapters.api.driver.sides import DriverSides
    from adapters.api.payments import CALLBACK_MAX_BYTES, CALLBACK_PREFIX, payment_router

    sides = DriverSides(app.state.shards, driver, app.state.signer)
    home = sides.home
    app.state.driver_sides = sides
    app.state.payments, app.state.driver_identity, app.state.driver_sessions = home.service, home.identity, home.sessions
    app.state.body_limits.cap(CALLBACK_PREFIX, CALLBACK_MAX_BYTES)
    app.include_router(payment_router(home.service, home.identity, sides.of))
    app.include_router(driver_router(home.identity, home.sessions, sides.of))
