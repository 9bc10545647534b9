"""Operator accounts: sign-in, the per-request check of a token against its user, logout, password
changes, and the users endpoints of the operator API (``/operator/v1/auth/*``, ``/operator/v1/users*``).

Every operator request goes through ``Accounts.principal``: the token's signature, expiry and role
(adapters/api/auth.py), then its user's current row by primary key (adapters/postgres/operator_users.py), one
indexed query per request, no cache: a disabled user's token answers 401 ``user_disabled`` at
once, a token older than the user's last logout, password change or disable answers 401
``token_revoked``, a deleted user's too, and role, tenant and an agent's stations are the row's.
Sign-ins are throttled and hashed as adapters/api/login_guard.py says.

Who may manage whom: a platform admin every user; a tenant admin the users of their own tenant
(others are 404, as if they did not exist); an agent no one. Nobody disables themselves.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, Field
from starlette.concurrency import run_in_threadpool

from adapters.api import inputs as t
from adapters.api.auth import (AGENT, MAX_PASSWORD, MIN_PASSWORD, OPERATOR_ROLES, PLATFORM_ADMIN, TENANT_ADMIN,
                           USERNAME_PATTERN, USERNAME_RULE, AuthError, Principal, TokenSigner, check_printable)
from adapters.api.errors import ApiError
from adapters.api.login_guard import HashGate, LoginBusy, LoginLimits, LoginThrottle
from adapters.api.shards import find_on_shards, shards
from adapters.api.operator.deps import ERRORS, S, T, Caller, body_example, example, require
from adapters.postgres.operator_users import OperatorUser, OperatorUsers
from domain.errors import NotFound

router = APIRouter(prefix="/operator/v1", responses=t.BAD_BODY)
NO_STORE = {"Cache-Control": "no-store"}

UserName = Annotated[str, Field(pattern=USERNAME_PATTERN, description=USERNAME_RULE)]
NewPassword = Annotated[str, Field(min_length=MIN_PASSWORD, max_length=MAX_PASSWORD)]
ManagedName = Annotated[str, Path(pattern=USERNAME_PATTERN, description=USERNAME_RULE)]


class Accounts:
    """Operator users, their tokens and their sign-ins (see the module)."""

    def __init__(self, users: OperatorUsers, signer: TokenSigner, limits: LoginLimits) -> None:
        self.users, self.signer = users, signer
        self.throttle = LoginThrottle(limits)
        self.gate = HashGate(limits.hash_concurrency, limits.hash_waiting)
        self._dummy_hash: str | None = None

    async def principal(self, token: str) -> Principal:
        """The caller a token speaks for, as their user is now."""
        claims = self.signer.decode(token, OPERATOR_ROLES)
        user = await self.users.find(str(claims["sub"]))
        if user is None:
            raise AuthError("token_revoked", "the token's user no longer exists")
        if user.disabled:
            raise AuthError("user_disabled", "this user is disabled")
        if claims.get("gen") != user.generation:
            raise AuthError("token_revoked", "the token was revoked (logout or new password); sign in again")
        return principal_of(user)

    async def dummy_hash(self) -> str:
        """Verified for unknown users, so that an unknown name costs what a wrong password does."""
        if self._dummy_hash is None:
            self._dummy_hash = await self.gate.hash(secrets.token_urlsafe(16))
        return self._dummy_hash

    def issue(self, user: OperatorUser) -> tuple[str, datetime]:
        """A token for ``user`` at their current generation (the API's bearer, the console's cookie)."""
        # no station list in the token: an agent's scope is read from their row at each request
        principal = Principal(user.username, user.role, user.tenant_id)
        return self.signer.issue(principal, generation=user.generation)

    def token_answer(self, user: OperatorUser) -> JSONResponse:
        token, expires = self.issue(user)
        return JSONResponse({"access_token": token, "token_type": "bearer", "expires_at": expires.isoformat(),
                             "role": user.role}, headers=NO_STORE)

    async def checked_password(self, username: str, password: str, address: str) -> OperatorUser | None:
        """The user if ``password`` is theirs, else None; throttled, hashed through the gate."""
        self.throttle.begin(address, username)
        try:
            user = await self.users.find(username)
            good = await self.gate.matches(user.password_hash if user else await self.dummy_hash(), password)
        except LoginBusy:
            self.throttle.undecided(address, username)
            raise
        if user is None or not good:
            return None
        self.throttle.succeeded(address, username)
        if self.gate.needs_rehash(user.password_hash):
            await self.users.rehash(username, user.password_hash, await self.gate.hash(password))
        return user

    async def signed_in(self, username: str, password: str, address: str) -> OperatorUser:
        """The user these credentials sign in (throttled), else AuthError."""
        user = await self.checked_password(username, password, address)
        if user is None:
            raise AuthError("bad_credentials", "unknown user or wrong password")
        if user.disabled:
            raise AuthError("user_disabled", "this user is disabled")
        return user

    async def sign_in(self, username: str, password: str, address: str) -> JSONResponse:
        return self.token_answer(await self.signed_in(username, password, address))

    async def change_password(self, who: Principal, old: str, new: str, address: str) -> JSONResponse:
        if await self.checked_password(who.subject, old, address) is None:
            raise ApiError(403, "wrong_password", "the current password is not right")
        user = await self.users.set_password(who.subject, await self.gate.hash(new))
        if user is None:
            raise AuthError("token_revoked", "the token's user no longer exists")
        return self.token_answer(user)

    async def managed(self, who: Principal, username: str) -> OperatorUser:
        """A user ``who`` may manage, or 404 (403 for an agent)."""
        require(who, PLATFORM_ADMIN, TENANT_ADMIN)
        user = await self.users.find(username)
        if user is None or (who.role != PLATFORM_ADMIN and user.tenant_id != who.tenant_id):
            raise NotFound(f"no user {username}", username=username)
        return user

    def close(self) -> None:
        self.gate.close()


def principal_of(user: OperatorUser) -> Principal:
    """The caller a user's row speaks for: an agent's scope is their stations, anyone else's the whole tenant."""
    return Principal(user.username, user.role, user.tenant_id, user.stations if user.role == AGENT else None)


def accounts_of(request: Request) -> Accounts:
    return request.app.state.accounts  # type: ignore[no-any-return]


def client_address(request: Request) -> str:
    """The peer (or, from a trusted proxy, the forwarded client): what the address throttle keys on."""
    return request.client.host if request.client else "unknown"


def user_answer(user: OperatorUser | None, status: int = 200) -> JSONResponse:
    if user is None:
        raise NotFound("no such user")
    return JSONResponse(user.public(), status_code=status, headers=NO_STORE)


# ---- request bodies ------------------------------------------------------------------------------------
class TokenRequest(BaseModel):
    model_config = body_example(username="ops@example", password="correct horse battery")
    username: Annotated[str, Field(min_length=1, max_length=200), AfterValidator(check_printable)]
    password: str = Field(min_length=1, max_length=MAX_PASSWORD)


class UserRequest(BaseModel):
    model_config = body_example(username="agent@example", password="a long passphrase", role="agent",
                                stations=[S])
    username: UserName
    password: NewPassword
    role: Literal["platform_admin", "tenant_admin", "agent"]
    tenant_id: UUID | None = Field(None, description="platform admins only; others create users in their own tenant")
    stations: list[UUID] = Field(default_factory=list, max_length=1000, description="an agent's stations")


class PasswordChange(BaseModel):
    model_config = body_example(old_password="correct horse battery", new_password="a new long passphrase")
    old_password: str = Field(min_length=1, max_length=MAX_PASSWORD)
    new_password: NewPassword


class PasswordReset(BaseModel):
    model_config = body_example(password="a new long passphrase")
    password: NewPassword


class StationScope(BaseModel):
    model_config = body_example(stations=[S])
    stations: list[UUID] = Field(min_length=1, max_length=1000)


def throttled(*statuses: int) -> dict[int | str, Any]:
    """OpenAPI entries for the sign-in throttle's answers."""
    bodies = {429: ("too many failed sign-ins", {"code": "too_many_attempts",
                                                  "message": "too many failed sign-ins; try again in 4 s"}),
              503: ("too many sign-ins being checked", {"code": "login_busy", "message":
                                                        "too many sign-ins are being checked; try again shortly"})}
    return {status: {"description": bodies[status][0], "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                     "content": {"application/json": {"example": bodies[status][1]}}} for status in statuses}


TOKEN_EXAMPLE = {"access_token": "eyJhbGciOiJIUzI1NiIs...", "token_type": "bearer",
                 "expires_at": "2026-11-22T10:00:00+00:00", "role": "tenant_admin"}
USER_EXAMPLE = {"username": "agent@example", "role": "agent", "tenant_id": T, "stations": [S], "disabled": False}


# ---- sign-in, logout, own password ---------------------------------------------------------------------
@router.post("/auth/token", tags=["auth"], summary="Exchange credentials for a token",
             description="Throttled per client address and per user name: 429 `too_many_attempts` with "
                         "Retry-After; 503 `login_busy` when too many sign-ins are being checked.",
             responses={**example(TOKEN_EXAMPLE, 200, 401, 422), **throttled(429, 503)})
async def issue_token(request: Request, body: TokenRequest) -> JSONResponse:
    return await accounts_of(request).sign_in(body.username, body.password, client_address(request))


@router.post("/auth/logout", tags=["auth"], summary="Revoke every token of the caller",
             responses=example({"username": "ops@example", "revoked": True}, 200, 401, 403))
async def logout(request: Request, who: Caller) -> JSONResponse:
    await accounts_of(request).users.revoke_tokens(who.subject)
    return JSONResponse({"username": who.subject, "revoked": True}, headers=NO_STORE)


@router.post("/auth/password", tags=["auth"], summary="Change your own password (revokes your other tokens)",
             responses={**example(TOKEN_EXAMPLE, 200, 401, 403, 422), **throttled(429, 503)})
async def change_password(request: Request, who: Caller, body: PasswordChange) -> JSONResponse:
    return await accounts_of(request).change_password(who, body.old_password, body.new_password,
                                                      client_address(request))


# ---- users -----------------------------------------------------------------------------------------------
@router.get("/users", tags=["auth"], summary="Operator users in scope",
            responses=example({"items": [USER_EXAMPLE]}, 200, 401, 403))
async def list_users(request: Request, who: Caller) -> JSONResponse:
    require(who, PLATFORM_ADMIN, TENANT_ADMIN)
    users = await accounts_of(request).users.listing(who.tenant_id)
    return JSONResponse({"items": [u.public() for u in users]}, headers=NO_STORE)


def new_users_tenant(request: Request, who: Principal, body: UserRequest) -> UUID | None:
    if who.role == TENANT_ADMIN:
        if body.role == PLATFORM_ADMIN:
            raise ApiError(403, "forbidden_role", "only a platform admin creates platform admins")
        return who.tenant_id
    if body.role == PLATFORM_ADMIN:
        return None
    if body.tenant_id is None:
        raise ApiError(422, "validation_error", "tenant_id is required for a tenant admin or an agent")
    shards(request).of_tenant(body.tenant_id).ledger.registry.tenant(body.tenant_id)  # its shard's
    return body.tenant_id


def check_stations(request: Request, tenant: UUID | None, stations: list[UUID]) -> None:
    for station_id in stations:
        station = (find_on_shards(request, lambda ledger: ledger.registry.station(station_id)) if tenant is None
                   else shards(request).of_tenant(tenant).ledger.registry.station(station_id))
        if station.tenant_id != tenant:
            raise NotFound(f"no station {station_id}", id=str(station_id))


@router.post("/users", tags=["auth"], status_code=201, summary="Create an operator user",
             description="User names are global: a taken name answers 409 `already_exists`, the same body "
                         "whichever tenant has it.",
             responses=example({k: v for k, v in USER_EXAMPLE.items() if k != "disabled"}, 201, *ERRORS, 409))
async def create_user(request: Request, who: Caller, body: UserRequest) -> JSONResponse:
    return JSONResponse(await new_user(request, who, body), status_code=201, headers=NO_STORE)


async def new_user(request: Request, who: Principal, body: UserRequest) -> dict[str, Any]:
    """Create an operator user (an agent with its stations): the API's endpoint and the console's form."""
    require(who, PLATFORM_ADMIN, TENANT_ADMIN)
    tenant = await run_in_threadpool(new_users_tenant, request, who, body)
    stations = body.stations if body.role == AGENT else []
    if body.role == AGENT and not stations:
        raise ApiError(422, "validation_error", "an agent needs at least one station")
    await run_in_threadpool(check_stations, request, tenant, stations)
    accounts = accounts_of(request)
    password_hash = await accounts.gate.hash(body.password)
    if not await accounts.users.add(body.username, password_hash, body.role, who.subject, tenant, stations):
        raise ApiError(409, "already_exists", "that user name is taken")
    return {"username": body.username, "role": body.role, "tenant_id": None if tenant is None else str(tenant),
            "stations": [str(s) for s in stations]}


@router.post("/users/{username}/disable", tags=["auth"], summary="Disable a user: their tokens stop at once",
             responses=example({**USER_EXAMPLE, "disabled": True}, 200, *ERRORS, 409))
async def disable_user(request: Request, who: Caller, username: ManagedName) -> JSONResponse:
    return user_answer(await user_disabled(request, who, username, True))


async def user_disabled(request: Request, who: Principal, username: str, disabled: bool) -> OperatorUser | None:
    """Disable (their tokens stop at once) or enable a user ``who`` manages: the API's and the console's."""
    accounts = accounts_of(request)
    user = await accounts.managed(who, username)
    if disabled and user.username == who.subject:
        raise ApiError(409, "cannot_disable_self", "ask another admin to disable you")
    return await accounts.users.set_disabled(username, disabled)


@router.post("/users/{username}/enable", tags=["auth"], summary="Enable a disabled user (they sign in again)",
             responses=example(USER_EXAMPLE, 200, *ERRORS))
async def enable_user(request: Request, who: Caller, username: ManagedName) -> JSONResponse:
    return user_answer(await user_disabled(request, who, username, False))


@router.put("/users/{username}/password", tags=["auth"], summary="Set a user's password (revokes their tokens)",
            responses=example(USER_EXAMPLE, 200, *ERRORS))
async def reset_password(request: Request, who: Caller, username: ManagedName, body: PasswordReset) -> JSONResponse:
    accounts = accounts_of(request)
    await accounts.managed(who, username)
    return user_answer(await accounts.users.set_password(username, await accounts.gate.hash(body.password)))


@router.put("/users/{username}/stations", tags=["auth"], summary="Set an agent's stations (seen at once)",
            responses=example(USER_EXAMPLE, 200, *ERRORS, 409))
async def set_stations(request: Request, who: Caller, username: ManagedName, body: StationScope) -> JSONResponse:
    accounts = accounts_of(request)
    user = await accounts.managed(who, username)
    if user.role != AGENT:
        raise ApiError(409, "not_an_agent", "only an agent has a station scope")
    await run_in_threadpool(check_stations, request, user.tenant_id, body.stations)
    return user_answer(await accounts.users.set_stations(username, body.stations))

