"""The HTTP API's application factory: one FastAPI app, errors with stable codes, routers mounted.

Every refusal has the same body, ``{"code": ..., "message": ..., "details": ...}``:

* 422 ``validation_error`` (pydantic; ``details`` lists the fields),
* 401 ``missing_token`` / ``invalid_token`` / ``token_expired`` / ``token_revoked`` / ``user_disabled`` /
  ``bad_credentials``,
* 403 ``wrong_token_role`` (e.g. a driver token at the operator API) / ``forbidden_role`` / ``wrong_password``,
* 404 ``not_found`` (also for another tenant's ids, so ids cannot be probed),
* 409 a domain rule's own code (``domain.errors``: ``invalid_state_transition``, ``insufficient_funds``...),
* 413 ``body_too_large``, 429 ``too_many_attempts`` and 503 ``login_busy`` (both with Retry-After).

The server's own defences (timeouts, connection and body caps, security headers; the API docs
only where configured) are in adapters/api/guards.py; sign-in and the per-request token check in
adapters/api/operator/accounts.py.

Given ``driver`` settings (``adapters.api.driver.sessions.DriverApiSettings``: the payment channels' sealing
keys and the public URL, from ``CHARGELEDGER_PAYMENT_KEYS`` / ``CHARGELEDGER_PUBLIC_URL``), the app
also serves drivers: login, wallet, top-up and refund (``adapters.api.payments``) and the session API
(``adapters.api.driver.sessions``), with driver tokens from the same signer as the operators' (the role
claim keeps them apart). Other routers (interconnect) mount on the app this returns; they find the
ledger, the database pool and the token signer on ``app.state``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import AsyncConnectionPool, ConnectionPool
from starlette.exceptions import HTTPException as StarletteHTTPException

from adapters.api.auth import AuthError, AuthSettings, TokenSigner
from adapters.api.guards import BodyLimit, BodyLimits, SecurityHeaders, ServerSettings, server_config
from adapters.api.login_guard import LoginLimits
from adapters.postgres.operator_users import OperatorUsers
from domain.errors import DomainError, InvalidText, NotFound

if TYPE_CHECKING:
    from adapters.api.driver.sessions import DriverApiSettings


class ApiError(Exception):
    """A refusal decided in the adapter (scope, role, bad cursor), with its stable code."""

    def __init__(self, status: int, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"code": code, "message": message, **({"details": details} if details else {})}


def _utc(conn: Any) -> None:
    """Instants leave the database in UTC, also when Postgres renders them into JSON itself."""
    conn.execute("SET TIME ZONE 'UTC'")
    conn.commit()


async def _autc(conn: Any) -> None:
    await conn.execute("SET TIME ZONE 'UTC'")
    await conn.commit()


def create_app(ledger: Any, database_url: str, settings: AuthSettings, *, pool_size: int = 8,
               driver: DriverApiSettings | None = None, api_docs: bool | None = None,
               server: ServerSettings | None = None, login: LoginLimits | None = None) -> FastAPI:
    """The API; ``api_docs`` (default: ``server.api_docs``, off) serves /docs, /redoc and /openapi.json."""
    server = server or ServerSettings()
    docs = server.api_docs if api_docs is None else api_docs
    pool = ConnectionPool(database_url, min_size=1, max_size=pool_size, open=False, configure=_utc)

    apool = AsyncConnectionPool(database_url, min_size=1, max_size=pool_size, open=False, configure=_autc)
    signer = TokenSigner(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from adapters.api.operator.accounts import Accounts

        await apool.open(wait=True)
        app.state.apool = apool  # for the hottest reads: no thread hop per request
        users = OperatorUsers(apool)
        await users.create_schema()
        app.state.accounts = Accounts(users, signer, login or LoginLimits())
        yield
        app.state.accounts.close()
        await apool.close()
        pool.close()

    app = FastAPI(title="chargeledger", version="1", lifespan=lifespan,
                  description="Operator API over the chargeledger event-sourced ledger. See docs/operator-api.md.",
                  docs_url="/docs" if docs else None, redoc_url="/redoc" if docs else None,
                  openapi_url="/openapi.json" if docs else None)
    pool.open(wait=True)
    app.state.ledger = ledger
    app.state.pool = pool
    app.state.signer = signer
    app.state.body_limits = BodyLimits(server.max_body_bytes)
    app.add_middleware(BodyLimit, limits=app.state.body_limits)
    app.add_middleware(SecurityHeaders, hsts=server.hsts)

    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> JSONResponse:
        status = 404 if isinstance(exc, NotFound) else 422 if isinstance(exc, InvalidText) else 409
        return JSONResponse(error_body(exc.code, exc.message, exc.details or None), status_code=status)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message, exc.details or None), status_code=exc.status)

    @app.exception_handler(AuthError)
    async def auth_error(request: Request, exc: AuthError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
        if exc.retry_after is not None:
            headers["Retry-After"] = str(exc.retry_after)
        return JSONResponse(error_body(exc.code, exc.message), status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()]
        return JSONResponse(error_body("validation_error", "the request is not valid", details), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code)

    from adapters.api.operator.accounts import router as accounts_router
    from adapters.api.operator.routes import router as operator_router

    app.include_router(accounts_router)
    app.include_router(operator_router)
    if driver is not None:
        mount_driver_api(app, ledger, driver)
    return app


def mount_driver_api(app: FastAPI, ledger: Any, driver: DriverApiSettings) -> None:
    """The payment service and driver identity built from ``driver`` (DriverApiSettings), and both driver routers."""
    from adapters.api.driver.sessions import DriverSessions, StartRequests, driver_router
    from adapters.api.driver.identity import DriverIdentity, DriverTokens, WeChatCode2Session
    from adapters.api.payments import CALLBACK_MAX_BYTES, CALLBACK_PREFIX, payment_router
    from adapters.payments.config import Channels, SecretBox
    from adapters.payments.service import PaymentService, Providers

    channels = Channels(ledger.payments, SecretBox.from_setting(driver.payment_keys))
    providers = Providers(driver.public_url, gateways=dict(driver.gateways))
    service = PaymentService(ledger, ledger.payments, channels, providers, limits=driver.top_up_limits)
    identity = DriverIdentity(channels, DriverTokens(app.state.signer), WeChatCode2Session(driver.wechat_api),
                              providers, service.wallet_id)
    sessions = DriverSessions(ledger, StartRequests(app.state.pool), driver)
    app.state.payments, app.state.driver_identity, app.state.driver_sessions = service, identity, sessions
    app.state.body_limits.cap(CALLBACK_PREFIX, CALLBACK_MAX_BYTES)
    app.include_router(payment_router(service, identity))
    app.include_router(driver_router(identity, sessions))


# ---- CLI: chargeledger api -------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)


def run(args: argparse.Namespace) -> int:
    """Serve the API on ``args.database_url`` (set by app.py); needs CHARGELEDGER_TOKEN_KEY, and for the
    driver side CHARGELEDGER_PAYMENT_KEYS and CHARGELEDGER_PUBLIC_URL (without them: operators only).
    Limits and timeouts from the environment (ServerSettings.from_env, docs/operations.md)."""
    import sys

    import uvicorn

    from adapters.api.driver.sessions import DriverApiSettings
    from adapters.postgres.env import eventsourcing_env
    from domain.ledger import Ledger

    driver = DriverApiSettings.from_env(dict(os.environ))
    if driver is None:
        print("CHARGELEDGER_PAYMENT_KEYS is not set: serving the operator API only (no driver API)", file=sys.stderr)
    server = ServerSettings.from_env(os.environ)
    ledger = Ledger(eventsourcing_env(args.database_url))
    try:
        app = create_app(ledger, args.database_url, AuthSettings.from_env(dict(os.environ)), driver=driver,
                         server=server)
        uvicorn.Server(server_config(app, server, host=args.host, port=args.port,
                                     log_level=os.environ.get("LOG_LEVEL", "warning").lower())).run()
    finally:
        ledger.close()
    return 0
