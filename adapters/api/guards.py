"""The HTTP server's own defences: timeouts, a connection cap, body caps, security headers.

* ``ServerSettings``: the limits, from the environment for ``chargeledger api`` (docs/operations.md).
* ``TimedH11Protocol``: uvicorn's h11 protocol with the two timers uvicorn lacks. uvicorn closes a
  connection idle between requests (``timeout_keep_alive``) but not one that sends half a request
  line and stalls, drips header lines (slowloris) or sends its body a byte at a time. Here a
  connection has ``header_timeout`` seconds from its opening (or from the end of the previous
  response) until its request's headers are complete, and ``body_timeout`` seconds from then until
  the body is complete; otherwise it gets ``408`` (if no answer has started) and is closed. Selected
  through uvicorn's ``http=`` option (``server_config``); written against uvicorn's ``H11Protocol``
  hooks ``connection_made``, ``data_received``, ``on_response_complete``, ``connection_lost``.
* ``BodyLimit``: an ASGI middleware that refuses a request body larger than the cap of its path
  (``BodyLimits``: a default, and per path prefix the longest matching prefix's cap) with 413
  ``body_too_large``: at once from ``Content-Length``, or as soon as a streamed body goes over.
  A router that needs a smaller cap sets it: ``app.state.body_limits.cap("/pay/", 4096)``.
* ``SecurityHeaders``: ``X-Content-Type-Options: nosniff`` on every answer, ``Cache-Control:
  no-store`` on every answer that sets no caching of its own (tokens, accounts, and every other
  tenant's data), ``Strict-Transport-Security`` when the request came over TLS (the scheme uvicorn
  reports, also from a trusted proxy's ``X-Forwarded-Proto``) or ``hsts`` is set, and the headers
  ``HeaderPolicies`` gives a path prefix (the console's Content-Security-Policy: adapters/web/),
  unless the answer set its own.
* ``server_config``: the uvicorn configuration with all of it, no ``server`` banner, a connection
  cap (``limit_concurrency``: 503 beyond it), the listen backlog, the header-size cap,
  websocket upgrades off (the API has none), and a stop that waits at most ``shutdown_timeout``
  for open requests (live streams, the driver's and the console's, would otherwise hold it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import h11
import uvicorn
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("chargeledger.http")

_TIMEOUT_BODY = json.dumps({"code": "request_timeout", "message": "the request was not sent in time"}).encode()
REQUEST_TIMEOUT = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
                   b"content-length: %d\r\n\r\n%s" % (len(_TIMEOUT_BODY), _TIMEOUT_BODY))
HSTS = "max-age=31536000"


def _flag(environ: Mapping[str, str], name: str) -> bool:
    return environ.get(name, "0").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class ServerSettings:
    api_docs: bool = False  # /docs, /redoc, /openapi.json
    hsts: bool = False  # send HSTS on every answer (TLS ends at a proxy that does not forward the scheme)
    max_body_bytes: int = 64 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive_timeout: int = 5
    max_connections: int = 500
    backlog: int = 1024
    max_header_bytes: int = 16 * 1024
    forwarded_allow_ips: str = "127.0.0.1"
    shutdown_timeout: float = 10.0  # on stop, open requests (a live stream) get this long, then are cancelled

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServerSettings:
        env = os.environ if environ is None else environ
        d = cls()
        return cls(api_docs=_flag(env, "CHARGELEDGER_API_DOCS"), hsts=_flag(env, "CHARGELEDGER_HSTS"),
                   max_body_bytes=int(env.get("CHARGELEDGER_API_MAX_BODY", d.max_body_bytes)),
                   header_timeout=float(env.get("CHARGELEDGER_API_HEADER_TIMEOUT", d.header_timeout)),
                   body_timeout=float(env.get("CHARGELEDGER_API_BODY_TIMEOUT", d.body_timeout)),
                   keep_alive_timeout=int(env.get("CHARGELEDGER_API_KEEP_ALIVE", d.keep_alive_timeout)),
                   max_connections=int(env.get("CHARGELEDGER_API_MAX_CONNECTIONS", d.max_connections)),
                   forwarded_allow_ips=env.get("CHARGELEDGER_FORWARDED_ALLOW_IPS", d.forwarded_allow_ips))


# ---- timeouts ------------------------------------------------------------------------------------------
class TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with header and body deadlines (see the module)."""

    header_timeout: float = ServerSettings.header_timeout
    body_timeout: float = ServerSettings.body_timeout

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._deadline: asyncio.TimerHandle | None = None
        self._waiting_for: str | None = None
        super().connection_made(transport)
        self._follow_request()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow_request()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow_request()

    def connection_lost(self, exc: Exception | None) -> None:
        self._wait_for(None)
        super().connection_lost(exc)

    def _follow_request(self) -> None:
        """Arm the deadline for what the client owes us now: headers, a body, or nothing."""
        if self.transport.is_closing():
            self._wait_for(None)
        elif self.conn.their_state is h11.IDLE:
            self._wait_for("headers")
        elif self.conn.their_state is h11.SEND_BODY:
            self._wait_for("body")
        else:
            self._wait_for(None)

    def _wait_for(self, what: str | None) -> None:
        if what == self._waiting_for:
            return  # the deadline already running stays: dripping bytes does not extend it
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._waiting_for = what
        if what is not None:
            timeout = self.header_timeout if what == "headers" else self.body_timeout
            self._deadline = self.loop.call_later(timeout, self._timed_out)

    def _timed_out(self) -> None:
        what, self._deadline, self._waiting_for = self._waiting_for, None, None
        if self.transport.is_closing():
            return
        log.info("closing %s: request %s not complete in time", self.client, what)
        answering = what == "body" and self.cycle is not None and self.cycle.response_started
        if not answering:
            self.transport.write(REQUEST_TIMEOUT)
        self.transport.close()


def timed_protocol(settings: ServerSettings) -> type[TimedH11Protocol]:
    return type("TimedH11Protocol", (TimedH11Protocol,), {"header_timeout": settings.header_timeout,
                                                          "body_timeout": settings.body_timeout})


def server_config(app: Any, settings: ServerSettings, *, host: str, port: int,
                  log_level: str = "warning") -> uvicorn.Config:
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, http=timed_protocol(settings), ws="none",
                          server_header=False, date_header=True, timeout_keep_alive=settings.keep_alive_timeout,
                          limit_concurrency=settings.max_connections, backlog=settings.backlog,
                          h11_max_incomplete_event_size=settings.max_header_bytes, proxy_headers=True,
                          forwarded_allow_ips=settings.forwarded_allow_ips,
                          timeout_graceful_shutdown=settings.shutdown_timeout)


# ---- bodies --------------------------------------------------------------------------------------------
class BodyLimits:
    """The largest request body accepted: ``default``, or the cap of the longest matching path prefix."""

    def __init__(self, default: int) -> None:
        self.default = default
        self._caps: dict[str, int] = {}

    def cap(self, prefix: str, max_bytes: int) -> None:
        self._caps[prefix] = max_bytes

    def for_path(self, path: str) -> int:
        matches = [p for p in self._caps if path.startswith(p)]
        return self._caps[max(matches, key=len)] if matches else self.default


def too_large(limit: int) -> StarletteHTTPException:
    return StarletteHTTPException(413, f"the request body is larger than {limit} bytes")


class BodyLimit:
    def __init__(self, app: ASGIApp, limits: BodyLimits) -> None:
        self.app, self.limits = app, limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.for_path(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await refuse(send, 413, "body_too_large", str(too_large(limit).detail))
            return
        received = 0

        async def capped() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise too_large(limit)  # the app's handler answers 413 body_too_large
            return message

        await self.app(scope, capped, send)


async def refuse(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"code": code, "message": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


# ---- headers -------------------------------------------------------------------------------------------
class HeaderPolicies:
    """Headers every answer under a path prefix carries (the longest matching prefix's), set by a
    door mounted after ``create_app``: ``app.state.header_policies.add("/console", {...})``."""

    def __init__(self) -> None:
        self._headers: dict[str, dict[str, str]] = {}

    def add(self, prefix: str, headers: Mapping[str, str]) -> None:
        self._headers[prefix] = {k.lower(): v for k, v in headers.items()}

    def for_path(self, path: str) -> dict[str, str]:
        matches = [p for p in self._headers if path == p or path.startswith(p.rstrip("/") + "/")]
        return self._headers[max(matches, key=len)] if matches else {}


class SecurityHeaders:
    def __init__(self, app: ASGIApp, hsts: bool = False, policies: HeaderPolicies | None = None) -> None:
        self.app, self.hsts, self.policies = app, hsts, policies or HeaderPolicies()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tls = self.hsts or scope.get("scheme") == "https"
        policy = self.policies.for_path(scope["path"])

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in policy.items():
                    headers.setdefault(name, value)
                headers.setdefault("x-content-type-options", "nosniff")
                headers.setdefault("cache-control", "no-store")
                if tls:
                    headers.setdefault("strict-transport-security", HSTS)
            await send(message)

        await self.app(scope, receive, with_headers)
