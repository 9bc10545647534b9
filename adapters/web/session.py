"""Who is looking at a page, and whether a form really comes from our page.

* **The session cookie** carries the operator token the API issues (``Accounts.issue``: signed,
  expiring, with the user's token generation), HttpOnly, SameSite=Lax, Secure (and named with the
  ``__Host-`` prefix) when the request came over TLS or ``WebSettings.secure_cookies`` says so.
  Every request checks it exactly as the API checks a bearer token (``Accounts.principal``: the
  user's row now), so logout, disable and a password change end the session at once.
* **CSRF**: every request that is not GET/HEAD/OPTIONS carries a token, as the form field
  ``csrf`` or the ``X-CSRF-Token`` header (htmx sends it from ``hx-headers`` on ``<body>``). The
  token is an HMAC, under the token key, of the session cookie (before sign-in: of a random
  pre-session cookie; on the driver H5 pages, of the driver cookie), so a page of another site can
  neither read nor make it; a request without the right one is refused with 403 before anything
  runs (``csrf_guard``, on the console router).
* **Forms** are read here once (``application/x-www-form-urlencoded``, UTF-8, at most 100 fields)
  into ``request.state.form``; pages validate them with the API's own request models.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import Depends, Request
from starlette.responses import Response

from adapters.api.auth import AuthError, Principal
from adapters.api.shards import route

SESSION, PRE_SESSION, DRIVER_SESSION = "cl_session", "cl_pre", "cl_driver"
SECURE_PREFIX = "__Host-"
CSRF_FIELD, CSRF_HEADER = "csrf", "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
FORM_TYPE = "application/x-www-form-urlencoded"
MAX_FIELDS = 100


class CsrfRefused(Exception):
    """A state-changing request without its page's CSRF token: 403 (adapters/web/mount.py renders it)."""


class BadForm(Exception):
    """A body that is not a form we read: 400."""


@dataclass(frozen=True)
class WebSettings:
    secure_cookies: bool = False  # Secure cookies even when the request looks plain (TLS ends at a proxy)
    login_path: str = "/console/login"
    stream_poll: float = 1.0  # seconds between two reads of the live view by a page's stream
    stream_lifetime: float = 600.0  # a stream then ends; the browser's EventSource reconnects
    max_streams: int = 200  # open live streams per process; more are refused (503)
    screen_tick: float = 2.0  # seconds between two reads of the 经营大屏's figures by its stream
    h5_demo_login: str = ""  # "<tenant uuid>/<channel>": the driver H5 page offers a demo login; "": none


def settings_of(request: Request) -> WebSettings:
    return request.app.state.web_settings  # type: ignore[no-any-return]


def secure(request: Request) -> bool:
    return settings_of(request).secure_cookies or request.url.scheme == "https"


def cookie_name(request: Request, name: str) -> str:
    return SECURE_PREFIX + name if secure(request) else name


def read_cookie(request: Request, name: str) -> str | None:
    return request.cookies.get(SECURE_PREFIX + name) or request.cookies.get(name)


def set_cookie(request: Request, response: Response, name: str, value: str, expires: datetime | None) -> None:
    response.set_cookie(cookie_name(request, name), value, expires=expires, path="/", httponly=True,
                        samesite="lax", secure=secure(request))


def clear_cookie(request: Request, response: Response, name: str) -> None:
    for shown in (name, SECURE_PREFIX + name):
        if shown in request.cookies:
            response.delete_cookie(shown, path="/", httponly=True, samesite="lax",
                                   secure=shown.startswith(SECURE_PREFIX) or secure(request))


# ---- the signed-in operator ----------------------------------------------------------------------------
def session_token(request: Request) -> str | None:
    return read_cookie(request, SESSION)


async def operator(request: Request) -> Principal:
    """The session's operator as their user is now (``Accounts.principal``); AuthError sends to sign-in."""
    token = session_token(request)
    if not token:
        raise AuthError("missing_token", "sign in first")
    principal: Principal = await request.app.state.accounts.principal(token)
    await route(request, principal.tenant_id)  # its tenant's shard (adapters/api/shards.py)
    return principal


Operator = Annotated[Principal, Depends(operator)]


def start_session(request: Request, response: Response, token: str, expires: datetime) -> None:
    set_cookie(request, response, SESSION, token, expires)
    clear_cookie(request, response, PRE_SESSION)


def pre_session(request: Request) -> str:
    """The random value a signed-out page's CSRF token is bound to (made now if the browser has none)."""
    value = read_cookie(request, PRE_SESSION)
    if not value:
        value = request.state.new_pre_session = secrets.token_urlsafe(32)
    return value


def keep_pre_session(request: Request, response: Response) -> None:
    """Send the pre-session cookie a page has just made (see ``pre_session``)."""
    value = getattr(request.state, "new_pre_session", None)
    if value:
        set_cookie(request, response, PRE_SESSION, value, None)


# ---- CSRF ------------------------------------------------------------------------------------------------
def _mac(request: Request, binding: str) -> str:
    key = request.app.state.signer.settings.token_key
    digest = hmac.new(key, b"chargeledger console csrf\0" + binding.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def csrf_token(request: Request) -> str:
    """The token this page's forms and htmx requests carry: bound to the session, else the pre-session."""
    token = session_token(request)
    if token:
        return _mac(request, "session\0" + token)
    driver = read_cookie(request, DRIVER_SESSION)
    return _mac(request, "driver\0" + driver if driver else "pre\0" + pre_session(request))


def expected_tokens(request: Request) -> list[str]:
    tokens = []
    if (token := session_token(request)) is not None:
        tokens.append(_mac(request, "session\0" + token))
    if (driver := read_cookie(request, DRIVER_SESSION)) is not None:
        tokens.append(_mac(request, "driver\0" + driver))
    if (pre := read_cookie(request, PRE_SESSION)) is not None:
        tokens.append(_mac(request, "pre\0" + pre))
    return tokens


async def read_form(request: Request) -> dict[str, str]:
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != FORM_TYPE:
        raise BadForm(f"send the form as {FORM_TYPE}")
    try:
        pairs = parse_qsl((await request.body()).decode("utf-8"), keep_blank_values=True, strict_parsing=False,
                          max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadForm(f"the form is not valid: {exc}") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise BadForm(f"the field {name[:40]!r} is sent twice")
        form[name] = value
    return form


async def csrf_guard(request: Request) -> None:
    """On the console router: a state-changing request carries its page's token, else CsrfRefused."""
    if request.method in SAFE_METHODS:
        return
    sent = request.headers.get(CSRF_HEADER)
    form: dict[str, str] = {}
    if request.headers.get("content-length", "0") != "0" or request.headers.get("transfer-encoding"):
        form = await read_form(request)
    sent = sent or form.pop(CSRF_FIELD, None)
    if not sent or not any(hmac.compare_digest(sent, good) for good in expected_tokens(request)):
        raise CsrfRefused("this request lacks its page's CSRF token")
    request.state.form = form


def posted(request: Request) -> dict[str, str]:
    """The form ``csrf_guard`` read, without the token."""
    return dict(getattr(request.state, "form", {}))
