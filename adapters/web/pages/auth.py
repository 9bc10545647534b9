"""Sign-in and logout: the API's own accounts (``Accounts.signed_in``: throttled, hashed through its gate;
``revoke_tokens`` on logout), the token it issues kept in the session cookie."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from adapters.api.auth import AuthError
from adapters.api.operator.accounts import accounts_of, client_address
from adapters.web.render import PREFIX, own_page, render, see_other
from adapters.web.session import (clear_cookie, keep_pre_session, operator, posted, session_token,
                                  start_session, SESSION)

router = APIRouter()


def next_page(target: str | None) -> str:
    """Where to go after signing in: a console path of ours (:func:`own_page`)."""
    return own_page(target, PREFIX)


ERRORS = ("bad_credentials", "user_disabled", "too_many_attempts", "login_busy")


def login_page(request: Request, status: int = 200, error: str | None = None, username: str = "",
               target: str | None = None, seconds: int = 0) -> Response:
    response = render(request, "login.html", status=status, error=error, seconds=seconds, username=username,
                      next=next_page(target or request.query_params.get("next")),
                      signed_out=request.query_params.get("signed_out") == "1")
    keep_pre_session(request, response)
    return response


@router.get("/login")
async def login_form(request: Request) -> Response:
    if session_token(request):
        try:
            await operator(request)
            return see_other(next_page(request.query_params.get("next")))
        except AuthError:
            pass
    return login_page(request)


@router.post("/login")
async def login(request: Request) -> Response:
    form = posted(request)
    username, password = form.get("username", "")[:200], form.get("password", "")[:500]
    accounts = accounts_of(request)
    try:
        user = await accounts.signed_in(username, password, client_address(request))
    except AuthError as exc:
        code = exc.code if exc.code in ERRORS else "bad_credentials"
        return login_page(request, exc.status if exc.status in (429, 503) else 401, f"login.{code}",
                          username, form.get("next"), exc.retry_after or 0)
    token, expires = accounts.issue(user)
    response = see_other(next_page(form.get("next")))
    start_session(request, response, token, expires)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    """Revoke every token of the user (the API's logout), and forget the cookie."""
    try:
        who = await operator(request)
        await accounts_of(request).users.revoke_tokens(who.subject)
    except AuthError:
        pass  # already signed out: forget the cookie all the same
    response = see_other(PREFIX + "/login?signed_out=1")
    clear_cookie(request, response, SESSION)
    return response
