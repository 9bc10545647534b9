"""``mount(app)``: the console's pages on the API's app (``create_app``'s answer), under ``/console``.

What it adds: the page routers (each behind the CSRF guard), the static files (``/console/static``,
revalidated on every load), the pages' headers (a Content-Security-Policy without inline scripts or
styles, no framing, no referrer across sites; through ``app.state.header_policies``, which the API's
``SecurityHeaders`` applies), and error pages: under ``/console`` a refusal is a page, not JSON
(sign-in needed: a redirect to the login page; out of scope: the same 404 page as a page that does
not exist, as the API answers 404), everywhere else the API's handlers answer as before.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from adapters.api.auth import AuthError
from adapters.api.errors import ApiError
from adapters.web import render
from adapters.web.pages import (alarms, auth, h5, h5_charge, home, oplog, orders, peers, pile, piles, revenue, screen,
                                stations, tariffs, users)
from adapters.web.session import BadForm, CsrfRefused, WebSettings, csrf_guard, keep_pre_session
from domain.errors import DomainError, NotFound

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
PAGE_HEADERS = {"Content-Security-Policy": CSP, "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin",
                "Cross-Origin-Opener-Policy": "same-origin"}
PAGES = (auth, home, stations, piles, pile,  # pile after piles: /piles/live before /piles/{pile_no}
         tariffs, orders, revenue, alarms, oplog, users, peers,
         screen,  # the 经营大屏
         h5, h5_charge)  # the driver H5 pages


def settings_from_env(environ: Mapping[str, str] | None = None) -> WebSettings:
    """``CHARGELEDGER_SECURE_COOKIES=1``: Secure cookies even over plain HTTP (TLS ends at a proxy);
    ``CHARGELEDGER_SCREEN_TICK``: seconds between the 经营大屏's reads (default 2);
    ``CHARGELEDGER_H5_DEMO_LOGIN=<tenant uuid>/<channel>``: a demo driver login on the H5 page (default off)."""
    env = os.environ if environ is None else environ
    return WebSettings(secure_cookies=env.get("CHARGELEDGER_SECURE_COOKIES", "0").lower() in ("1", "true", "yes"),
                       screen_tick=float(env.get("CHARGELEDGER_SCREEN_TICK", "2")),
                       h5_demo_login=env.get("CHARGELEDGER_H5_DEMO_LOGIN", ""))


class Static(StaticFiles):
    """The console's own files: cached, but revalidated (ETag) on every load, so an upgrade shows at once."""

    async def get_response(self, path: str, scope: Any) -> Response:
        response = await super().get_response(path, scope)
        response.headers["Cache-Control"] = "no-cache"
        return response


def mount(app: FastAPI, settings: WebSettings | None = None) -> FastAPI:
    """Add the console to ``app``; HSTS (``ServerSettings.hsts``) implies Secure cookies."""
    server = getattr(app.state, "server_settings", None)
    settings = settings or WebSettings()
    if server is not None and server.hsts and not settings.secure_cookies:
        settings = WebSettings(**{**settings.__dict__, "secure_cookies": True})
    app.state.web_settings = settings
    app.state.web_streams = 0
    app.state.header_policies.add(render.PREFIX, PAGE_HEADERS)
    router = APIRouter(prefix=render.PREFIX, include_in_schema=False, dependencies=[Depends(csrf_guard)])
    for page in PAGES:
        router.include_router(page.router)
    app.include_router(router)
    app.include_router(h5.qr_router)  # /c/<pile><gun>: a gun's printed QR code opened in a phone's browser
    app.mount(render.PREFIX + "/static", Static(directory=render.HERE / "static"), name="console-static")
    _page_errors(app)
    return app


# ---- errors as pages -------------------------------------------------------------------------------------
def is_page(request: Request) -> bool:
    return request.url.path == render.PREFIX or request.url.path.startswith(render.PREFIX + "/")


def error_page(request: Request, status: int, title: str, text: str | None = None, message: str = "") -> Response:
    response = render.render(request, "error.html", None, status=status, title=title, text=text, message=message)
    keep_pre_session(request, response)
    return response


def to_sign_in(request: Request) -> Response:
    """Sign in first, at the console's login page (:func:`render.sign_in_first`)."""
    return render.sign_in_first(request, request.app.state.web_settings.login_path)


def page_for(request: Request, exc: Exception) -> Response:
    if isinstance(exc, AuthError):
        return to_sign_in(request)
    if isinstance(exc, CsrfRefused):
        return error_page(request, 403, "error.csrf.title", "error.csrf.text")
    if isinstance(exc, BadForm):
        return error_page(request, 400, "error.title", message=str(exc))
    status = exc.status_code if isinstance(exc, StarletteHTTPException) else getattr(exc, "status", 422)
    if isinstance(exc, NotFound) or status == 404:
        return error_page(request, 404, "error.404.title", "error.404.text")
    if isinstance(exc, ApiError) and exc.code == "forbidden_role":
        return error_page(request, 403, "error.403.title", "error.403.text")
    if isinstance(exc, DomainError):
        return error_page(request, 409, "error.title", message=exc.message)
    if isinstance(exc, RequestValidationError):
        return error_page(request, 422, "error.title", message="; ".join(e["msg"] for e in exc.errors()))
    return error_page(request, status, "error.title", message=str(getattr(exc, "message", None) or
                                                                  getattr(exc, "detail", "")))


Handler = Callable[[Request, Any], Awaitable[Response]]


def _page_errors(app: FastAPI) -> None:
    """Under /console a page answers each refusal; elsewhere the API's own handler does."""
    for kind in (DomainError, ApiError, AuthError, RequestValidationError, StarletteHTTPException,
                 CsrfRefused, BadForm):
        api_handler: Handler | None = app.exception_handlers.get(kind)

        async def handler(request: Request, exc: Any, api_handler: Handler | None = api_handler) -> Response:
            if is_page(request) or api_handler is None:
                return page_for(request, exc)
            return await api_handler(request, exc)

        app.exception_handlers[kind] = handler
