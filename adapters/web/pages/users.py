"""Users and roles (用户与角色): the operator users an admin manages, creating an agent with its stations,
disabling and enabling.

Everything is the API's accounts code: the list is ``OperatorUsers.listing`` of the caller's
tenant (every tenant's for a platform admin), as ``GET /operator/v1/users``; creating is
``new_user`` (the request model ``UserRequest``: name, password length, the stations in the
tenant, a taken name refused), disabling and enabling ``user_disabled`` (another tenant's user is
404; nobody disables themselves; a disabled user's session ends at their next request). Tenant
and platform admins open the page (agents get 403, as from the API); agents are created by tenant
admins, with at least one of the tenant's stations, chosen as checkboxes (``station-<id>``: a form
holds at most 100 fields, so a tenant with more than 95 stations sets large scopes through the API).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool

from adapters.api.auth import AGENT, PLATFORM_ADMIN, TENANT_ADMIN, Principal
from adapters.api.errors import ApiError
from adapters.api.operator.accounts import ManagedName, UserRequest, accounts_of, new_user, user_disabled
from adapters.api.operator.deps import require
from adapters.api.operator.registry import stations_rows
from adapters.web.forms import Invalid, validated
from adapters.web.render import render, see_other, url
from adapters.web.session import Operator, posted
from domain.errors import DomainError, NotFound

router = APIRouter()
NAV = "/users"
USER_NAME = TypeAdapter(ManagedName)


async def users_page(request: Request, who: Principal, status: int = 200, form: dict[str, str] | None = None,
                     errors: dict[str, str] | None = None, refused: str | None = None) -> Response:
    require(who, PLATFORM_ADMIN, TENANT_ADMIN)
    users = await accounts_of(request).users.listing(who.tenant_id)
    stations = await run_in_threadpool(stations_rows, request, who)
    return render(request, "users/list.html", who, nav=NAV, status=status, users=users, stations=stations,
                  names={s["station_id"]: s["name"] for s in stations}, form=form or {}, errors=errors or {},
                  refused=refused, created=request.query_params.get("created"),
                  changed=request.query_params.get("changed"))


@router.get("/users")
async def users(request: Request, who: Operator) -> Response:
    return await users_page(request, who)


def chosen_stations(form: dict[str, str]) -> list[str]:
    return [name.removeprefix("station-") for name, value in form.items() if name.startswith("station-") and value]


@router.post("/users")
async def create_agent(request: Request, who: Operator) -> Response:
    require(who, TENANT_ADMIN)
    form = posted(request)
    values: dict[str, Any] = {"username": form.get("username", ""), "password": form.get("password", ""),
                              "role": AGENT, "stations": chosen_stations(form)}
    try:
        body = validated(UserRequest, values, ("username", "password", "role", "stations"))
        await new_user(request, who, body)
    except Invalid as exc:
        return await users_page(request, who, 422, form, {k: v for k, v in exc.fields.items()})
    except NotFound as exc:  # a station outside the tenant
        return await users_page(request, who, 422, form, {"stations": exc.message})
    except ApiError as exc:
        if exc.code == "already_exists":
            return await users_page(request, who, 409, form, {"username": exc.message})
        if exc.status == 422:
            return await users_page(request, who, 422, form, {"stations": exc.message})
        raise
    except DomainError as exc:
        return await users_page(request, who, 409, form, refused=exc.message)
    return see_other(url("/users", created=body.username))


def managed_name(username: str) -> str:
    try:
        return str(USER_NAME.validate_python(username))
    except ValidationError:
        raise NotFound(f"no user {username[:40]}") from None


async def set_disabled(request: Request, who: Principal, username: str, disabled: bool) -> Response:
    try:
        await user_disabled(request, who, managed_name(username), disabled)
    except ApiError as exc:
        if exc.code != "cannot_disable_self":
            raise
        return await users_page(request, who, 409, refused=exc.message)
    return see_other(url("/users", changed=username))


@router.post("/users/{username}/disable")
async def disable(request: Request, who: Operator, username: str) -> Response:
    return await set_disabled(request, who, username, True)


@router.post("/users/{username}/enable")
async def enable(request: Request, who: Operator, username: str) -> Response:
    return await set_disabled(request, who, username, False)
