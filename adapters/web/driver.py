"""Who is looking at a driver H5 page (docs/console.md, "The driver H5 page").

* **The driver cookie** (``cl_driver``; ``__Host-cl_driver`` over TLS) holds the very token the
  driver API's login answers (``DriverIdentity.login``: WeChat's code2session or Alipay's oauth
  token, then ``DriverTokens``: HS256, expiring, ``role: driver``): HttpOnly, SameSite=Lax, Path=/,
  Secure over TLS (or with ``CHARGELEDGER_SECURE_COOKIES=1``). Every request verifies it as the driver
  API verifies its bearer token; the tenant and the driver come from it only, and the tenant decides the
  shard every page reads and writes (:func:`driver_side`, docs/shards.md).
* **CSRF**: the forms of these pages carry the console's token, bound to this cookie
  (``adapters.web.session.csrf_token``), checked by the console router's guard.
* **Demo login**: only where ``WebSettings.h5_demo_login`` (``CHARGELEDGER_H5_DEMO_LOGIN=<tenant
  uuid>/<channel>``) names a tenant's payment channel; off by default. It signs a driver token for
  ``wechat:<channel>:demo-<name>`` without asking WeChat, so it must never be set in production.

The H5 pages exist only where the API serves drivers (``DriverApiSettings``); elsewhere they are 404.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from fastapi import Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from adapters.api.auth import AuthError
from adapters.api.driver.identity import DriverPrincipal
from adapters.payments.service import Payer
from adapters.web.render import PREFIX, own_page, sign_in_first
from adapters.web.session import (DRIVER_SESSION, PRE_SESSION, clear_cookie, read_cookie, set_cookie,
                                  settings_of)
from domain.errors import NotFound

H5 = PREFIX + "/h5"
DEMO_NAME = re.compile(r"^[a-z0-9-]{1,32}$")


@dataclass(frozen=True)
class DriverSide:
    """What the driver API runs on (``create_app`` with ``DriverApiSettings``): identity, sessions, payments,
    and the pool of the orders view a driver's history is read from, all on the driver's tenant's shard."""

    identity: Any  # adapters.api.driver.identity.DriverIdentity
    sessions: Any  # adapters.api.driver.sessions.DriverSessions
    payments: Any  # adapters.payments.service.PaymentService
    pool: Any  # psycopg ConnectionPool


def driver_side(request: Request, tenant_id: UUID | None = None) -> DriverSide:
    """The driver objects of ``tenant_id``'s shard (docs/shards.md; the one shard's without shards). Without
    a tenant, the directory shard's: only for what every shard shares (verifying a driver token)."""
    state = request.app.state
    if getattr(state, "driver_identity", None) is None:
        raise NotFound("this server does not serve drivers")
    sides = getattr(state, "driver_sides", None)
    if tenant_id is None or sides is None:
        return DriverSide(state.driver_identity, state.driver_sessions, state.payments, state.pool)
    side = sides.of(tenant_id)
    return DriverSide(side.identity, side.sessions, side.service, side.pool)


async def driver_side_of(request: Request, tenant_id: UUID) -> DriverSide:
    """:func:`driver_side` from a coroutine: a tenant's first look-up in this process (one query on the
    directory shard) runs in a thread, later ones from the cache."""
    sides = getattr(request.app.state, "driver_sides", None)
    if sides is None or sides.shards.directory.known(tenant_id):
        return driver_side(request, tenant_id)
    return await run_in_threadpool(driver_side, request, tenant_id)


def signed_in(request: Request) -> DriverPrincipal | None:
    """The driver whose valid token the cookie holds, else None (no cookie, expired, not a driver token)."""
    token = read_cookie(request, DRIVER_SESSION)
    if not token:
        return None
    try:
        return driver_side(request).identity.tokens.verify(token)  # type: ignore[no-any-return]
    except AuthError:
        return None


def payer(driver: DriverPrincipal) -> Payer:
    return Payer(driver.tenant_id, driver.driver_id, driver.channel, driver.payer)


def next_page(target: str | None) -> str:
    """Where to go after signing in: an H5 path of ours (:func:`~adapters.web.render.own_page`)."""
    return own_page(target, H5)


def to_login(request: Request) -> Response:
    """Sign in first, at the H5 login page (:func:`~adapters.web.render.sign_in_first`)."""
    return sign_in_first(request, H5 + "/login")


def start_driver_session(request: Request, response: Response, token: str, expires: datetime) -> None:
    set_cookie(request, response, DRIVER_SESSION, token, expires)
    clear_cookie(request, response, PRE_SESSION)


def end_driver_session(request: Request, response: Response) -> None:
    clear_cookie(request, response, DRIVER_SESSION)


def demo_channel(request: Request) -> tuple[UUID, str] | None:
    """The (tenant, channel) the demo login signs drivers in at, if the settings configure one."""
    setting = settings_of(request).h5_demo_login.strip()
    if not setting:
        return None
    tenant, _, channel = setting.partition("/")
    try:
        return UUID(tenant), channel or "demo"
    except ValueError:
        return None
